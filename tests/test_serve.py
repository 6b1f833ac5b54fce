"""`orchestrator serve` in a real subprocess, opened in headless Chromium: the runs table shows a
run that waits in another process, the page approves its intervention by keyboard, and requests
without the token are refused."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlsplit
from urllib.request import HTTPRedirectHandler, Request, build_opener

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.browser import Chromium, Served, chromium_path, open_waiting_run
from tests.clirun import ROOT, cli, spawn
from tests.waiting import wait_until
from tui.serve_driver import SERVED_DRIVER

pytestmark = pytest.mark.skipif(
    chromium_path() is None, reason="chromium is not installed (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    """One Chromium for the module's tests; each test opens its own tab."""
    started = Chromium(tmp_path_factory.mktemp("chromium"))
    try:
        yield started
    finally:
        started.stop()


def runs(home: Path) -> list[dict[str, object]]:
    return list(json.loads(cli(home, "runs", "--json", check=True).stdout))


async def test_the_browser_shows_the_waiting_run_and_approves_it(
    tmp_path: Path, browser: Chromium
) -> None:
    home = tmp_path / "home"
    waiting = spawn(home, "demo", "--headless")  # asks for approval of its risky phase, then waits
    served = Served(home, tmp_path)
    try:
        url = served.url()
        assert url.startswith("http://127.0.0.1:")
        async with browser.page() as page:
            await open_waiting_run(page, url)
            address = await page.evaluate("location.href")
            assert "token" not in address, f"the token stayed in the address bar: {address}"
            shot = await page.screenshot(tmp_path / "served.png")
            assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000

            await page.focus_terminal()
            await page.press("a")
            [run] = runs(home)
            run_id = str(run["id"])

            def answers() -> list[tuple[str, str]]:
                items = json.loads(cli(home, "interventions", "--run", run_id, "--json").stdout)
                return [(i["kind"], i["status"]) for i in items]

            wait_until(lambda: answers() == [("risk", "approved")], what="the stored approval")
            code = waiting.wait(timeout=120)
            assert code == 0, waiting.stderr.read() if waiting.stderr else code
            [run] = runs(home)
            assert run["status"] == "completed"
            assert run["phases_completed"] == run["phases_total"] == 3
            await page.wait_for_text("completed", what="the page to show the run completed")
        # The browser closed its tab: the app it ran has quit.
        wait_until(lambda: not served.app_processes(), what="the served app to quit")
    finally:
        code = served.stop()
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert code == 0, served.output()
    assert "stopped serving" in served.stdout.read_text()
    token = url.split("?token=", 1)[1]
    assert token not in served.stderr.read_text()
    stored = [p for p in home.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]
    assert stored == [], "the token was written into the home"


async def test_closing_the_tab_of_a_run_it_drives_leaves_the_run_interrupted(
    tmp_path: Path, browser: Chromium
) -> None:
    """The tab's app quits when the tab goes; the run it started stops in a true state."""
    home = tmp_path / "home"
    served = Served(home, tmp_path)
    try:
        async with browser.page() as page:
            await page.navigate(served.url())
            await page.wait_for_text("Agent Orchestrator — Runs", what="the runs section")
            await page.focus_terminal()
            await page.press("3")
            await page.wait_for_text("Repository", what="the new run form")
            await page.press("ctrl+o")  # the offline demo's values
            await page.wait_for_text("cassette.jsonl", what="the demo values in the form")
            await page.press("ctrl+s")
            await page.wait_for_text("Decision needed: risk", what="the new run's approval")
            await page.close_tab()
            wait_until(lambda: not served.app_processes(), what="the tab's app to quit")
    finally:
        code = served.stop()
    assert code == 0, served.output()
    [run] = runs(home)
    assert run["status"] == "interrupted", run
    shown = json.loads(cli(home, "show", str(run["id"]), "--json", check=True).stdout)
    assert not [p for p in shown["phases"] if p["status"] == "in_progress"], shown["phases"]
    items = json.loads(cli(home, "interventions", "--run", str(run["id"]), "--json").stdout)
    assert [(i["kind"], i["status"]) for i in items] == [("risk", "pending")]


class _Stay(HTTPRedirectHandler):
    """Redirects are answers to look at, not to follow."""

    def redirect_request(self, *args: Any) -> None:
        return None


def status_of(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """The status and headers of a GET (redirects not followed); a refusal's body names why."""
    try:
        with build_opener(_Stay).open(Request(url, headers=headers or {}), timeout=30) as answer:
            return answer.status, answer.headers
    except HTTPError as answer:
        if answer.code == 403:
            body = answer.read().decode()
            assert "token" in body or "origin" in body, body
        return answer.code, answer.headers


def websocket_status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with connect(url, additional_headers=headers, open_timeout=30):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


def test_requests_without_the_token_are_refused(tmp_path: Path) -> None:
    served = Served(tmp_path / "home", tmp_path)
    try:
        url = served.url()
        parts = urlsplit(url)
        base, token = f"http://{parts.netloc}", parts.query.removeprefix("token=")
        ws = f"ws://{parts.netloc}/ws"
        cookie = f"orchestrator-serve-{parts.port}"

        assert status_of(f"{base}/")[0] == 403
        assert status_of(f"{base}/?token=wrong")[0] == 403
        assert status_of(f"{base}/static/js/textual.js")[0] == 403
        assert websocket_status(ws) == 403
        assert websocket_status(f"{ws}?token=wrong") == 403
        assert websocket_status(ws, {"Cookie": f"{cookie}=wrong"}) == 403
        # The right token from another site's page: refused too.
        origin = {"Origin": "http://evil.example"}
        assert websocket_status(f"{ws}?token={token}", origin) == 403

        # The printed URL sets the cookie and sends the browser on to the page without the token.
        code, headers = status_of(f"{url}&fontsize=14")
        assert code == 303 and headers["Location"] == "/?fontsize=14"
        set_cookie = headers["Set-Cookie"]
        assert f"{cookie}={token}" in set_cookie
        assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
        with_cookie = {"Cookie": f"{cookie}={token}"}
        code, headers = status_of(f"{base}/?fontsize=14", with_cookie)
        assert code == 200 and headers["Referrer-Policy"] == "no-referrer"
        assert status_of(f"{base}/static/js/textual.js", with_cookie)[0] == 200

        # With the token the websocket runs the app; stopping serve quits the app of an open tab.
        with connect(f"{ws}?token={token}", open_timeout=30) as session:
            assert session.recv(timeout=60), "the app drew nothing"
            assert served.app_processes()
            assert served.stop() == 0, served.output()
        wait_until(lambda: not served.app_processes(), what="the served app to quit with serve")
    finally:
        code = served.stop()
    assert code == 0, served.output()
    refusals = served.stderr.read_text()
    assert "refused GET /ws: no valid token" in refusals
    assert token not in refusals


def test_an_app_whose_server_was_killed_quits(tmp_path: Path) -> None:
    """Its output breaks and its input ends: the served driver quits the app, which would
    otherwise keep running (and driving runs) with nobody to see it."""
    served = Served(tmp_path / "home", tmp_path)
    try:
        url = served.url()
        ws = url.replace("http://", "ws://", 1).replace("/?token=", "/ws?token=", 1)
        with connect(ws, open_timeout=30) as session:
            assert session.recv(timeout=60), "the app drew nothing"
            [app] = served.app_processes()
            served.proc.kill()
            served.proc.wait()
        wait_until(lambda: not served.app_processes(), what=f"the app {app} to quit")
    finally:
        served.stop()


def test_a_host_other_than_loopback_is_warned_about(tmp_path: Path) -> None:
    served = Served(tmp_path / "home", tmp_path, "--host", "0.0.0.0")
    try:
        url = served.url()
        assert url.startswith(f"http://{socket.gethostname()}:")
    finally:
        code = served.stop()
    assert code == 0, served.output()
    assert (
        "warning: serving on 0.0.0.0, which is not a loopback address" in served.stderr.read_text()
    )


def test_a_port_in_use_is_an_input_error(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = cli(tmp_path / "home", "serve", "--port", str(port), timeout=60)
    assert proc.returncode == 2
    assert f"cannot listen on 127.0.0.1 port {port}" in proc.stderr
    assert "choose another --port" in proc.stderr


_SEES = """
import os, subprocess, sys
from textual.app import App

class Sees(App[None]):
    def on_mount(self) -> None:
        child = subprocess.run(
            [sys.executable, "-c", "import os, sys; print(sorted(set(os.environ) & set(sys.argv[1:])))",
             *sys.argv[1:]], capture_output=True, text=True)
        open(sys.argv[1], "w").write(child.stdout)
        self.exit()

Sees().run()
"""


def test_processes_the_served_app_starts_do_not_inherit_its_driver(tmp_path: Path) -> None:
    """textual-serve's variables are the app's alone: a Textual project's tests run in a
    verification would otherwise try to import our driver."""
    seen = tmp_path / "seen.txt"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TEXTUAL_DRIVER": SERVED_DRIVER,
        "COLUMNS": "80",
        "ROWS": "24",
        "TERM_PROGRAM": "textual",
    }
    names = [str(seen), "TEXTUAL_DRIVER", "COLUMNS", "ROWS", "TERM_PROGRAM"]
    errors = tmp_path / "stderr.txt"
    with errors.open("wb") as err:
        # Its input stays open while it runs: an ended input would quit it before it mounts.
        proc = subprocess.Popen(
            [sys.executable, "-c", _SEES, *names],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            code = proc.wait(timeout=60)
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code == 0, errors.read_text()
    assert seen.read_text().strip() == "[]"
