"""`config show`: every configuration value with the layer it came from, and each role's model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import yaml

from config.catalog import ROLES, ModelDef
from config.keys import DEFAULTS_LABEL, Key, source_for
from config.secrets import key_status
from core.errors import ConfigError

if TYPE_CHECKING:
    from config.loader import LoadedConfig


def _format_value(value: Any) -> str:
    """A value as a one-line YAML flow scalar or collection."""
    text: str = yaml.safe_dump(value, default_flow_style=True, width=1_000_000, allow_unicode=True)
    return text.strip().removesuffix("...").strip()


def _render(
    data: Mapping[str, Any], path: Key, sources: Mapping[Key, str], lines: list[str]
) -> None:
    """Append `key: value  # from source` lines, nesting non-empty mappings."""
    indent = "  " * len(path)
    for key, value in data.items():
        here = path + (str(key),)
        label = _format_value(str(key))  # quoted when YAML needs it, e.g. "*:high"
        if isinstance(value, dict) and value:
            lines.append(f"{indent}{label}:")
            _render(value, here, sources, lines)
        else:
            entry = f"{indent}{label}: {_format_value(value)}"
            source = source_for(here, sources) or DEFAULTS_LABEL
            lines.append(f"{entry:<48}  # from {source}")


def _role_source(loaded: LoadedConfig, role: str) -> str:
    """Where a role's model came from: a `models:` override or the catalog's roles."""
    if getattr(loaded.config.models, role, None):
        return loaded.sources.get(f"models.{role}", DEFAULTS_LABEL)
    return loaded.catalog_sources.get(f"roles.{role}", DEFAULTS_LABEL)


def _roles(loaded: LoadedConfig) -> dict[str, ModelDef | None]:
    """Every role's resolved model, None for a role with nothing configured."""
    resolved: dict[str, ModelDef | None] = {}
    for role in dict.fromkeys([*ROLES, *loaded.catalog.roles]):
        try:
            resolved[role] = loaded.model_for(role)
        except ConfigError:
            resolved[role] = None
    return resolved


def render_show(loaded: LoadedConfig) -> str:
    """Every key with its value and `# from <source>`, then the model of each role."""
    lines = ["# files read: " + (", ".join(map(str, loaded.files)) or "none (defaults only)")]
    sources = {tuple(k.split(".")): v for k, v in loaded.sources.items()}
    _render(loaded.config.snapshot(), (), sources, lines)
    lines.append("")
    lines.append("# models per role")
    for role, model in _roles(loaded).items():
        if model is None:
            lines.append(f"{role}: null  # nothing configured")
            continue
        window = model.context_window or "asked from provider"
        entry = f"{role}: {_format_value(model.name)}"
        lines.append(
            f"{entry:<48}  # from {_role_source(loaded, role)}; "
            f"{model.provider} {model.tag}, context {window}"
        )
    lines.append("")
    lines.append("# API keys (read from the environment or llm.secrets_file; never shown)")
    for name, state in key_status(loaded.config.llm).items():
        lines.append(f"{name}: {state}")
    return "\n".join(lines) + "\n"


def show_dict(loaded: LoadedConfig) -> dict[str, Any]:
    """The data of `config show --json`: values, their sources, files read and models."""
    return {
        "config": loaded.config.snapshot(),
        "sources": dict(loaded.sources),
        "files": [str(path) for path in loaded.files],
        "models": {
            "roles": {
                role: None
                if model is None
                else {**model.model_dump(mode="json"), "source": _role_source(loaded, role)}
                for role, model in _roles(loaded).items()
            },
            "catalog": loaded.catalog.model_dump(mode="json"),
            "sources": dict(loaded.catalog_sources),
        },
        "api_keys": key_status(loaded.config.llm),
    }
