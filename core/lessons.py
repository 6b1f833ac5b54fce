"""Learning from past runs: lessons derived when a run ends, and the prompt section they make.

A lesson belongs to a repository, identified by its root commit (so every clone and worktree of
it shares them), and says one thing a later run should know: a phase of a similar task that
failed and why (and what passed afterwards), or a finding that came back and the change that
fixed it, or a check that failed and then passed on exactly the same files (flaky; each
attempt records the git tree it was verified on). Lessons are stored rows
(core/state/lessons.py) a person can list, read and forget (`orchestrator lessons`); before
planning and before each attempt the most relevant ones, within `lessons.max_tokens`, go into
the prompt.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

from config.schema import LessonsConfig
from core.errors import GitError
from core.git import repo as gitrepo
from core.journal import Journal
from core.lifecycle import INTERRUPTED_ATTEMPT
from core.llm.base import estimate_tokens
from core.procenv import redact
from core.records import (
    Execution,
    ExecutionStatus,
    Finding,
    FindingStatus,
    Lesson,
    Phase,
    PhaseStatus,
)
from core.state.store import StateStore

PHASE_FAILED = "phase_failed"
FINDING_RETURNED = "finding_returned"
FLAKY_CHECK = "flaky_check"
LESSON_KINDS = (PHASE_FAILED, FINDING_RETURNED, FLAKY_CHECK)
SECTION_TITLE = "Lessons from earlier runs on this repository"
_ERROR_CHARS = 320
_SUMMARY_CHARS = 160
_WORD = re.compile(r"[a-z0-9]+")
# Words that say nothing about what a task or phase is about.
_STOP = frozenset(
    _WORD.findall(
        "a an and the to of in on for with by from into add make use is are be it its this "
        "that as at or not no new"
    )
)


_ROOTS: dict[str, str] = {}  # repository path -> root commit, found once per process


def _root_commit(path: str) -> str | None:
    """The repository's root commit (the oldest of several roots), or None when it has none yet
    (or is no repository); only found ones are cached."""
    if path in _ROOTS:
        return _ROOTS[path]
    if not Path(path).is_dir():  # git would run in the current folder instead
        return None
    try:
        out = gitrepo.run_git(gitrepo.git_cmd(path), "rev-list", "--max-parents=0", "HEAD")
    except (GitError, OSError):
        return None
    roots = sorted(line.strip() for line in out.splitlines() if line.strip())
    if not roots:
        return None
    _ROOTS[path] = roots[0]
    return roots[0]


async def repo_key(repo: Path | str) -> str | None:
    """The identity lessons are kept under: the repository's root commit (cached per path)."""
    raw = str(repo)
    if raw in _ROOTS:  # known under the name the caller uses: no resolving, no thread
        return _ROOTS[raw]
    path = str(Path(repo).expanduser().resolve())
    key = _ROOTS[path] if path in _ROOTS else await asyncio.to_thread(_root_commit, path)
    if key is not None:
        _ROOTS[raw] = key
    return key


def _words(*texts: str) -> set[str]:
    """The meaningful lower-case words of some texts, for relevance."""
    return {w for t in texts for w in _WORD.findall(t.lower()) if w not in _STOP and len(w) > 1}


def _norm(name: str) -> str:
    """A phase title as compared between runs: lower case, single spaces."""
    return " ".join(name.lower().split())


def _excerpt(text: str, limit: int) -> str:
    """The first lines of a text on one line, capped at `limit` characters."""
    flat = " ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# ---- deriving ----------------------------------------------------------------------------------


async def derive_lessons(store: StateStore, run_id: str) -> list[Lesson]:
    """Learn from an ended run: its phases that failed an attempt and its findings that came
    back. A run already learned from (or forgotten) changes nothing; returns the lessons it
    touched."""
    run = await store.get_run(run_id)
    key = await repo_key(run.repo)
    if key is None:
        return []
    phases = await store.get_phases_for_run(run_id)
    executions = await store.get_executions(run_id)
    findings = await store.get_findings(run_id)
    trees = await store.execution_trees(run_id)
    learned: list[Lesson] = []

    async def learn(kind: str, subject: str, text: str) -> None:
        learned.append(
            await store.learn_lesson(
                repo_key=key,
                repo=run.repo,
                kind=kind,
                subject=subject,
                task=redact(run.task),
                text=redact(text),
                run_id=run_id,
            )
        )

    by_phase: dict[str, list[Execution]] = defaultdict(list)
    for e in executions:
        by_phase[e.phase_id].append(e)
    for phase in phases:
        attempts = sorted(by_phase.get(phase.id, []), key=lambda e: e.attempt)
        failed = [
            e
            for e in attempts
            if e.status is ExecutionStatus.FAILED and e.error and e.error != INTERRUPTED_ATTEMPT
        ]
        if not failed:
            continue
        flaky = _flaky(attempts, trees)
        if flaky is not None:
            before, after = flaky
            subject, text = _flaky_text(run_id, phase, before, after, findings)
            await learn(FLAKY_CHECK, subject, text)
            continue
        first = failed[0]
        text = (
            f'Phase "{phase.name}" (task: {_excerpt(run.task, 80)}) failed attempt '
            f"{first.attempt} in run {run_id}: {_excerpt(first.error or '', _ERROR_CHARS)}."
        )
        passed = next((e for e in attempts if e.status is ExecutionStatus.SUCCEEDED), None)
        if passed is not None and phase.status is PhaseStatus.COMPLETED:
            text += (
                f" Attempt {passed.attempt} passed"
                + (f" ({_excerpt(passed.output, _SUMMARY_CHARS)})" if passed.output else "")
                + "."
            )
        else:
            text += f" The phase ended {phase.status} after {len(attempts)} attempt(s)."
        await learn(PHASE_FAILED, f"phase:{_norm(phase.name)}", text)
    for fingerprint, text in _returned_findings(findings, {p.id: p for p in phases}):
        await learn(FINDING_RETURNED, f"finding:{fingerprint}", text)
    return learned


async def learn_from_run(store: StateStore, journal: Journal, run_id: str) -> list[Lesson]:
    """derive_lessons for a run that just ended, saying in its log what was learned; a failure
    is logged, never raised (the run's stored end is true without lessons)."""
    try:
        learned = await derive_lessons(store, run_id)
    except Exception as exc:  # noqa: BLE001
        journal.log(run_id, None, "warning", f"no lessons learned: {exc}")
        return []
    if learned:
        ids = ", ".join(le.id for le in learned)
        journal.log(run_id, None, "info", f"lessons learned: {ids} (orchestrator lessons)")
    return learned


def _flaky(attempts: list[Execution], trees: dict[str, str]) -> tuple[Execution, Execution] | None:
    """The failed attempt and the passing one right after it when both were verified on the same
    tree: the checks failed and then passed with no change to the files."""
    for before, after in pairwise(attempts):
        same = trees.get(before.id) is not None and trees.get(before.id) == trees.get(after.id)
        if (
            same
            and before.status is ExecutionStatus.FAILED
            and after.status is ExecutionStatus.SUCCEEDED
            and (before.error or "").startswith("verification failed")
        ):
            return before, after
    return None


def _flaky_text(
    run_id: str, phase: Phase, before: Execution, after: Execution, findings: list[Finding]
) -> tuple[str, str]:
    """The subject and text of a flaky-check lesson: the check that failed, named by its first
    finding in the failed attempt (or the error's first line when it recorded none)."""
    failed = [
        f
        for f in findings
        if f.execution_id == before.id and f.status is not FindingStatus.BASELINE
    ]
    if failed:
        first = failed[0]
        check = first.tool + (f"/{first.rule}" if first.rule else "")
        subject = f"check:{check}:{first.path or ''}"
        why = _excerpt(first.message, 200)
    else:
        why = _excerpt((before.error or "").removeprefix("verification failed:"), 200)
        check, subject = "a check", f"check:{why[:80]}"
    text = (
        f"Check {check} is flaky: in run {run_id} it failed attempt {before.attempt} of phase "
        f'"{phase.name}" ({why}) and passed attempt {after.attempt} on exactly the same files. '
        "A failure of it alone does not prove the change wrong."
    )
    return subject, text


def _returned_findings(
    findings: Iterable[Finding], phases: dict[str, Phase]
) -> list[tuple[str, str]]:
    """Findings resolved once and found again later in the run: (fingerprint, lesson text)."""
    groups: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        if f.status is not FindingStatus.BASELINE:
            groups[f.fingerprint].append(f)
    out = []
    for fingerprint, group in groups.items():
        group.sort(key=lambda f: f.created_at)
        resolved = [f for f in group if f.resolved_at]
        if not resolved:
            continue
        fixed = resolved[0]
        came_back = [
            f for f in group if f.id != fixed.id and f.created_at >= (fixed.resolved_at or "")
        ]
        if not came_back:
            continue
        last = group[-1]
        phase = phases.get(last.phase_id or "")
        where = f" {last.location}" if last.location else ""
        fix = (
            f' It was fixed by the commit {phase.commit[:10]} of phase "{phase.name}".'
            if phase is not None and phase.commit and last.status is FindingStatus.RESOLVED
            else " It was still open when the run ended."
        )
        text = (
            f"Finding {last.tool}{'/' + last.rule if last.rule else ''}{where} came back after it "
            f"was fixed: {_excerpt(last.message, 200)}.{fix}"
        )
        out.append((fingerprint, text))
    return out


# ---- the prompt section ------------------------------------------------------------------------


def _score(lesson: Lesson, phase_name: str | None, words: set[str]) -> tuple[int, float, str]:
    """Relevance: the same phase title first, then shared words with the task and phase."""
    same_phase = int(phase_name is not None and lesson.subject == f"phase:{_norm(phase_name)}")
    theirs = _words(lesson.task, lesson.subject.partition(":")[2])
    overlap = len(words & theirs) / max(1, len(words | theirs))
    return (same_phase, overlap, lesson.updated_at)


def render_section(
    lessons: list[Lesson], max_tokens: int, *, phase_name: str | None, words: set[str]
) -> tuple[str, list[Lesson]]:
    """The Lessons section (most relevant first, within `max_tokens` as estimate_tokens counts)
    and the lessons it holds; empty when none fit."""
    ranked = sorted(lessons, key=lambda le: _score(le, phase_name, words), reverse=True)
    header = f"{SECTION_TITLE} (avoid repeating what went wrong):"
    if max_tokens <= 0 or not ranked or estimate_tokens(header) >= max_tokens:
        return "", []
    lines: list[str] = []
    used: list[Lesson] = []
    for lesson in ranked:
        candidate = "\n".join([header, *lines, f"- {lesson.text}"])
        if estimate_tokens(candidate) <= max_tokens:
            lines.append(f"- {lesson.text}")
            used.append(lesson)
        elif not lines:  # the most relevant lesson alone is too long: shorten it to fit
            room = int((max_tokens - estimate_tokens(header) - 2) * 3.5) - 3
            if room > 40:
                lines.append(f"- {lesson.text[:room]}…")
                used.append(lesson)
            break
    if not lines:
        return "", []
    return "\n".join([header, *lines]), used


async def prompt_lessons(
    store: StateStore,
    config: LessonsConfig,
    *,
    repo: Path | str,
    run_id: str,
    task: str,
    phase_name: str | None = None,
    phase_text: str = "",
) -> tuple[str, list[Lesson]]:
    """The Lessons section for a prompt of `run_id` (planner when phase_name is None), from the
    repository's lessons that other runs taught and nobody forgot."""
    if not config.enabled or config.max_tokens <= 0:
        return "", []
    key = await repo_key(repo)
    if key is None:
        return "", []
    lessons = [
        le
        for le in await store.list_lessons(key, include_forgotten=False)
        if any(r != run_id for r in le.runs)
    ]
    words = _words(task, phase_name or "", phase_text)
    return render_section(lessons, config.max_tokens, phase_name=phase_name, words=words)


def lessons_line(used: list[Lesson]) -> str:
    """The log line saying which lessons went into a prompt (nothing learned is hidden)."""
    ids = ", ".join(le.id for le in used)
    return f"lessons from earlier runs in the prompt: {ids} (orchestrator lessons show ID)"
