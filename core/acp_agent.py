"""`orchestrator acp`: the orchestrator as an ACP agent. A session belongs to a repository (its
cwd); a prompt starts a run there (or resumes the session's interrupted one) and streams its plan,
attempts and findings; its interventions become permission requests (core/acp_link.py sends them).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from acp import PROTOCOL_VERSION, RequestError, update_agent_thought_text
from acp.schema import (
    AgentCapabilities,
    AllowedOutcome,
    Implementation,
    InitializeResponse,
    LoadSessionResponse,
    NewSessionResponse,
    PromptResponse,
    TextContentBlock,
)

from core import acp_updates
from core.acp_link import EditorLink
from core.console import describe
from core.errors import AlreadyAnsweredError, InputError, OrchestratorError, WithdrawnError
from core.events import (
    Event,
    ExecutionFinished,
    ExecutionStarted,
    InterventionRequested,
    InterventionResolved,
    LogEmitted,
    PhaseStatusChanged,
    PlanCreated,
)
from core.records import AUTO_APPROVABLE_KINDS, InterventionStatus, Phase, Run, RunStatus

if TYPE_CHECKING:
    from config.loader import LoadedConfig
    from core.bus import Subscription
    from core.engine import Engine

log = logging.getLogger("orchestrator.acp")
SESSION_KEY = "acp_session"  # the run's metadata key naming the editor session that started it
_LOAD_PAGES = 10  # session/load looks through this many pages of 200 of the folder's runs


@dataclass
class Session:
    """One editor session: its repository and the run its prompts drive."""

    id: str
    cwd: Path
    run_id: str | None = None
    driving: asyncio.Task[Run] | None = None
    cancel_wanted: bool = False
    asks: dict[str, asyncio.Task[None]] = field(default_factory=dict)  # intervention id -> ask
    phases: dict[str, Phase] = field(default_factory=dict)  # phase id -> row


class OrchestratorAgent:
    """The ACP agent side: sessions, prompts that drive runs, cancel."""

    def __init__(
        self,
        engine: Engine,
        load: Callable[[Path], LoadedConfig],
        *,
        auto_approve: bool = False,
        allow_dirty: bool = False,
        verbose: bool = False,
        version: str = "unknown",
    ) -> None:
        self.engine = engine
        self.load = load
        self.auto_approve = auto_approve
        self.allow_dirty = allow_dirty
        self.verbose = verbose
        self.version = version
        self.link = EditorLink()
        self.sessions: dict[str, Session] = {}

    # ---- the protocol's requests ---------------------------------------------------------------

    async def initialize(self, protocol_version: int, **kwargs: Any) -> InitializeResponse:
        return InitializeResponse(
            protocol_version=min(protocol_version, PROTOCOL_VERSION),
            agent_capabilities=AgentCapabilities(load_session=True),
            agent_info=Implementation(
                name="orchestrator", title="Agent Orchestrator", version=self.version
            ),
        )

    async def authenticate(self, method_id: str, **kwargs: Any) -> None:
        return None  # nothing to log in to: models and agents use their own configuration

    async def new_session(self, cwd: str, **kwargs: Any) -> NewSessionResponse:
        folder = Path(cwd)
        if not folder.is_absolute() or not folder.is_dir():
            raise RequestError.invalid_params(
                {"cwd": cwd, "reason": "the session's cwd must be an existing absolute folder"}
            )
        session = Session(id=f"s-{uuid.uuid4().hex[:12]}", cwd=folder)
        self.sessions[session.id] = session
        log.info("session %s opened for %s", session.id, folder)
        return NewSessionResponse(session_id=session.id)

    async def load_session(self, cwd: str, session_id: str, **kwargs: Any) -> LoadSessionResponse:
        """Reopen a session of an earlier `orchestrator acp` (after an editor restart): its newest
        run is found by the session id stored with it and shown again; a prompt resumes it when
        it was interrupted."""
        folder = Path(cwd)
        if not folder.is_absolute() or not folder.is_dir():
            raise RequestError.invalid_params(
                {"cwd": cwd, "reason": "the session's cwd must be an existing absolute folder"}
            )
        existing = self.sessions.get(session_id)
        if existing is not None and existing.driving is not None and not existing.driving.done():
            raise RequestError.invalid_request(
                {"reason": f"session {session_id} is driving run {existing.run_id} here already"}
            )
        session = Session(id=session_id, cwd=folder)
        self.sessions[session_id] = session
        run = await self._session_run(session)
        if run is not None:
            session.run_id = run.id
            await self.link.update(session.id, acp_updates.user_prompt(run.task))
            phases = await self._phases(session)
            if phases:
                await self.link.update(session.id, acp_updates.plan_update(phases))
            doc = await self.engine.run_document(run.id)
            await self.link.say(session.id, acp_updates.summary_text(run, doc))
            if run.status is RunStatus.INTERRUPTED:
                await self.link.say(session.id, f"send a prompt to resume run {run.id} here\n")
        return LoadSessionResponse()

    async def _session_run(self, session: Session) -> Run | None:
        """The newest run a prompt of this session started in its folder, if any."""
        root = await _repo_root(session.cwd)
        pages = 0
        while pages < _LOAD_PAGES:
            page = await self.engine.runs_page(query=str(root), limit=200, offset=pages * 200)
            for summary in page:
                if summary.run.metadata.get(SESSION_KEY) == session.id:
                    return summary.run
            if len(page) < 200:
                return None
            pages += 1
        return None

    async def prompt(self, session_id: str, prompt: list[Any], **kwargs: Any) -> PromptResponse:
        session = self._session(session_id)
        if session.driving is not None and not session.driving.done():
            raise RequestError.invalid_request(
                {"reason": f"run {session.run_id} is still going in this session; cancel it first"}
            )
        text = "\n".join(b.text for b in prompt if isinstance(b, TextContentBlock)).strip()
        session.cancel_wanted = False
        try:
            run, resume = await self._run_for(session, text)
        except OrchestratorError as exc:
            raise _request_error(exc) from None
        await self.link.say(
            session.id,
            f"{'resuming' if resume else 'started'} run {run.id} on {run.repo}\n",
        )
        final = await self._drive(session, run, resume=resume)
        doc = await self.engine.run_document(final.id)
        await self.link.update(session.id, acp_updates.plan_update(await self._phases(session)))
        await self.link.say(session.id, acp_updates.summary_text(final, doc))
        if final.status is RunStatus.CANCELLED:
            return PromptResponse(stop_reason="cancelled")
        return PromptResponse(stop_reason="end_turn")

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        """`session/cancel`: cancel the session's run (stored cancelled once its process stops it)."""
        session = self.sessions.get(session_id)
        if session is None:
            return
        session.cancel_wanted = True
        if session.run_id is None or session.driving is None or session.driving.done():
            return
        try:
            await self.engine.cancel_run(session.run_id)
        except InputError as exc:  # it ended meanwhile
            log.info("cancel of %s: %s", session.run_id, exc)

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise RequestError.method_not_found(f"_{method}")

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        return None

    # ---- driving a run -------------------------------------------------------------------------

    def _session(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise RequestError.invalid_params(
                {"sessionId": session_id, "reason": "no such session; open one with session/new"}
            )
        return session

    async def _run_for(self, session: Session, task: str) -> tuple[Run, bool]:
        """The session's interrupted run to resume, else a new run of the prompt's task."""
        if session.run_id is not None:
            run = await self.engine.get_run(session.run_id)
            if run.status is RunStatus.INTERRUPTED:
                return run, True
        loaded = await asyncio.to_thread(self.load, session.cwd)
        run = await self.engine.create_run(task, session.cwd, loaded, allow_dirty=self.allow_dirty)
        await self.engine.store.set_run_metadata(run.id, **{SESSION_KEY: session.id})
        return run, False

    async def _drive(self, session: Session, run: Run, *, resume: bool) -> Run:
        """Execute the run here while relaying its events; returns the stored run at its end."""
        session.run_id = run.id
        session.phases = {}
        sub = self.engine.subscribe(run_id=run.id)
        relay = asyncio.create_task(self._relay(session, sub))
        work = asyncio.create_task(
            self.engine.resume_run(run.id, auto_approve=self.auto_approve)
            if resume
            else self.engine.execute_run(run.id, auto_approve=self.auto_approve)
        )
        session.driving = work
        if session.cancel_wanted:  # session/cancel came while the run was being created
            await self.cancel(session.id)
        if resume:
            phases = await self._phases(session)
            if phases:
                await self.link.update(session.id, acp_updates.plan_update(phases))
            for item in await self.engine.interventions(run.id, pending_only=True):
                if not (self.auto_approve and item.kind in AUTO_APPROVABLE_KINDS):
                    self._start_ask(session, item.id)
        try:
            return await work
        except OrchestratorError as exc:
            raise _request_error(exc) from None
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this prompt itself is being cancelled (the editor went away)
            return await self.engine.get_run(run.id)  # the drive was stopped: answer with its state
        finally:
            await self.engine.journal.flush()
            sub.close()
            await relay
            for intervention_id in list(session.asks):
                await self._withdraw(session, intervention_id, "withdrawn")

    async def _phases(self, session: Session) -> list[Phase]:
        assert session.run_id is not None
        phases = await self.engine.phases(session.run_id)
        session.phases = {p.id: p for p in phases}
        return phases

    async def _relay(self, session: Session, sub: Subscription) -> None:
        """Turn the run's events into plan updates, tool calls, messages and permission requests."""
        names: dict[str, str] = {}
        async for event in sub:
            try:
                if isinstance(event, LogEmitted):
                    # --verbose: the live log (model output, commands) as the agent's thoughts
                    if self.verbose:
                        text = "".join(f"{r.message}\n" for r in event.lines)
                        await self.link.update(session.id, update_agent_thought_text(text))
                    continue
                await self._relay_one(session, event, names)
            except ConnectionError:
                return  # the editor went away; the run goes on to its end
            except Exception:  # one update that fails must not stop the others
                log.exception("relaying %s to the editor failed", type(event).__name__)

    async def _relay_one(self, session: Session, event: Event, names: dict[str, str]) -> None:
        match event:
            case PlanCreated() | PhaseStatusChanged():
                await self.link.update(
                    session.id, acp_updates.plan_update(await self._phases(session))
                )
            case ExecutionStarted(execution_id=eid, phase_id=phase_id, attempt=attempt):
                phase = session.phases.get(phase_id)
                await self.link.update(session.id, acp_updates.attempt_started(eid, phase, attempt))
            case ExecutionFinished(execution_id=eid, status=status, error=error):
                await self.link.update(session.id, acp_updates.attempt_finished(eid, status, error))
            case InterventionRequested(intervention_id=iid, kind=kind):
                if not (self.auto_approve and kind in AUTO_APPROVABLE_KINDS):  # --yes answers it
                    self._start_ask(session, iid)
            case InterventionResolved(intervention_id=iid, status=status):
                if iid in session.asks:  # answered in the app or the CLI, or withdrawn
                    await self._withdraw(session, iid, status)
        line = describe(event, names)
        if line:
            await self.link.say(session.id, line + "\n")

    # ---- interventions as permission requests --------------------------------------------------

    def _start_ask(self, session: Session, intervention_id: str) -> None:
        if intervention_id not in session.asks:
            session.asks[intervention_id] = asyncio.create_task(self._ask(session, intervention_id))

    async def _ask(self, session: Session, intervention_id: str) -> None:
        """Ask the editor; its answer resolves the intervention unless another answer came first."""
        try:
            item = await self.engine.intervention(intervention_id)
            if item.status is not InterventionStatus.PENDING:
                return  # answered already (`--yes`, another process)
            raises = {offer.option_id: offer for offer in await self.engine.budget_offers(item)}
            tool_call, options = acp_updates.permission_request(item, list(raises.values()))
            try:  # the tool call first, so the editor can show it before and after the question
                await self.link.update(session.id, acp_updates.ask_started(tool_call))
                response = await self.link.ask(session.id, tool_call, options)
            except (ConnectionError, RequestError) as exc:
                log.warning("permission request for %s failed: %s", intervention_id, exc)
                return
            outcome = response.outcome
            if not isinstance(outcome, AllowedOutcome):
                if session.cancel_wanted:
                    return  # the editor cancelled the turn: the run's cancel withdraws the question
                await self.link.say(
                    session.id,
                    f"intervention {intervention_id} left pending (the editor closed the "
                    f"request): answer it with `orchestrator approve {intervention_id}` or "
                    f"`orchestrator reject {intervention_id}`\n",
                )
                return
            session.asks.pop(intervention_id, None)  # our own answer needs no withdrawal
            offer = raises.get(outcome.option_id)
            approve = offer is not None or outcome.option_id == acp_updates.APPROVE
            try:  # a picked raise goes through the same command as `approve ID --budget-usd N`
                await self.engine.resolve_intervention(
                    intervention_id,
                    approve=approve,
                    note="answered in the editor",
                    **(offer.approve_args() if offer is not None else {}),
                )
            except (AlreadyAnsweredError, WithdrawnError, InputError) as exc:
                await self.link.say(session.id, f"{exc}\n")
            settled = await self.engine.intervention(intervention_id)
            if settled.status is not InterventionStatus.PENDING:  # close the request's tool call
                await self.link.update(
                    session.id, acp_updates.ask_settled(intervention_id, str(settled.status))
                )
        finally:
            if session.asks.get(intervention_id) is asyncio.current_task():
                del session.asks[intervention_id]

    async def _withdraw(self, session: Session, intervention_id: str, status: str) -> None:
        """Another answer won or the question was withdrawn: cancel the editor's open request."""
        task = session.asks.pop(intervention_id, None)
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        tool_call_id = acp_updates.ask_id(intervention_id)
        await self.link.cancel_request(tool_call_id)
        try:
            await self.link.update(session.id, acp_updates.ask_settled(intervention_id, status))
        except ConnectionError:
            pass

    async def shutdown(self) -> None:
        """The editor went away: stop the runs still driven here (they end interrupted, resumable)."""
        tasks = [s.driving for s in self.sessions.values() if s.driving and not s.driving.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _repo_root(folder: Path) -> Path:
    """The top of the git repository holding `folder` (runs store it), else the folder itself."""
    from core.git import repo as gitrepo

    try:
        git_repo = await asyncio.to_thread(gitrepo.open_repo, folder)
    except OrchestratorError:
        return folder
    try:
        return Path(git_repo.working_tree_dir or folder).resolve()
    finally:
        git_repo.close()


def _request_error(exc: OrchestratorError) -> RequestError:
    """An orchestrator error as the JSON-RPC error the editor shows: bad input or a failure."""
    code = -32602 if exc.exit_code == 2 else -32603
    return RequestError(code, str(exc), {"error": type(exc).__name__})
