"""The editor end of an `orchestrator acp` connection: session updates, permission requests, and
their cancellation with `$/cancel_request` when another answer wins or the question is withdrawn.

It is a plain SDK `Connection` with the agent router (what `acp.run_agent` builds), so besides the
typed calls we can send that notification, and note each request's id to name it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from acp import update_agent_message_text
from acp.agent.router import build_agent_router
from acp.connection import Connection, StreamDirection, StreamEvent
from acp.meta import CLIENT_METHODS
from acp.schema import (
    PermissionOption,
    RequestPermissionRequest,
    RequestPermissionResponse,
    SessionNotification,
    ToolCallUpdate,
)
from acp.utils import serialize_params

if TYPE_CHECKING:
    from core.acp_agent import OrchestratorAgent

CANCEL_REQUEST = "$/cancel_request"  # ACP's request cancellation notification


class EditorLink:
    """The editor as we call it: session updates, permission requests, and their cancellation."""

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self._request_ids: dict[str, int | str] = {}  # tool call id -> id of its open request

    def observe(self, event: StreamEvent) -> None:
        """Note the JSON-RPC id of each permission request we send, to cancel it by id later."""
        message = event.message
        if (
            event.direction is StreamDirection.OUTGOING
            and message.get("method") == CLIENT_METHODS["session_request_permission"]
        ):
            tool_call = (message.get("params") or {}).get("toolCall") or {}
            self._request_ids[str(tool_call.get("toolCallId"))] = message["id"]

    async def update(self, session_id: str, update: Any) -> None:
        assert self.conn is not None
        notification = SessionNotification(session_id=session_id, update=update)
        await self.conn.send_notification(
            CLIENT_METHODS["session_update"], serialize_params(notification)
        )

    async def say(self, session_id: str, text: str) -> None:
        await self.update(session_id, update_agent_message_text(text))

    async def ask(
        self, session_id: str, tool_call: ToolCallUpdate, options: list[PermissionOption]
    ) -> RequestPermissionResponse:
        assert self.conn is not None
        request = RequestPermissionRequest(
            session_id=session_id, tool_call=tool_call, options=options
        )
        try:
            result = await self.conn.send_request(
                CLIENT_METHODS["session_request_permission"], serialize_params(request)
            )
        except asyncio.CancelledError:
            raise  # withdrawn: cancel_request still needs the request's id
        except BaseException:
            self._request_ids.pop(tool_call.tool_call_id, None)
            raise
        self._request_ids.pop(tool_call.tool_call_id, None)
        return RequestPermissionResponse.model_validate(result)

    async def cancel_request(self, tool_call_id: str) -> None:
        """Tell the editor a permission request it still shows is void (`$/cancel_request`)."""
        request_id = self._request_ids.pop(tool_call_id, None)
        if request_id is None or self.conn is None:
            return
        try:
            await self.conn.send_notification(CANCEL_REQUEST, {"requestId": request_id})
        except ConnectionError:
            pass  # the editor went away; nothing shows the request any more


async def serve(
    agent: OrchestratorAgent, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answer the editor on these streams until it closes them; runs still going are stopped."""
    conn = Connection(
        build_agent_router(agent),  # type: ignore[arg-type]
        writer,
        reader,
        listening=False,
        observers=[agent.link.observe],
    )
    agent.link.conn = conn
    try:
        await conn.main_loop()
    finally:
        await agent.shutdown()
        await asyncio.shield(conn.close())
