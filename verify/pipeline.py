"""One verification: run each step, keep its whole output on disk, parse it into findings, fingerprint them."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from verify.basic import VerifyStep
from verify.capped import cap_file
from verify.findings import VerifyFinding, assign_fingerprints
from verify.parsers import compiler, pyunit
from verify.parsers.base import Collector, ParseInput, ParseResult
from verify.parsers.fallback import add_exit_finding, add_unparsed_finding
from verify.registry import parsers, sniff_order
from verify.runner import CommandResult, run_command
from verify.severity import SeverityPolicy

_SNIFF_BYTES = 65536
_REDACT_PIECE = 1 << 20  # bytes of one line redacted at a time
_REDACT_CARRY = 4096  # characters kept back from a piece's end, so no secret is cut in two
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class VerifyOptions:
    """Limits and policies of one verification."""

    timeout: float = 600.0
    max_output_bytes: int = 262_144  # kept in memory and streamed per command (head and tail)
    max_report_bytes: int = 64_000_000  # written to disk per command (parsers read it whole)
    tail_lines: int = 40
    max_findings: int = 1000  # kept per step; the least severe beyond it are dropped and counted
    policy: SeverityPolicy = field(default_factory=SeverityPolicy)


@dataclass
class StepOutcome:
    """What happened to one step: skipped (and why) or run, how its output was read, what it found."""

    step: VerifyStep
    command: str
    skipped: str | None = None
    result: CommandResult | None = None
    parser: str | None = None
    findings: int = 0
    entries: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    parse_error: str | None = None
    report: Path | None = None
    output_file: Path | None = None

    @property
    def passed(self) -> bool:
        """Run, finished in time with an accepted exit code, and nothing found."""
        return (
            self.skipped is None
            and self.result is not None
            and not self.result.timed_out
            and self.result.exit_code in self.step.ok_exit_codes
            and self.findings == 0
        )


@dataclass
class VerifyReport:
    """Every finding of one verification (with its fingerprint) and every step's outcome."""

    findings: list[VerifyFinding]
    fingerprints: list[str]
    outcomes: list[StepOutcome]

    @property
    def notes(self) -> list[str]:
        """Human notes: skipped steps, outputs that could not be read whole, dropped findings."""
        notes = []
        for o in self.outcomes:
            label = f"{o.step.category}/{o.step.tool_label}"
            if o.skipped:
                notes.append(f"{label}: skipped: {o.skipped}")
            if o.parse_error:
                notes.append(f"{label}: {o.parse_error}")
            if o.dropped:
                total = sum(o.dropped.values())
                notes.append(
                    f"{label}: {total} more finding(s) dropped past the limit of "
                    f"verification.max_findings_per_step ({o.entries} reported)"
                )
            if o.result is not None and o.result.file_truncated:
                notes.append(f"{label}: output past verification.max_report_bytes was not kept")
        return notes

    def dropped(self) -> dict[str, int]:
        """Findings dropped past the per-step limit, by severity."""
        total: dict[str, int] = {}
        for o in self.outcomes:
            for severity, n in o.dropped.items():
                total[severity] = total.get(severity, 0) + n
        return total


def tool_path_dirs(repo: Path, env: Mapping[str, str] | None = None) -> list[str]:
    """Folders put first on PATH for tools: the repository's .venv/bin, then the active virtual
    environment (VIRTUAL_ENV, else the one this program runs in)."""
    source = os.environ if env is None else env
    dirs = [repo / ".venv" / "bin", repo / "venv" / "bin"]
    if source.get("VIRTUAL_ENV"):
        dirs.append(Path(source["VIRTUAL_ENV"]) / "bin")
    if sys.prefix != sys.base_prefix:
        dirs.append(Path(sys.prefix) / "bin")
    out: list[str] = []
    for d in dirs:
        if d.is_dir() and str(d) not in out:
            out.append(str(d))
    return out


def _python_beside(program: str) -> str:
    """The interpreter in the same folder as a tool's script, so `-m tool` uses the tool's own env."""
    folder = Path(program).parent
    for name in ("python3", "python"):
        if (folder / name).is_file():
            return str(folder / name)
    return "python3"


def expand_command(step: VerifyStep, report: Path, cache: Path, program: str | None) -> str:
    """The step's command with {report}, {cache} and {python} filled in (quoted for the shell)."""
    command = step.command.replace("{report}", shlex.quote(str(report)))
    command = command.replace("{cache}", shlex.quote(str(cache)))
    if "{python}" in command:
        command = command.replace("{python}", shlex.quote(_python_beside(program or "")))
    return command


def _safe_cut(text: str, redact: Callable[[str], str]) -> int:
    """Where a piece of one long line may be cut without splitting a secret: redacting both sides
    apart gives what redacting the whole gives (checked, since the redactor is opaque)."""
    whole = redact(text)
    cut = max(0, len(text) - _REDACT_CARRY)
    while cut > 0 and redact(text[:cut]) + redact(text[cut:]) != whole:
        cut = max(0, cut - _REDACT_CARRY)
    return cut


def redact_file(path: Path, redact: Callable[[str], str]) -> None:
    """Rewrite a file through a redactor (secrets never span lines), when it changes. A long line
    is read in pieces of at most 1 MB, so a huge output is never held whole in memory."""
    if not path.is_file():
        return
    tmp = path.with_name(path.name + ".redacting")
    changed = False
    carry = ""
    with path.open("rb") as src, tmp.open("wb") as dst:
        while raw := src.readline(_REDACT_PIECE):
            text = carry + raw.decode("utf-8", errors="surrogateescape")
            cut = len(text) if text.endswith("\n") else _safe_cut(text, redact)
            text, carry = text[:cut], text[cut:]
            clean = redact(text)
            changed = changed or clean != text
            dst.write(clean.encode("utf-8", errors="surrogateescape"))
        clean = redact(carry)
        changed = changed or clean != carry
        dst.write(clean.encode("utf-8", errors="surrogateescape"))
    if changed:
        tmp.replace(path)
    else:
        tmp.unlink()


def _head(path: Path | None) -> bytes:
    if path is None:
        return b""
    try:
        with path.open("rb") as fh:
            return fh.read(_SNIFF_BYTES)
    except OSError:
        return b""


def parse_step(
    step: VerifyStep, src: ParseInput, result: CommandResult, options: VerifyOptions
) -> tuple[Collector, str | None, ParseResult | None]:
    """Read a finished step's output with its parser (or the one that recognises it), the compiler-style
    fallback when the step failed, and the exit-code finding when nothing explained the failure."""
    out = Collector(
        category=step.category,
        tool=step.tool_label,
        cwd=src.cwd,
        policy=options.policy,
        limit=options.max_findings,
    )
    failed = result.timed_out or result.exit_code not in step.ok_exit_codes
    try:
        return _parse_step(step, src, result, options, out, failed)
    except Exception as exc:  # noqa: BLE001 - no parser (built in or plugin) may stop verification
        out.add(
            f"the output of `{src.command}` could not be parsed: the {step.parser} parser failed "
            f"with {type(exc).__name__}: {str(exc)[:300]}",
            rule="parser-crash",
        )
        return out, None, None


def _parse_step(
    step: VerifyStep,
    src: ParseInput,
    result: CommandResult,
    options: VerifyOptions,
    out: Collector,
    failed: bool,
) -> tuple[Collector, str | None, ParseResult | None]:
    """The body of parse_step."""
    registry = parsers()
    used: str | None = None
    parsed: ParseResult | None = None
    if step.parser != "auto":
        parser = registry.get(step.parser)
        if parser is None:
            add_unparsed_finding(src, out, step.parser, "no parser has that name")
        else:
            used, parsed = step.parser, parser.parse(src, out)
    else:
        head = _head(src.source())
        for name in sniff_order():
            parser = registry[name]
            if parser.sniff is not None and parser.sniff(head):
                used, parsed = name, parser.parse(src, out)
                break
    recognised = parsed is not None and parsed.recognised
    if not recognised and failed:
        output_only = replace(src, report=None)  # the fallbacks read what the command printed
        for name, module in (("unittest", pyunit), ("compiler", compiler)):
            fallback = module.parse(output_only, out)
            if fallback.recognised:
                used, parsed, recognised = name, fallback, True
                break
    if parsed is not None and parsed.recognised and parsed.error:
        add_unparsed_finding(src, out, used or "?", parsed.error)
    elif (
        not recognised
        and step.parser != "auto"
        and not failed
        and (src.output_tail.strip() or (src.report and src.report.is_file()))
    ):
        add_unparsed_finding(src, out, step.parser, "the output is not in that format")
    if result.timed_out or (failed and not out.findings and not out.dropped):
        add_exit_finding(
            src,
            out,
            timed_out=result.timed_out,
            duration=result.duration_seconds,
            tail=options.tail_lines,
            unparsed_as=step.parser if step.parser != "auto" and not recognised else None,
        )
    return out, used, parsed


async def run_steps(
    steps: Iterable[VerifyStep],
    cwd: Path,
    *,
    reports_dir: Path,
    cache_dir: Path,
    env: Mapping[str, str],
    options: VerifyOptions,
    on_line: Callable[[str], None] | None = None,
    redact: Callable[[str], str] | None = None,
) -> VerifyReport:
    """Run the steps one after another in cwd; each step's output goes to the live log and to a file in
    reports_dir (passed through `redact` when given), and its findings are parsed off the event loop."""
    env = dict(env)
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")  # no __pycache__ left in the tree
    reports_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    findings: list[VerifyFinding] = []
    outcomes: list[StepOutcome] = []
    for index, step in enumerate(steps, 1):
        stem = f"{index:02d}-{step.category}-{_UNSAFE_NAME.sub('_', step.tool_label)}"
        program = None
        if step.requires:
            program = shutil.which(step.requires, path=env.get("PATH"))
            if program is None:
                outcome = StepOutcome(
                    step,
                    step.command,
                    skipped=f"{step.requires} is not installed (not in the repository's .venv/bin "
                    "or on PATH)",
                )
                outcomes.append(outcome)
                if on_line is not None:
                    on_line(f"[{step.category}] {outcome.skipped}; skipped {step.tool_label}")
                continue
        report = reports_dir / f"{stem}.{step.report_ext}"
        output_file = reports_dir / f"{stem}.log"
        report.unlink(missing_ok=True)
        command = expand_command(
            step, report, cache_dir / _UNSAFE_NAME.sub("_", step.tool_label), program
        )
        prefixed = None
        if on_line is not None:
            prefix, sink = f"[{step.category}] ", on_line
            prefixed = lambda line, p=prefix, s=sink: s(p + line)
            sink(f"[{step.category}] $ {command}")
        result = await run_command(
            command,
            cwd,
            timeout=options.timeout,
            env=env,
            max_output_bytes=options.max_output_bytes,
            max_file_bytes=options.max_report_bytes,
            on_line=prefixed,
            output_file=output_file,
        )
        if redact is not None:
            for written in (output_file, report):
                await asyncio.to_thread(redact_file, written, redact)
        src = ParseInput(
            category=step.category,
            tool=step.tool_label,
            command=command,
            cwd=cwd,
            exit_code=result.exit_code,
            output_tail=result.output,
            output_file=output_file,
            report=report if "{report}" in step.command else None,
        )
        out, used, parsed = await asyncio.to_thread(parse_step, step, src, result, options)
        # Parsed whole; what stays on disk is capped like the stored output (head and tail).
        await asyncio.to_thread(cap_file, output_file, options.max_output_bytes)
        kept = out.findings
        findings.extend(kept)
        outcome = StepOutcome(
            step,
            command,
            result=result,
            parser=used,
            findings=len(kept),
            entries=parsed.entries if parsed is not None else 0,
            dropped=dict(out.dropped_by_severity),
            parse_error=parsed.error if parsed is not None else None,
            report=src.report if src.report is not None and src.report.is_file() else None,
            output_file=output_file,
        )
        outcomes.append(outcome)
        if on_line is not None:
            state = "timed out" if result.timed_out else f"exit {result.exit_code}"
            on_line(
                f"[{step.category}] {step.tool_label}: {state}, {len(kept)} finding(s)"
                + (f" (parsed as {used})" if used else "")
            )
    return VerifyReport(findings, assign_fingerprints(findings, [str(cwd)]), outcomes)
