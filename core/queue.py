"""Submitting runs for workers, and giving a claimed run what it brought from the submitter.

`submit` stores a pending run exactly as `run` would (same checks, same configuration snapshot),
then puts it on the queue (core.state.claims) with what the worker cannot find on its own
machine: the content of a `--replay` cassette is stored in the database; a `--record` cassette
is written on the worker, under its home (core.run_paths.run_cassette), and the run's log says
where. A worker calls `prepare_inputs` before driving a claimed run, which writes those files
into its home and points the run's stored configuration at them.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import TYPE_CHECKING

from core import run_paths
from core.errors import InputError
from core.records import Run

if TYPE_CHECKING:
    from config.loader import LoadedConfig
    from core.engine import Engine

REPLAY_INPUT = "replay.jsonl"  # the name a replay cassette is stored under (run_inputs)


async def submit_run(
    engine: Engine,
    task: str,
    repo: Path | str,
    loaded: LoadedConfig,
    *,
    allow_dirty: bool = False,
    auto_approve: bool = False,
    record: bool = False,
) -> Run:
    """Store a pending run for a worker: checked and snapshotted as `run` does, queued with its
    replay cassette's content; `record` asks the worker to record the model calls."""
    inputs: dict[str, str] = {}
    replay = loaded.config.llm.replay
    if replay:
        try:
            inputs[REPLAY_INPUT] = await asyncio.to_thread(Path(replay).read_text, "utf-8")
        except OSError as exc:
            raise InputError(f"--replay {replay}: cannot be read ({exc})") from exc
    run = await engine.create_run(task, repo, loaded, allow_dirty=allow_dirty)
    await engine.store.set_run_metadata(
        run.id, submitted=True, auto_approve=auto_approve, record=record
    )
    run = await engine.store.queue_run(run.id, inputs)
    engine.journal.log(run.id, None, "info", f"run {run.id} submitted; waiting for a worker")
    return run


async def prepare_inputs(engine: Engine, run: Run, worker: str) -> Run:
    """Write what a submitted run brought along into this home and point its stored
    configuration at it (a replay cassette; where `--record` writes); returns the stored run."""
    snapshot = copy.deepcopy(run.config)
    llm = snapshot.setdefault("config", {}).setdefault("llm", {})
    changed = False
    inputs = await engine.store.run_inputs(run.id)
    if REPLAY_INPUT in inputs:
        path = run_paths.run_input(engine.paths, run.id, REPLAY_INPUT)
        await asyncio.to_thread(_write_text, path, inputs[REPLAY_INPUT])
        if llm.get("replay") != str(path):
            llm["replay"], changed = str(path), True
    if run.metadata.get("record"):
        path = run_paths.run_cassette(engine.paths, run.id)
        if llm.get("record") != str(path):
            llm["record"], changed = str(path), True
        engine.journal.log(
            run.id, None, "info", f"model calls are recorded to {path} on worker {worker}"
        )
    if not changed:
        return run
    return await engine.store.set_run_config(run.id, snapshot)


def _write_text(path: Path, text: str) -> None:
    """Write a file, making its folder first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
