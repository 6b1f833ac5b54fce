"""API keys: read from the environment, or from a KEY=value file the user points to; never stored."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.errors import ConfigError

log = logging.getLogger(__name__)


def read_secrets_file(path: str | Path) -> dict[str, str]:
    """KEY=value lines (optional `export `, quotes and # comments), as dotenv files hold them."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"llm.secrets_file {file} does not exist; create it with lines like "
            "OPENAI_API_KEY=... (mode 0600) or unset llm.secrets_file"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"llm.secrets_file {file} cannot be read: {error}") from None
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        if not sep or not name.strip().replace("_", "").isalnum():
            # The line itself may hold a key, so only its number is named.
            raise ConfigError(
                f"llm.secrets_file {file} line {number}: expected NAME=value (the line is not shown)"
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def secrets_file_is_private(path: str | Path) -> bool:
    """Whether only the owner may read the file (no group or other permission bits)."""
    mode = Path(path).expanduser().stat().st_mode
    return not mode & (stat.S_IRWXG | stat.S_IRWXO)


def api_key(
    name: str, secrets_file: str | Path | None = None, env: Mapping[str, str] | None = None
) -> str | None:
    """The key in environment variable `name`, else in the secrets file, else None."""
    source = os.environ if env is None else env
    value = source.get(name, "").strip()
    if value:
        return value
    if secrets_file:
        values = read_secrets_file(secrets_file)
        if not secrets_file_is_private(secrets_file):
            log.warning(
                "llm.secrets_file %s can be read by other users; run: chmod 600 %s",
                secrets_file,
                secrets_file,
            )
        return values.get(name) or None
    return None


def mask(value: str | None) -> str:
    """How a key is shown: never its characters, only whether it is set and how long it is."""
    return "not set" if not value else f"set (******, {len(value)} characters)"


def key_status(llm: Any, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each provider's key variable and whether it is set (masked), for `config show`."""
    names = {
        "openai": llm.openai.api_key_env,
        "anthropic": llm.anthropic.api_key_env,
        "ollama": "OLLAMA_API_KEY",
    }
    status: dict[str, str] = {}
    for provider, name in names.items():
        try:
            value = api_key(name, llm.secrets_file, env)
        except ConfigError as error:
            status[name] = f"unreadable secrets file ({error})"
            continue
        source = (
            ""
            if not value
            else (" from env" if (env or os.environ).get(name) else " from secrets file")
        )
        status[name] = f"{mask(value)}{source} ({provider})"
    return status
