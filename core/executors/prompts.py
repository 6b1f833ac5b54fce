"""Prompts for executor agents: the SEARCH/REPLACE system prompt and the per-attempt user message."""

from __future__ import annotations

from core.executors.base import PhaseJob

EXECUTOR_SYSTEM_PROMPT = """\
You are a careful software engineer carrying out one phase of a larger task inside a git \
repository. You change files only by answering with SEARCH/REPLACE blocks.

Format of one edit:
1. The file path, relative to the repository root, alone on its own line.
2. An opening fence: ``` (optionally followed by the language).
3. The line <<<<<<< SEARCH
4. The exact lines to find in the current file, copied character for character, including \
indentation, comments and blank lines.
5. The line =======
6. The lines to put in their place.
7. The line >>>>>>> REPLACE
8. The closing fence: ```

Example: rename a function and create a new test file.

src/mathutil.py
```python
<<<<<<< SEARCH
def add(a, b):
    return a + b
=======
def add_numbers(a, b):
    return a + b
>>>>>>> REPLACE
```

tests/test_mathutil.py
```python
<<<<<<< SEARCH
=======
from src.mathutil import add_numbers


def test_add_numbers():
    assert add_numbers(2, 3) == 5
>>>>>>> REPLACE
```

Rules:
- Only edit files inside the repository; paths are relative to the repository root, never \
absolute, never with "..", never inside .git/.
- SEARCH must copy existing lines exactly and should be just long enough to be unique in the \
file; only the first match is replaced.
- An empty SEARCH section creates a new file whose content is the replacement.
- To change several places, write several blocks; blocks for the same file may share one fence \
and reuse the path written above it.
- To delete lines, leave the replacement section empty.
- Keep edits minimal and focused on this phase; do not reformat unrelated code.
- No prose outside the blocks is needed; if you explain, keep it short.
"""


def _fenced(path: str, content: str) -> str:
    """A file's content in a fence long enough not to clash with backticks inside it."""
    ticks = "```"
    while ticks in content:
        ticks += "`"
    body = content if content.endswith("\n") or not content else content + "\n"
    return f"### {path}\n{ticks}\n{body}{ticks}"


def build_task_text(job: PhaseJob, files: dict[str, str]) -> str:
    """The attempt's task description: task, phase, criteria, files, context and past failures."""
    parts = [f"# Overall task\n{job.task.strip()}"]
    parts.append(
        f"# Current phase: {job.phase_name} ({job.phase_plan_id})\n{job.phase_description.strip()}"
    )
    if job.verification_criteria:
        criteria = "\n".join(f"- {c}" for c in job.verification_criteria)
        parts.append(f"# Verification criteria (the result is checked against these)\n{criteria}")
    # Files whose exact content the retrieved context already shows are not repeated.
    unique = {p: t for p, t in files.items() if not (t.strip() and t in job.context)}
    if unique:
        shown = "\n\n".join(_fenced(path, text) for path, text in unique.items())
        parts.append(f"# Relevant files (current content)\n{shown}")
    if job.context.strip():
        parts.append(f"# Retrieved context from the repository\n{job.context.strip()}")
    if job.lessons.strip():
        parts.append(f"# {job.lessons.strip()}")
    if job.previous_failure:
        parts.append(
            "# Your previous attempt failed:\n"
            f"{job.previous_failure.strip()}\n\nAvoid repeating that mistake in this attempt."
        )
    if job.findings_feedback:
        findings = "\n".join(f"- {f}" for f in job.findings_feedback)
        parts.append(f"# Open findings to fix (most severe first)\n{findings}")
    return "\n\n".join(parts)


def build_executor_messages(job: PhaseJob, files: dict[str, str]) -> list[dict[str, str]]:
    """Chat messages for one LLM attempt: the format rules, then the phase's details and files."""
    user = (
        build_task_text(job, files)
        + "\n\nCarry out this phase now. Answer with SEARCH/REPLACE blocks only."
    )
    return [
        {"role": "system", "content": EXECUTOR_SYSTEM_PROMPT},
        {"role": "user", "content": user},
    ]


def build_external_prompt(job: PhaseJob, files: dict[str, str] | None = None) -> str:
    """One prompt text for an external coding agent, which edits the files directly."""
    hint = ""
    if job.relevant_files:
        hint = "\n\nFiles that are likely relevant: " + ", ".join(job.relevant_files)
    return (
        "You are working inside a git repository (the current directory) on one phase of a "
        "larger task. Edit the files directly; do not commit, and do not touch files outside "
        "this repository.\n\n"
        + build_task_text(job, files or {})
        + hint
        + "\n\nCarry out this phase now by editing the files directly."
    )
