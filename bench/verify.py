"""Parse a JUnit XML of 20,000 test cases and a ruff JSON of 20,000 findings; print seconds each.

Target: under 1 s each. Run: .venv/bin/python bench/verify.py [--cases N] [--findings N]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.verify_support.outputs import write
from verify.basic import VerifyStep
from verify.parsers.base import ParseInput
from verify.pipeline import VerifyOptions, parse_step
from verify.runner import CommandResult


def bench(fmt: str, n: int, folder: Path) -> None:
    """Write n entries of a format, then time parse_step over the file (findings kept: all)."""
    tree = folder / "tree"
    (tree / "tests").mkdir(parents=True, exist_ok=True)
    (tree / "app.py").write_text("x = 1\n")
    file = write(folder / f"{fmt}.out", fmt, n)
    step = VerifyStep("test" if fmt == "junit" else "lint", "tool {report}", tool=fmt, parser=fmt)
    src = ParseInput(step.category, fmt, step.command, tree, 1, "", report=file)
    result = CommandResult(step.command, 1, "", False, 0.0, False)
    started = time.perf_counter()
    out, _used, parsed = parse_step(step, src, result, VerifyOptions(max_findings=n))
    seconds = time.perf_counter() - started
    size = file.stat().st_size / 1e6
    label = "test cases" if fmt == "junit" else "findings"
    entries = parsed.entries if parsed else 0
    print(
        f"{fmt}: {n} {label} ({size:.1f} MB): {seconds:.3f} s, "
        f"{entries} problems read, {len(out.findings)} findings kept"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=20_000, help="JUnit test cases (half fail)")
    parser.add_argument("--findings", type=int, default=20_000, help="ruff findings")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench("junit", args.cases, Path(tmp))
        bench("ruff", args.findings, Path(tmp))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: {peak:.0f} MB")


if __name__ == "__main__":
    main()
