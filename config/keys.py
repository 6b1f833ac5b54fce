"""Key paths in the config schema: checking keys with did-you-mean, parsing env/CLI values."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from core.errors import ConfigError

Key = tuple[str, ...]
# The source label of the shipped defaults.yaml layer, and of any value no other layer set.
DEFAULTS_LABEL = "defaults"


def section_model(annotation: Any) -> type[BaseModel] | None:
    """The model class when an annotation is a nested section, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def mapping_parts(annotation: Any) -> tuple[Any, Any] | None:
    """(key type, value type) when an annotation is a dict, else None."""
    if typing.get_origin(annotation) is dict:
        key_type, value_type = typing.get_args(annotation)
        return key_type, value_type
    return None


def dotted_path(path: Key) -> str:
    """A key path as `section.key`."""
    return ".".join(path)


def _unknown_key(label: str, path: Key, key: str, allowed: list[str]) -> ConfigError:
    """An unknown-key error with a did-you-mean over the keys allowed at that level."""
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean {dotted_path(path + (close[0],))!r}?" if close else ""
    level = dotted_path(path) or "the top level"
    return ConfigError(
        f"{label}: unknown key {dotted_path(path + (key,))!r}{hint} "
        f"(allowed in {level}: {', '.join(allowed)})"
    )


def check_keys(data: Mapping[Any, Any], model: type[BaseModel], path: Key, label: str) -> None:
    """Reject keys the schema does not know, naming the layer, key path and closest match."""
    fields = model.model_fields
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(
                f"{label}: {dotted_path(path + (str(key),))}: keys must be names, given {key!r}"
            )
        if key not in fields:
            raise _unknown_key(label, path, key, list(fields))
        _check_value(value, fields[key].annotation, path + (key,), label)


def _check_value(value: Any, annotation: Any, path: Key, label: str) -> None:
    """Descend into sections and typed mappings; leaf values are left to pydantic."""
    section = section_model(annotation)
    if section is not None:
        if not isinstance(value, dict):
            raise ConfigError(
                f"{label}: {dotted_path(path)}: expected a mapping of "
                f"{', '.join(section.model_fields)}, given {value!r}"
            )
        check_keys(value, section, path, label)
        return
    parts = mapping_parts(annotation)
    if parts is None or not isinstance(value, dict):
        return
    key_type, value_type = parts
    allowed: list[str] | None = None
    if typing.get_origin(key_type) is Literal:
        allowed = [str(arg) for arg in typing.get_args(key_type)]
    for key, item in value.items():
        if allowed is not None and key not in allowed:
            raise _unknown_key(label, path, str(key), allowed)
        _check_value(item, value_type, path + (str(key),), label)


def annotation_at(model: type[BaseModel], path: Key) -> Any:
    """The annotation of the value at a key path, or None when the path is not in the schema."""
    annotation: Any = model
    for key in path:
        section = section_model(annotation)
        parts = mapping_parts(annotation)
        if section is not None and key in section.model_fields:
            annotation = section.model_fields[key].annotation
        elif parts is not None:
            annotation = parts[1]
        else:
            return None
    return annotation


def _accepts(annotation: Any, kind: type) -> bool:
    """Whether a leaf annotation takes a `kind` value (str or None), through unions and Literals."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arg, kind) for arg in typing.get_args(annotation))
    if origin is Literal:
        return all(isinstance(arg, kind) for arg in typing.get_args(annotation))
    return annotation is kind or (kind is type(None) and annotation is None)


def parse_text(raw: str, annotation: Any) -> Any:
    """Turn an env/CLI string into a value: kept as text for string keys, else a YAML scalar."""
    if annotation is not None and _accepts(annotation, str):
        if _accepts(annotation, type(None)) and raw.strip() in ("null", "~"):
            return None
        return raw
    if raw == "":
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def source_for(loc: Key, sources: Mapping[Key, str]) -> str | None:
    """The layer that set the value at loc (or the nearest key above or below it)."""
    for size in range(len(loc), 0, -1):
        if loc[:size] in sources:
            return sources[loc[:size]]
    return next((label for key, label in sources.items() if key[: len(loc)] == loc), None)
