"""Loads the layered configuration into one validated result and snapshots it for runs.

Precedence, lowest first: shipped defaults.yaml, the user config, <repo>/orchestrator.yaml,
<repo>/orchestrator.local.yaml, OLLAMA_HOST, ORCHESTRATOR__SECTION__KEY env vars, CLI values.
The models catalog is the shipped models.yaml merged with a models.yaml beside the user config.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from config.catalog import ModelDef, ModelsCatalog
from config.keys import (
    DEFAULTS_LABEL,
    Key,
    annotation_at,
    check_keys,
    dotted_path,
    mapping_parts,
    parse_text,
    section_model,
    source_for,
)
from config.paths import Paths
from config.schema import OrchestratorConfig
from config.show import render_show, show_dict
from core.errors import ConfigError

__all__ = [
    "DEFAULTS_LABEL",
    "ENV_PREFIX",
    "REPO_FILES",
    "Key",
    "LoadedConfig",
    "config_from_snapshot",
    "load_config",
    "make_snapshot",
    "parse_yaml_mapping",
    "render_show",
    "shipped_catalog",
    "show_dict",
]

ENV_PREFIX = "ORCHESTRATOR__"
REPO_FILES = ("orchestrator.yaml", "orchestrator.local.yaml")


@dataclass
class LoadedConfig:
    """The validated configuration and catalog, where each value came from, and the files read."""

    config: OrchestratorConfig
    catalog: ModelsCatalog
    sources: dict[str, str]
    files: list[Path] = field(default_factory=list)
    catalog_sources: dict[str, str] = field(default_factory=dict)

    def model_for(self, role: str) -> ModelDef:
        """The model of a role, honouring the `models:` overrides over the catalog's roles."""
        return self.catalog.resolve(role, getattr(self.config.models, role, None))


class _StrictLoader(yaml.SafeLoader):  # type: ignore[misc,unused-ignore]
    """A SafeLoader that rejects duplicate keys, which YAML would otherwise silently overwrite."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges are resolved by SafeLoader itself
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def parse_yaml_mapping(text: str, label: str) -> dict[str, Any]:
    """Parse YAML whose top level must be a mapping; errors name the source and line."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{label}: invalid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{label}: the top level must be a mapping of keys (like `execution:`), "
            f"given {type(data).__name__} {data!r}"
        )
    return data


def _read_file(path: Path) -> dict[str, Any]:
    """Read one YAML config file; an unreadable file is a ConfigError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    return parse_yaml_mapping(text, str(path))


_shipped: dict[str, dict[str, Any]] = {}


def _read_shipped(name: str) -> dict[str, Any]:
    """Read a YAML file shipped inside the config package (parsed once per process: a
    long-lived process such as the search daemon loads the configuration per question)."""
    if name not in _shipped:
        text = resources.files("config").joinpath(name).read_text(encoding="utf-8")
        _shipped[name] = parse_yaml_mapping(text, f"shipped config/{name}")
    return copy.deepcopy(_shipped[name])


# --- merging and validating layers -----------------------------------------------------------


def _record(value: Any, label: str, path: Key, sources: dict[Key, str]) -> None:
    """Note the source of every leaf under path."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _record(item, label, path + (str(key),), sources)
    else:
        sources[path] = label


def _merge(
    base: dict[str, Any], layer: Mapping[str, Any], label: str, path: Key, sources: dict[Key, str]
) -> None:
    """Deep-merge a layer into base (mappings merge, everything else replaces) and note sources."""
    for key, value in layer.items():
        here = path + (key,)
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, label, here, sources)
            continue
        base[key] = copy.deepcopy(value)
        for old in [k for k in sources if k[: len(here)] == here]:
            del sources[old]
        _record(value, label, here, sources)


def _describe(exc: ValidationError, sources: Mapping[Key, str], fallback: str) -> str:
    """One line per pydantic error: source, key path, what was expected, what was given."""
    lines = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"] if part != "[key]")
        label = source_for(loc, sources) or fallback
        msg = error["msg"]
        if msg.startswith("Input should be "):
            expected = msg.removeprefix("Input should be ")
            if expected.startswith(("greater", "less")):
                expected = "a value " + expected
            text = f"expected {expected}, given {error.get('input')!r}"
        elif error["type"] == "missing":
            text = "required but missing"
        else:
            text = msg.removeprefix("Value error, ")
        lines.append(f"{label}: {dotted_path(loc) or '(top level)'}: {text}")
    return "\n".join(lines)


@dataclass
class _Stack:
    """Layers merged so far for one schema, with the source of every leaf."""

    model: type[BaseModel]
    data: dict[str, Any] = field(default_factory=dict)
    sources: dict[Key, str] = field(default_factory=dict)

    def add(self, layer: Mapping[str, Any], label: str) -> None:
        """Check the layer's keys, merge it, and validate so errors name this layer."""
        check_keys(layer, self.model, (), label)
        _merge(self.data, layer, label, (), self.sources)
        self.build(label)

    def build(self, fallback: str) -> Any:
        """Validate the merged data, mapping each error back to the layer that set the value."""
        try:
            return self.model.model_validate(self.data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, self.sources, fallback)) from None


def _nest(path: Key, value: Any) -> dict[str, Any]:
    """{"a": {"b": value}} from ("a", "b")."""
    for key in reversed(path[1:]):
        value = {key: value}
    return {path[0]: value}


def _env_layers(env: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """One layer per ORCHESTRATOR__SECTION__KEY variable, shallow ones first so deeper ones win."""
    names = [name for name in env if name.upper().startswith(ENV_PREFIX)]
    names.sort(key=lambda name: (name.count("__"), name))
    layers = []
    for name in names:
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if not all(path):
            raise ConfigError(
                f"env {name}: expected a name like ORCHESTRATOR__EXECUTION__MAX_ATTEMPTS"
            )
        value = parse_text(env[name], annotation_at(OrchestratorConfig, path))
        layers.append((f"env {name}", _nest(path, value)))
    return layers


def _cli_layers(
    cli: Mapping[str, Any], labels: Mapping[str, str]
) -> list[tuple[str, dict[str, Any]]]:
    """One layer per dotted CLI key, labelled with the flag the user typed when known."""
    layers = []
    for dotted, value in cli.items():
        label = f"cli {labels.get(dotted, dotted)}"
        path = tuple(part.strip() for part in dotted.split("."))
        if not all(path):
            raise ConfigError(
                f"{label}: expected a dotted key like execution.max_attempts, given {dotted!r}"
            )
        if isinstance(value, str):
            value = parse_text(value, annotation_at(OrchestratorConfig, path))
        layers.append((label, _nest(path, value)))
    return layers


def _check_invariants(config: OrchestratorConfig, sources: Mapping[Key, str]) -> None:
    """Rules that involve two keys, checked once on the final result."""
    ex = config.execution
    pairs = [
        (
            "lease_seconds",
            "heartbeat_seconds",
            ex.lease_seconds > ex.heartbeat_seconds,
            "or live runs would look abandoned",
        ),
        (
            "backoff_max_seconds",
            "backoff_base_seconds",
            ex.backoff_max_seconds >= ex.backoff_base_seconds,
            "or the first wait exceeds the cap",
        ),
    ]
    for big, small, ok, why in pairs:
        if not ok:
            label = source_for(("execution", big), sources) or DEFAULTS_LABEL
            other = source_for(("execution", small), sources) or DEFAULTS_LABEL
            raise ConfigError(
                f"{label}: execution.{big} ({getattr(ex, big)}) must be larger than "
                f"execution.{small} ({getattr(ex, small)}, from {other}), {why}"
            )


def load_config(
    paths: Paths,
    repo: Path | None = None,
    env: Mapping[str, str] | None = None,
    cli: Mapping[str, Any] | None = None,
    cli_labels: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Load, merge and validate every layer; raises ConfigError before anything runs."""
    env = os.environ if env is None else env
    files: list[Path] = []
    stack = _Stack(OrchestratorConfig)
    stack.add(_read_shipped("defaults.yaml"), DEFAULTS_LABEL)
    candidates = [paths.user_config]
    if repo is not None:
        candidates += [Path(os.path.abspath(repo)) / name for name in REPO_FILES]
    for path in candidates:
        if path.exists():
            stack.add(_read_file(path), str(path))
            files.append(path)
    if env.get("OLLAMA_HOST", "").strip():
        stack.add({"llm": {"host": env["OLLAMA_HOST"].strip()}}, "env OLLAMA_HOST")
    for label, layer in _env_layers(env) + _cli_layers(cli or {}, cli_labels or {}):
        stack.add(layer, label)
    config: OrchestratorConfig = stack.build(DEFAULTS_LABEL)
    _check_invariants(config, stack.sources)

    catalog_stack = _Stack(ModelsCatalog)
    catalog_stack.add(_read_shipped("models.yaml"), DEFAULTS_LABEL)
    if paths.user_models.exists():
        catalog_stack.add(_read_file(paths.user_models), str(paths.user_models))
        files.append(paths.user_models)
    catalog: ModelsCatalog = catalog_stack.build(DEFAULTS_LABEL)
    return LoadedConfig(
        config=config,
        catalog=catalog,
        files=files,
        sources={dotted_path(k): v for k, v in stack.sources.items()},
        catalog_sources={dotted_path(k): v for k, v in catalog_stack.sources.items()},
    )


def shipped_catalog() -> ModelsCatalog:
    """The models catalog shipped with the package, without user additions."""
    return ModelsCatalog.model_validate(_read_shipped("models.yaml"))


# --- snapshots stored with runs --------------------------------------------------------------


def make_snapshot(loaded: LoadedConfig) -> dict[str, Any]:
    """The configuration and catalog a run is started with, as JSON-safe data."""
    return {"config": loaded.config.snapshot(), "catalog": loaded.catalog.model_dump(mode="json")}


def _prune(data: Any, annotation: Any) -> Any:
    """Drop keys the schema no longer knows, so runs stored by older versions still resume."""
    section = section_model(annotation)
    if section is not None and isinstance(data, dict):
        fields = section.model_fields
        return {k: _prune(v, fields[k].annotation) for k, v in data.items() if k in fields}
    parts = mapping_parts(annotation)
    if parts is not None and isinstance(data, dict) and section_model(parts[1]) is not None:
        return {k: _prune(v, parts[1]) for k, v in data.items()}
    return data


def config_from_snapshot(snapshot: Mapping[str, Any]) -> tuple[OrchestratorConfig, ModelsCatalog]:
    """Rebuild the configuration stored with a run (the format make_snapshot produces)."""
    try:
        config = OrchestratorConfig.model_validate(
            _prune(snapshot.get("config") or {}, OrchestratorConfig)
        )
        raw_catalog = snapshot.get("catalog")
        catalog = (
            ModelsCatalog.model_validate(_prune(raw_catalog, ModelsCatalog))
            if raw_catalog
            else shipped_catalog()
        )
    except ValidationError as exc:
        detail = _describe(exc, {}, "stored run configuration")
        raise ConfigError(f"the configuration stored with this run is invalid:\n{detail}") from None
    return config, catalog
