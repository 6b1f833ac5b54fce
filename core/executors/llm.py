"""The built-in executor: asks a chat model for SEARCH/REPLACE blocks and applies them in the worktree."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any, Protocol

from core.errors import EditError, LLMError
from core.executors.base import AttemptResult, LogFn, PhaseJob
from core.executors.edits import EditFormatError, apply_edit_blocks, parse_edit_blocks, safe_target
from core.executors.prompts import build_executor_messages
from core.llm.base import ChatRequest, ChatResponse, TokenSink


class ChatClient(Protocol):
    """The part of core.llm.client.LLMClient this executor uses."""

    async def chat(
        self, request: ChatRequest, on_text: TokenSink | None = None
    ) -> ChatResponse: ...


def _read_files(
    worktree: Path, paths: list[str], max_bytes: int
) -> tuple[dict[str, str], list[str]]:
    """Contents of the relevant files that exist, are text and are small enough; plus skip notes."""
    files: dict[str, str] = {}
    skipped: list[str] = []
    root = os.path.realpath(worktree)
    for rel in paths:
        try:
            target = safe_target(worktree, rel, root)
        except EditError as exc:
            skipped.append(f"{rel}: {exc}")
            continue
        try:
            info = os.stat(target)
        except OSError:
            continue  # gone since retrieval indexed it
        if not stat.S_ISREG(info.st_mode):
            continue
        if info.st_size > max_bytes:
            skipped.append(f"{rel}: {info.st_size} bytes is over the {max_bytes}-byte limit")
            continue
        data = target.read_bytes()
        if b"\0" in data:
            skipped.append(f"{rel}: binary file")
            continue
        files[rel] = data.decode("utf-8", errors="replace")
    return files, skipped


class LLMExecutor:
    """Executor that edits the worktree through SEARCH/REPLACE blocks written by a chat model."""

    name = "llm"

    def __init__(
        self,
        llm: ChatClient,
        *,
        model: str,
        temperature: float | None = None,
        max_tokens: int | None = None,
        context_window: int | None = None,
        max_file_bytes: int = 100_000,
    ) -> None:
        self.llm = llm
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.context_window = context_window
        self.max_file_bytes = max_file_bytes

    @classmethod
    def from_config(cls, config: Any, llm: ChatClient, model_def: Any) -> LLMExecutor:
        """Build from the OrchestratorConfig and the executor's model definition (both duck-typed)."""
        rag = getattr(config, "rag", None)
        model = getattr(model_def, "model", None) or model_def.name
        return cls(
            llm,
            model=model,
            temperature=getattr(model_def, "temperature", None),
            max_tokens=getattr(model_def, "max_tokens", None),
            context_window=getattr(model_def, "context_window", None),
            max_file_bytes=getattr(rag, "max_file_bytes", None) or 100_000,
        )

    async def execute(self, job: PhaseJob, log: LogFn) -> AttemptResult:
        """One attempt: prompt the model with the phase and files, then apply its edit blocks."""
        files, skipped = await asyncio.to_thread(
            _read_files, job.worktree, job.relevant_files, self.max_file_bytes
        )
        for note in skipped:
            log(f"not sent to the model: {note}", "warning")
        request = ChatRequest(
            role="executor",
            model=self.model,
            messages=build_executor_messages(job, files),
            run_id=job.run_id,
            phase=job.phase_plan_id,
            attempt=job.attempt,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            context_window=self.context_window,
        )
        try:
            response = await self.llm.chat(request, on_text=lambda text: log(text, "llm"))
        except LLMError as exc:
            return AttemptResult(
                ok=False,
                summary=f"model call failed: {exc}",
                error=str(exc),
                retriable=exc.retriable,
            )
        try:
            blocks = parse_edit_blocks(response.content)
        except EditFormatError as exc:
            return AttemptResult(
                ok=False,
                summary="the answer held a malformed SEARCH/REPLACE block",
                error=f"malformed SEARCH/REPLACE block: {exc}",
            )
        if not blocks:
            return AttemptResult(
                ok=False,
                summary="no edits",
                error="the answer held no SEARCH/REPLACE block; answer with blocks in the "
                "required format",
            )
        report = await asyncio.to_thread(apply_edit_blocks, job.worktree, blocks)
        if report.failures:
            error = "\n".join(report.failures)
            log(f"edits not applied:\n{error}", "warning")
            return AttemptResult(
                ok=False,
                summary=f"{len(report.failures)} of {len(blocks)} edit blocks failed; nothing was applied",
                error=error,
            )
        summary = f"applied {len(blocks)} edit blocks to: {', '.join(report.applied)}"
        log(summary, "info")
        return AttemptResult(ok=True, summary=summary, changed_files=list(report.applied))
