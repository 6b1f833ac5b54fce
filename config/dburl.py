"""Which database holds the state: the home's SQLite file, or PostgreSQL named by a URL.

`--db URL` wins, then ORCHESTRATOR__STATE__URL, then `state.url` in the user config file. The
URL's password is only ever read (from the URL in the environment, `state.password_file`, or
libpq's own PGPASSWORD/PGPASSFILE): every place that shows a URL shows `mask_url(url)`. Cheap
on purpose (stdlib only; the config file is parsed only when it mentions `url`), because every
command finds its store before anything else (bench/startup.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

URL_ENV = "ORCHESTRATOR__STATE__URL"
PASSWORD_FILE_ENV = "ORCHESTRATOR__STATE__PASSWORD_FILE"
SCHEMES = ("postgresql", "postgres")
MASK = "***"


def is_postgres_url(url: str | None) -> bool:
    """Whether a state URL names a PostgreSQL database."""
    return bool(url) and str(url).split(":", 1)[0].lower() in SCHEMES


def mask_url(url: str) -> str:
    """The URL with its password (and any `password=` query value) replaced by ***."""
    try:
        split = urlsplit(url)
    except ValueError:
        return MASK
    netloc = split.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + MASK
        netloc = f"{userinfo}@{hostport}"
    query = re.sub(r"(?i)(password=)[^&]*", r"\1" + MASK, split.query)
    return urlunsplit((split.scheme, netloc, split.path, query, split.fragment))


def split_password(url: str) -> tuple[str, str | None]:
    """The URL without its password (userinfo or `password=` query value), and that password:
    for a child process that gets the URL on its command line and the password as PGPASSWORD."""
    split = urlsplit(url)
    password = split.password if "@" in split.netloc else None
    netloc = split.netloc
    if password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}@{hostport}"
    kept = []
    for part in split.query.split("&") if split.query else []:
        key, _, value = part.partition("=")
        if key.lower() == "password":
            password = value
        else:
            kept.append(part)
    bare = urlunsplit((split.scheme, netloc, split.path, "&".join(kept), split.fragment))
    return bare, password


def mask_text(text: str, url: str | None) -> str:
    """Text (an error message) with the URL's password replaced wherever it appears."""
    if not url:
        return text
    password = urlsplit(url).password if "@" in url else None
    text = text.replace(url, mask_url(url))
    if password:
        text = text.replace(password, MASK)
    return text


def _config_file_value(config_file: Path, key: str) -> str | None:
    """`state.<key>` from the user config file; the YAML is parsed only if the key appears."""
    try:
        text = config_file.read_text(encoding="utf-8")
    except OSError:
        return None
    if key not in text or "state" not in text:
        return None
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None  # `config validate` reports the broken file
    state = data.get("state") if isinstance(data, dict) else None
    value = state.get(key) if isinstance(state, dict) else None
    return str(value) if value else None


def resolve_db_url(
    cli_db: str | None, env: Mapping[str, str], config_file: Path | None
) -> str | None:
    """The state URL from --db, ORCHESTRATOR__STATE__URL or the config file; None for SQLite."""
    if cli_db:
        return cli_db
    if env.get(URL_ENV):
        return env[URL_ENV]
    return _config_file_value(config_file, "url") if config_file is not None else None


def resolve_password_file(env: Mapping[str, str], config_file: Path | None) -> str | None:
    """`state.password_file` from the environment or the config file."""
    if env.get(PASSWORD_FILE_ENV):
        return env[PASSWORD_FILE_ENV]
    return _config_file_value(config_file, "password_file") if config_file is not None else None
