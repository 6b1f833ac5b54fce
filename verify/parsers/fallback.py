"""The last resort: a failed command becomes one finding with its exit code and the tail of its output."""

from __future__ import annotations

from verify.parsers.base import Collector, ParseInput


def tail_lines(output: str, count: int) -> str:
    """The last `count` lines of an output, trailing blank lines left out."""
    lines = output.rstrip().splitlines()
    return "\n".join(lines[-count:]) if count > 0 else ""


def add_exit_finding(
    src: ParseInput,
    out: Collector,
    *,
    timed_out: bool,
    duration: float,
    tail: int,
    unparsed_as: str | None = None,
) -> None:
    """One finding saying the command failed (or timed out), quoting the end of its output."""
    if timed_out:
        rule = "timeout"
        head = f"`{src.command}` timed out after {duration:.0f}s"
    else:
        rule = f"exit-{src.exit_code}"
        head = f"`{src.command}` failed (exit {src.exit_code})"
    if unparsed_as:
        head += f"; its output could not be parsed as {unparsed_as}"
    quoted = tail_lines(src.output_tail, tail)
    out.add(f"{head}\n{quoted}" if quoted else head, rule=rule, details=quoted or None)


def add_unparsed_finding(src: ParseInput, out: Collector, parser: str, error: str) -> None:
    """A finding saying the tool's output could not be parsed, so nothing it reported is lost silently."""
    out.add(
        f"the output of `{src.command}` could not be parsed as {parser}: {error}",
        rule="unparsed-output",
        level="warning" if src.exit_code == 0 else None,
        details=tail_lines(src.output_tail, 20) or None,
    )
