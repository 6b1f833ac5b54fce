"""Where the orchestrator keeps its state: one home folder, chosen by --home, env or XDG."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

APP_DIR = "agent-orchestrator"
HOME_ENV = "ORCHESTRATOR_HOME"


def _expand(raw: str, env: Mapping[str, str]) -> Path:
    """Expand a leading ~ (from env HOME when given, so tests stay hermetic) and make absolute."""
    if raw == "~" or raw.startswith("~/"):
        user_home = env.get("HOME") or str(Path.home())
        raw = user_home + raw[1:]
    return Path(os.path.abspath(Path(raw).expanduser()))


def _xdg_dir(env: Mapping[str, str], var: str, fallback: str) -> Path:
    """An XDG base directory: the variable when it holds an absolute path, else ~/<fallback>."""
    value = env.get(var, "")
    if value and Path(value).expanduser().is_absolute():
        return _expand(value, env)
    return _expand(f"~/{fallback}", env)


def resolve_home(cli_home: str | None, env: Mapping[str, str]) -> Path:
    """The state folder: CLI --home wins, then ORCHESTRATOR_HOME, else the XDG data dir."""
    if cli_home:
        return _expand(cli_home, env)
    if env.get(HOME_ENV):
        return _expand(env[HOME_ENV], env)
    return _xdg_dir(env, "XDG_DATA_HOME", ".local/share") / APP_DIR


@dataclass(frozen=True)
class Paths:
    """Every location the orchestrator writes to, derived from one home folder.

    Built directly (`Paths(tmp_path)`) everything, the user config included, lives under home;
    `Paths.resolve` keeps the user config in the XDG config folder unless home was explicit.
    """

    home: Path
    explicit: bool = True
    config_dir: Path | None = None
    # A postgresql:// URL when the state lives in PostgreSQL (config/dburl.py), else None.
    db_url: str | None = None
    db_password_file: str | None = None

    @classmethod
    def resolve(
        cls,
        cli_home: str | None = None,
        env: Mapping[str, str] | None = None,
        cli_db: str | None = None,
    ) -> Paths:
        """Resolve the home folder from --home, ORCHESTRATOR_HOME or XDG defaults, and the state
        database's URL from --db, ORCHESTRATOR__STATE__URL or the user config (None: SQLite)."""
        from config.dburl import resolve_db_url, resolve_password_file

        env = os.environ if env is None else env
        explicit = bool(cli_home) or bool(env.get(HOME_ENV))
        home = resolve_home(cli_home, env)
        config_dir = home if explicit else _xdg_dir(env, "XDG_CONFIG_HOME", ".config") / APP_DIR
        paths = cls(home=home, explicit=explicit, config_dir=config_dir)
        url = resolve_db_url(cli_db, env, paths.user_config)
        if url is None:
            return paths
        password_file = resolve_password_file(env, paths.user_config)
        return replace(paths, db_url=url, db_password_file=password_file)

    @property
    def db(self) -> Path:
        return self.home / "orchestrator.db"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def worktrees(self) -> Path:
        return self.home / "worktrees"

    @property
    def demo(self) -> Path:
        return self.home / "demo"

    @property
    def cache(self) -> Path:
        return self.home / "cache"

    @property
    def indexes(self) -> Path:
        return self.home / "indexes"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def artifacts(self) -> Path:
        return self.home / "artifacts"

    @property
    def user_config_dir(self) -> Path:
        """The folder holding config.yaml and an optional models.yaml."""
        if self.explicit or self.config_dir is None:
            return self.home
        return self.config_dir

    @property
    def user_config(self) -> Path:
        return self.user_config_dir / "config.yaml"

    @property
    def user_models(self) -> Path:
        """An optional models.yaml beside the user config, merged over the shipped catalog."""
        return self.user_config_dir / "models.yaml"

    def ensure(self) -> None:
        """Create home (private, mode 0700, when new) and its state subfolders."""
        if not self.home.exists():
            self.home.mkdir(mode=0o700, parents=True)
            self.home.chmod(0o700)
        for folder in (
            self.logs,
            self.worktrees,
            self.demo,
            self.cache,
            self.indexes,
            self.reports,
            self.artifacts,
        ):
            folder.mkdir(parents=True, exist_ok=True)
