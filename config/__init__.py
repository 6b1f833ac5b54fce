"""Configuration: pydantic settings, the models catalog, state paths and the layered loader.

Names are imported on first use (PEP 562), so `config.paths` alone does not load pydantic.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOMES = {
    "ROLES": "config.catalog",
    "ModelDef": "config.catalog",
    "ModelPrices": "config.catalog",
    "ModelsCatalog": "config.catalog",
    "LoadedConfig": "config.loader",
    "config_from_snapshot": "config.loader",
    "load_config": "config.loader",
    "make_snapshot": "config.loader",
    "render_show": "config.loader",
    "show_dict": "config.loader",
    "Paths": "config.paths",
    "resolve_home": "config.paths",
    "OrchestratorConfig": "config.schema",
    "normalize_ollama_host": "config.schema",
}

__all__ = [
    "ROLES",
    "LoadedConfig",
    "ModelDef",
    "ModelPrices",
    "ModelsCatalog",
    "OrchestratorConfig",
    "Paths",
    "config_from_snapshot",
    "load_config",
    "make_snapshot",
    "normalize_ollama_host",
    "render_show",
    "resolve_home",
    "show_dict",
]


def __getattr__(name: str) -> Any:
    """The public name from the module that defines it."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'config' has no attribute {name!r}")
    return getattr(import_module(home), name)
