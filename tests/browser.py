"""Headless Chromium driven over its DevTools protocol: open a page, read what a textual-serve
terminal on it shows, type into it, and take screenshots. Used by tests/test_serve.py and by
screenshots/generate.py (the same code path makes the README's browser screenshot)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.clirun import ROOT, cli_env
from tests.waiting import eventually, wait_until

WINDOW = (1280, 720)

# Finds textual-serve's session object (it holds the xterm.js terminal, its socket and fit addon)
# among the page's objects, and keeps its terminal where later reads find it.
_FIND_TERMINAL = """function () {
  const session = this.find(o => o && o.terminal && o.socket && o.fitAddon);
  if (session) { window.__servedTerminal = session.terminal; }
  return Boolean(session);
}"""
# The rows the terminal shows, as text.
_SCREEN_TEXT = """(() => {
  const term = window.__servedTerminal;
  const buffer = term.buffer.active;
  const rows = [];
  for (let i = 0; i < term.rows; i++) {
    const line = buffer.getLine(buffer.viewportY + i);
    rows.push(line ? line.translateToString(true) : "");
  }
  return rows.join("\\n");
})()"""


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One DevTools session on a page target: commands by id; events are not needed here."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())
        self.last_screen = ""  # the last terminal text read, kept for failure messages

    async def _read(self) -> None:
        async for raw in self.socket:
            message = json.loads(raw)
            future = self._waiting.pop(message.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(message)

    def close(self) -> None:
        self._reader.cancel()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; a DevTools error fails with its text."""
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        await self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        message = await asyncio.wait_for(future, timeout=60)
        if "error" in message:
            raise AssertionError(f"DevTools {method} failed: {message['error']}")
        result: dict[str, Any] = message.get("result", {})
        return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def navigate(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def find_terminal(self) -> bool:
        """True once the page's textual-serve terminal is found (and kept for `screen`)."""
        if await self.evaluate("Boolean(window.__servedTerminal)"):
            return True
        proto = await self.send("Runtime.evaluate", expression="Object.prototype")
        found = await self.send(
            "Runtime.queryObjects", prototypeObjectId=proto["result"]["objectId"]
        )
        objects = found["objects"]["objectId"]
        try:
            result = await self.send(
                "Runtime.callFunctionOn",
                functionDeclaration=_FIND_TERMINAL,
                objectId=objects,
                returnByValue=True,
            )
        finally:
            await self.send("Runtime.releaseObject", objectId=objects)
        return bool(result["result"].get("value"))

    async def screen(self) -> str:
        """The text the page's terminal shows now, one line per row ("" before it exists)."""
        if not await self.find_terminal():
            return ""
        self.last_screen = str(await self.evaluate(_SCREEN_TEXT))
        return self.last_screen

    async def wait_for_text(self, *texts: str, what: str, timeout: float = 60) -> str:
        """Wait until the terminal shows every one of `texts`; fail with what it showed."""

        async def shown() -> str | None:
            screen = await self.screen()
            return screen if all(t in screen for t in texts) else None

        try:
            return await eventually(shown, what=what, timeout=timeout, step=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the page's terminal shows:\n{self.last_screen}") from None

    async def focus_terminal(self) -> None:
        """Give the terminal the keyboard focus, as a click on it would."""
        await self.evaluate("window.__servedTerminal.focus()")

    async def press(self, key: str) -> None:
        """Type one printable character, `ctrl+LETTER` or `escape` into the focused element."""
        if key == "escape":
            code = {"key": "Escape", "code": "Escape", "windowsVirtualKeyCode": 27}
            await self.send("Input.dispatchKeyEvent", type="rawKeyDown", **code)
            await self.send("Input.dispatchKeyEvent", type="keyUp", **code)
            return
        if key.startswith("ctrl+"):
            letter = key.removeprefix("ctrl+")
            code = {"key": letter, "code": f"Key{letter.upper()}", "modifiers": 2}
            code["windowsVirtualKeyCode"] = ord(letter.upper())
            await self.send("Input.dispatchKeyEvent", type="rawKeyDown", **code)
            await self.send("Input.dispatchKeyEvent", type="keyUp", **code)
            return
        await self.send("Input.dispatchKeyEvent", type="keyDown", key=key, text=key)
        await self.send("Input.dispatchKeyEvent", type="keyUp", key=key)

    async def close_tab(self) -> None:
        """Close the page, as a person closing the tab (its websockets close with it); the answer
        is not awaited, as the tab may be gone before it is sent."""
        message = {"id": next(self._ids), "method": "Page.close", "params": {}}
        await self.socket.send(json.dumps(message))

    async def screenshot(self, path: Path) -> Path:
        shot = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


async def open_waiting_run(page: Page, url: str) -> str:
    """Open the served app and wait for its runs table with the demo run waiting for approval,
    and the decision modal over it (what the README's browser screenshot shows)."""
    await page.navigate(url)
    return await page.wait_for_text(
        "Agent Orchestrator — Runs",
        "Add input validation and a CSV export",
        "waiting",
        "Decision needed: risk",
        "Approve (a)",
        what="the runs table with the waiting run, and its decision modal",
    )


class Chromium:
    """One headless Chromium (profile and log in `profile`); each `page()` is a new tab of it."""

    def __init__(self, profile: Path) -> None:
        binary = chromium_path()
        if binary is None:
            raise RuntimeError("chromium is not installed (apt-get install chromium)")
        self.log = profile / "chromium.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [binary, "--headless=new", "--no-sandbox", "--remote-debugging-port=0",
                 f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                 "--no-first-run", "--disable-gpu", "--disable-extensions",
                 "--disable-background-networking", "about:blank"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        active = profile / "DevToolsActivePort"

        def port() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"chromium exited {self.proc.returncode}: {self.log.read_text()}"
                )
            words = active.read_text().split() if active.exists() else []
            return words[0] if len(words) >= 2 else None

        try:
            self.devtools = (
                f"http://127.0.0.1:{wait_until(port, what='its DevTools port', step=0.1)}"
            )
        except BaseException:
            self.stop()
            raise

    def _call(self, path: str, method: str = "GET") -> Any:
        """One request to DevTools' HTTP endpoint: JSON, or the text of `/json/close`."""
        request = urllib.request.Request(f"{self.devtools}{path}", method=method)
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = answer.read().decode()
        return json.loads(body) if body.startswith(("[", "{")) else body

    @asynccontextmanager
    async def page(self) -> AsyncIterator[Page]:
        """A new tab, sized WINDOW; closed on exit (unless the test closed it)."""
        target = await asyncio.to_thread(self._call, "/json/new?about:blank", "PUT")
        try:
            async with connect(target["webSocketDebuggerUrl"], max_size=None) as socket:
                page = Page(socket)
                await page.send("Page.enable")
                await page.send("Runtime.enable")
                await page.send(
                    "Emulation.setDeviceMetricsOverride",
                    width=WINDOW[0],
                    height=WINDOW[1],
                    deviceScaleFactor=1,
                    mobile=False,
                )
                try:
                    yield page
                finally:
                    page.close()
        finally:
            targets = await asyncio.to_thread(self._call, "/json/list")
            if any(t["id"] == target["id"] for t in targets):
                await asyncio.to_thread(self._call, f"/json/close/{target['id']}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@asynccontextmanager
async def chromium(work: Path | None = None) -> AsyncIterator[Page]:
    """A page of a Chromium of its own, stopped on exit; its profile lives in a temp folder
    (under `work` when given)."""
    with tempfile.TemporaryDirectory(prefix="chromium-", dir=work) as folder:
        browser = await asyncio.to_thread(Chromium, Path(folder))
        try:
            async with browser.page() as page:
                yield page
        finally:
            await asyncio.to_thread(browser.stop)


class Served:
    """A real `orchestrator serve --port 0` on `home`; its output goes to files in `folder`."""

    def __init__(self, home: Path, folder: Path, *args: str) -> None:
        self.home = home
        self.stdout = folder / "serve.out"
        self.stderr = folder / "serve.err"
        with self.stdout.open("w") as out, self.stderr.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tui.cli", "serve", "--port", "0", *args],
                cwd=ROOT,
                env=cli_env(home),
                stdout=out,
                stderr=err,
            )

    def output(self) -> str:
        return f"stdout:\n{self.stdout.read_text()}\nstderr:\n{self.stderr.read_text()}"

    def url(self) -> str:
        """The URL it printed (with its token), once it printed it."""

        def printed() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}\n{self.output()}")
            words = self.stdout.read_text().split()
            return next((w for w in words if "?token=" in w), None)

        return wait_until(printed, what="serve to print its URL", step=0.05)

    def stop(self) -> int:
        """SIGTERM, as Ctrl+C would; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"serve did not stop on SIGTERM\n{self.output()}") from None

    def app_processes(self) -> list[int]:
        """Ids of the live app processes it started (`python -m tui.cli --home HOME`)."""
        tail = ["-m", "tui.cli", "--home", str(self.home)]
        found = []
        for entry in Path("/proc").iterdir():
            try:
                words = (entry / "cmdline").read_bytes().decode().split("\0")[:-1]
            except (OSError, ValueError):
                continue
            if words[-4:] == tail:
                found.append(int(entry.name))
        return found
