"""Configuration: pydantic settings, the models catalog, state paths and the layered loader."""

from config.catalog import ROLES, ModelDef, ModelPrices, ModelsCatalog
from config.loader import (
    LoadedConfig,
    config_from_snapshot,
    load_config,
    make_snapshot,
    render_show,
    show_dict,
)
from config.paths import Paths, resolve_home
from config.schema import OrchestratorConfig, normalize_ollama_host

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
