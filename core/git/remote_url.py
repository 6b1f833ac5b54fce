"""Repository URLs as the orchestrator stores and shows them: which `--repo` values are URLs, and
the credentials a URL may hold, taken out. Light (no git library), for read commands too."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

# `user@host:path`, git's scp-like ssh syntax (a colon before any slash).
_SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._~-]+@)?[A-Za-z0-9.-]+:(?!//)[^/]?")
_SCHEMES = ("file", "ssh", "git", "http", "https", "ssh+git", "git+ssh")


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or token) taken out of a repository URL."""

    username: str
    password: str

    def __repr__(self) -> str:  # never shown, even in a traceback's locals
        return "Credentials(***)"


def is_url(repo: str) -> bool:
    """Whether `repo` names a repository by git URL (scheme://..., or ssh's user@host:path) rather than by path."""
    if "://" in repo:
        return urlsplit(repo).scheme.lower() in _SCHEMES
    if os.path.exists(repo) or repo.startswith(("/", ".", "~")):
        return False
    return bool(_SCP_LIKE.match(repo))


def split_credentials(url: str) -> tuple[str, Credentials | None]:
    """The URL without secrets, and the credentials it held. Over http(s) the whole user part goes
    (a token is often written as the user name); over ssh only a password, the user name stays."""
    if "://" not in url:
        return url, None  # scp-like ssh: a user name, never a password
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.netloc.rpartition("@")[2]  # host and port as written
    keep_user = parts.scheme.lower() not in ("http", "https") and parts.username
    netloc = f"{parts.username}@{host}" if keep_user else host
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    if parts.password is None and keep_user:
        return clean, None
    user = unquote(parts.username or "")
    password = unquote(parts.password or "")
    if not password:  # https://TOKEN@host: the token is the user part
        user, password = "x-access-token", user
    return clean, Credentials(user, password)


def clean_url(repo: str) -> str:
    """`repo` as it may be stored and shown: a URL without credentials, a path unchanged."""
    return split_credentials(repo)[0] if is_url(repo) else repo
