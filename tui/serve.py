"""`orchestrator serve`: the same Textual app in a browser through textual-serve, behind a token.

textual-serve's `Server` supplies the page, its static files and the websocket that runs one app
process per browser tab; this module builds the aiohttp application around those public handlers
so every request passes a token check first. The printed URL carries the token (`/?token=...`);
opening it sets a cookie holding the token (HttpOnly, SameSite=Strict, named for the port) and
redirects to the page without it, whose own requests (static files, the websocket, downloads)
carry the cookie. A websocket opened from another origin is refused even with the cookie. The token is printed once
and never logged or stored (there is no access log: it would hold the page URL).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import shlex
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import urlencode

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.typedefs import Middleware
from textual_serve.server import Server

from config.dburl import split_password
from core.errors import InputError
from tui.serve_driver import SERVED_DRIVER

REFUSED = (
    "403 Forbidden: this page needs the token printed by `orchestrator serve`; "
    "open the full URL it printed.\n"
)
CROSS_ORIGIN = "403 Forbidden: the app's websocket only answers its own page.\n"
# How long stopping waits for the served apps to quit after they are told to.
STOP_SECONDS = 20.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def app_command(home: Path, db_url: str | None = None, as_name: str | None = None) -> str:
    """The shell command textual-serve starts per browser tab: this app on `home` (with serve's
    own `--db` and `--as`), drawn by the served driver (textual-serve sets TEXTUAL_DRIVER to its
    own; `env` sets ours after it). The URL goes without its password, which anyone could read
    in the process list: the tabs get it from the environment (`tab_environment`)."""
    driver = f"TEXTUAL_DRIVER={SERVED_DRIVER}"
    command = ["env", driver, sys.executable, "-m", "tui.cli", "--home", str(home)]
    if db_url:
        command += ["--db", split_password(db_url)[0]]
    if as_name:
        command += ["--as", as_name]
    return shlex.join(command)


def tab_environment(db_url: str | None) -> dict[str, str]:
    """What the tabs' environment needs beyond serve's own: the `--db` URL's password, as
    libpq's PGPASSWORD (textual-serve copies serve's environment for each tab)."""
    password = split_password(db_url)[1] if db_url else None
    return {} if password is None else {"PGPASSWORD": password}


def is_loopback(address: str) -> bool:
    """True for an IP address only this machine can reach (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host`:`port` (port 0: a free one); InputError says why not."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        return socket.create_server(address[:2], family=family, reuse_port=False)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InputError(
            f"cannot listen on {host} port {port}: {reason}; "
            "choose another --port (0 picks a free one) or --host"
        ) from exc


def public_url(host: str, port: int) -> str:
    """The base URL a browser opens: the host asked for, or this machine's name for a wildcard."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


@dataclass
class TokenGuard:
    """The aiohttp middleware that refuses requests without the token, and the sockets it let in."""

    token: str
    cookie: str
    sockets: set[asyncio.Task[object]] = field(default_factory=set)

    def granted(self, request: web.Request) -> bool:
        given = request.query.get("token")
        if given is None:
            given = request.cookies.get(self.cookie, "")
        return secrets.compare_digest(given.encode(), self.token.encode())

    def middleware(self) -> Middleware:
        """The aiohttp middleware that runs `check` before every handler."""

        @web.middleware
        async def token_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self.check(request, handler)

        return token_guard

    async def check(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.granted(request):
            print(f"refused {request.method} {request.path}: no valid token", file=sys.stderr)
            return web.Response(status=403, text=REFUSED)
        if request.path == "/" and "token" in request.query:
            return self.enter(request)
        if request.path == "/ws":
            origin = request.headers.get("Origin")
            if origin is not None and origin != f"{request.scheme}://{request.host}":
                print(f"refused the websocket from {origin}: another origin", file=sys.stderr)
                return web.Response(status=403, text=CROSS_ORIGIN)
            task = asyncio.current_task()
            if task is not None:  # a session runs as long as its request: stopping cancels it
                self.sockets.add(task)
                task.add_done_callback(self.sockets.discard)
        response = await handler(request)
        if request.path == "/":
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers["Cache-Control"] = "no-store"
        return response

    def enter(self, request: web.Request) -> web.StreamResponse:
        """The printed URL: the token moves into the cookie and the browser goes on to the page
        without it, so it stays out of the address bar and the history."""
        rest = {k: v for k, v in request.query.items() if k != "token"}
        response = web.HTTPSeeOther("/" + (f"?{urlencode(rest)}" if rest else ""))
        response.set_cookie(self.cookie, self.token, httponly=True, samesite="Strict", path="/")
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response


def build_app(server: Server, guard: TokenGuard) -> web.Application:
    """textual-serve's page, websocket, downloads and static files, each behind the token."""
    app = web.Application(middlewares=[guard.middleware()])
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(server.templates_path))
    # The names are the ones textual-serve's page handler asks the router for.
    app.add_routes(
        [
            web.get("/", server.handle_index, name="index"),
            web.get("/ws", server.handle_websocket, name="websocket"),
            web.get("/download/{key}", server.handle_download, name="download"),
            web.static("/static", server.statics_path, name="static"),
        ]
    )
    return app


async def serve(
    home: Path,
    host: str,
    port: int,
    out: TextIO = sys.stdout,
    *,
    db_url: str | None = None,
    as_name: str | None = None,
) -> int:
    """Serve the app until SIGINT or SIGTERM; prints the URL with a fresh token first. `db_url`
    and `as_name` (serve's `--db` and `--as`) are passed on to every tab's app."""
    sock = listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    if not is_loopback(bound_host):
        print(
            f"warning: serving on {bound_host}, which is not a loopback address: anyone who can "
            "reach this port and has the URL drives the orchestrator, over plain HTTP "
            "(the token is not encrypted on the way)",
            file=sys.stderr,
        )
    base = public_url(host, bound_port)
    os.environ.update(tab_environment(db_url))  # read by textual-serve when a tab starts
    server = Server(
        app_command(home, db_url, as_name),
        host=host,
        port=bound_port,
        title="Agent Orchestrator",
        public_url=base,
    )
    token = secrets.token_urlsafe(32)
    guard = TokenGuard(token=token, cookie=f"orchestrator-serve-{bound_port}")
    runner = web.AppRunner(build_app(server, guard), access_log=None, handle_signals=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runner.setup()
        await web.SockSite(runner, sock).start()
        print(f"serving the app on {base}/?token={token}", file=out)
        print(
            f"open that URL in a browser (each tab runs its own app on {home}); "
            "Ctrl+C stops serving",
            file=out,
            flush=True,
        )
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await _end_sessions(guard.sockets)
        await runner.cleanup()
        sock.close()
    print("stopped serving", file=out, flush=True)
    return 0


async def _end_sessions(sessions: set[asyncio.Task[object]]) -> None:
    """Cancel each open websocket: textual-serve then tells its app to quit and waits for it."""
    pending = list(sessions)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=STOP_SECONDS)
