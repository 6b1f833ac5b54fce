"""Where a run's artifacts live: one async interface over a local folder or an S3 bucket (obstore).

`artifacts.url` chooses the place: empty (the default) is the home folder, a path or `file://` URL
is another folder, `s3://bucket/prefix` is a bucket whose endpoint, region and keys come from the
usual AWS variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
AWS_ALLOW_HTTP for a local http endpoint). Keys keep the home's layout (`artifacts/<run>/...`,
`reports/<run>/...`). What the database stores for an artifact is its location: the absolute path
of a local file or `s3://bucket/prefix/key`, never a credential.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import obstore
from obstore.exceptions import NotFoundError, PermissionDeniedError, UnauthenticatedError
from obstore.store import LocalStore, S3Store

from core.errors import ArtifactStoreError, ConfigError
from core.procenv import redact

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig

S3_SCHEME = "s3://"
# Bounded so a missing or unreachable bucket fails a command in seconds, not after minutes of retries.
_CLIENT: ClientConfig = {"connect_timeout": "5s", "timeout": "60s"}
_RETRY: RetryConfig = {"max_retries": 2, "retry_timeout": timedelta(seconds=20)}
_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True)
class ArtifactStore:
    """A folder or a bucket prefix that artifacts are written to and read from."""

    url: str  # shown to people: a folder path or s3://bucket/prefix (never holds a secret)
    store: LocalStore | S3Store
    root: Path | None  # the folder of a local store; None for a bucket

    def location(self, key: str) -> str:
        """What the database records for key: a local file's absolute path or the object's URL."""
        if self.root is not None:
            return str(self.root / key)
        return f"{self.url.rstrip('/')}/{key}"

    async def put(self, key: str, data: bytes) -> str:
        """Write data at key and return its location; ArtifactStoreError says where and why not."""
        try:
            await obstore.put_async(self.store, key, data)
        except Exception as exc:  # obstore's errors, mapped to one that says what to do
            raise store_error(self.url, f"cannot write {key}", exc) from exc
        return self.location(key)

    async def put_folder(self, home: Path, folder: Path) -> int:
        """Copy every file under folder (a home folder of tool outputs) to the keys its home
        layout names, when this store lies elsewhere; returns how many were copied."""
        if self.root == home or not folder.is_dir():
            return 0
        files = await asyncio.to_thread(lambda: sorted(p for p in folder.rglob("*") if p.is_file()))
        for path in files:
            data = await asyncio.to_thread(path.read_bytes)
            await self.put(path.relative_to(home).as_posix(), data)
        return len(files)

    async def get(self, key: str) -> bytes | None:
        """The bytes at key, or None when nothing is stored there."""
        try:
            result = await obstore.get_async(self.store, key)
            return bytes(await result.bytes_async())
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise store_error(self.url, f"cannot read {key}", exc) from exc

    async def keys(self, prefix: str) -> list[str]:
        """Every key under prefix (a folder-like path such as `artifacts/<run>`), sorted."""
        try:
            batches = await obstore.list(self.store, prefix).collect_async()
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise store_error(self.url, f"cannot list {prefix}", exc) from exc
        return sorted(str(meta["path"]) for meta in batches)

    async def check(self) -> None:
        """Fail with a clear ArtifactStoreError when the folder or bucket cannot be used."""
        if self.root is not None:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise store_error(self.url, "cannot create the artifacts folder", exc) from exc
            return
        try:
            async for _batch in obstore.list(self.store, chunk_size=1):
                break
        except Exception as exc:
            raise store_error(self.url, "cannot list the bucket", exc) from exc


def open_artifact_store(url: str, home: Path) -> ArtifactStore:
    """The store `artifacts.url` names: the home folder when empty, a folder, or an S3 bucket."""
    url = url.strip()
    if not url:
        return _local(home)
    if url.startswith(S3_SCHEME):
        bucket, prefix = _bucket_and_key(url)
        if not bucket:
            raise ConfigError(
                f"artifacts.url {url!r} names no bucket: write s3://BUCKET or s3://BUCKET/PREFIX"
            )
        shown = f"{S3_SCHEME}{bucket}" + (f"/{prefix}" if prefix else "")
        return ArtifactStore(shown, _s3(bucket, prefix or None), None)
    if url.startswith("file://"):
        return _local(Path(unquote(urlsplit(url).path)))
    if "://" in url:
        raise ConfigError(
            f"artifacts.url {url.split('://')[0]}:// is not supported: use a folder, file:// or s3://"
        )
    return _local(Path(os.path.expanduser(url)))


async def read_location(location: str) -> bytes | None:
    """An artifact's bytes from the location the database recorded (a path or an s3:// URL), or
    None when it is gone; any process with the bucket's AWS variables can read it."""
    if location.startswith(S3_SCHEME):
        bucket, key = _bucket_and_key(location)
        try:
            result = await obstore.get_async(_s3(bucket, None), key)
            return bytes(await result.bytes_async())
        except FileNotFoundError:
            return None
        except ArtifactStoreError:
            raise
        except Exception as exc:
            raise store_error(location, "cannot read it", exc) from exc
    path = Path(location)
    if not path.parent.is_dir():
        return None
    return await _local(path.parent, create=False).get(path.name)


def store_error(url: str, what: str, exc: BaseException) -> ArtifactStoreError:
    """An ArtifactStoreError naming the store, what failed, the cause, and what to do."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if url.startswith(S3_SCHEME):
        hint = _s3_hint(exc, text)
    else:
        hint = "check that the folder exists and is writable, or set artifacts.url to another one"
    return ArtifactStoreError(f"artifacts at {url}: {what}: {redact(text)}; {hint}")


def _s3_hint(exc: BaseException, text: str) -> str:
    """What to do about an S3 failure: read from obstore's error class, else from its text (a
    status code found anywhere in the text, such as inside a request id, must not decide)."""
    refused = "access was refused: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY and the bucket's policy"
    missing = "the bucket does not exist: create it, or set artifacts.url to one that does"
    if isinstance(exc, PermissionDeniedError | UnauthenticatedError):
        return refused
    if isinstance(exc, NotFoundError):
        return missing
    if re.search(r"\b(AccessDenied|Forbidden|Unauthorized)\b|status(?: code)?:? 40[13]\b", text):
        return refused
    if re.search(r"\bNoSuchBucket\b|status(?: code)?:? 404\b", text):
        return missing
    if "builder error" in text:
        return "the endpoint is plain http: set AWS_ALLOW_HTTP=true for a local server"
    return "check that AWS_ENDPOINT_URL (or the AWS region) points at a reachable S3 server"


def _local(folder: Path, *, create: bool = True) -> ArtifactStore:
    root = Path(os.path.abspath(folder))
    return ArtifactStore(str(root), LocalStore(root, mkdir=create), root)


def _bucket_and_key(url: str) -> tuple[str, str]:
    """s3://bucket/some/key -> ("bucket", "some/key")."""
    rest = url[len(S3_SCHEME) :]
    bucket, _, key = rest.partition("/")
    return bucket, key.strip("/")


def _s3(bucket: str, prefix: str | None) -> S3Store:
    """An S3Store whose endpoint, region and keys obstore reads from the AWS variables; http is
    allowed only when AWS_ALLOW_HTTP says so (client options given here replace obstore's own)."""
    client: ClientConfig = {
        **_CLIENT,
        "allow_http": os.environ.get("AWS_ALLOW_HTTP", "").strip().lower() in _TRUE,
    }
    try:
        return S3Store(bucket, prefix=prefix, client_options=client, retry_config=_RETRY)
    except Exception as exc:  # a malformed AWS variable
        raise store_error(f"{S3_SCHEME}{bucket}", "cannot configure the S3 client", exc) from exc
