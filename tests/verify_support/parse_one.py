"""Parse one file as a step of the given parser in a fresh process; print what came out and peak memory.

Usage: python -m tests.verify_support.parse_one PARSER FILE CWD [MAX_FINDINGS]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from verify.basic import VerifyStep
from verify.parsers.base import ParseInput
from verify.pipeline import VerifyOptions, parse_step
from verify.runner import CommandResult


def peak_rss_mb() -> float:
    """This program's own peak RSS: VmHWM belongs to the process image, while getrusage's maxrss
    carries over the RSS of a big parent (such as a long pytest session) through fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    parser, file, cwd = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    limit = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    step = VerifyStep("lint", "tool --report {report}", tool="tool", parser=parser)
    result = CommandResult(step.command, 1, "", False, 0.1, False)
    src = ParseInput("lint", "tool", step.command, cwd, 1, "tail of the output", report=file)
    out, used, parsed = parse_step(step, src, result, VerifyOptions(max_findings=limit))
    print(
        json.dumps(
            {
                "parser": used,
                "recognised": bool(parsed and parsed.recognised),
                "error": parsed.error if parsed else None,
                "entries": parsed.entries if parsed else 0,
                "kept": len(out.findings),
                "dropped": out.dropped,
                "rules": sorted({f.rule or "" for f in out.findings}),
                "first": out.findings[0].message if out.findings else None,
                "max_rss_mb": peak_rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
