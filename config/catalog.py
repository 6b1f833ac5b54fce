"""The models catalog (models.yaml): known models, their limits and prices, and a model per role."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.errors import ConfigError

ROLES: tuple[str, ...] = ("planner", "executor", "embedder")


class ModelPrices(BaseModel):
    """What a model costs, in currency units per million tokens (0 for local models)."""

    model_config = ConfigDict(extra="forbid")

    input_per_mtok: float = Field(default=0, ge=0, description="price per million prompt tokens")
    output_per_mtok: float = Field(
        default=0, ge=0, description="price per million completion tokens"
    )
    cached_input_per_mtok: float | None = Field(
        default=None,
        ge=0,
        description="price per million prompt tokens served from the provider's cache "
        "(None = input price)",
    )


class ModelDef(BaseModel):
    """One model: which provider serves it, under which tag, with which defaults and limits."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(description="the catalog's name for the model, used in roles and overrides")
    provider: str = Field(
        default="ollama", description="ollama, openai, anthropic, or onnx (a local embedder)"
    )
    model: str | None = Field(
        default=None, description="the provider's tag for it; defaults to name"
    )
    temperature: float = Field(default=0.2, ge=0, le=2, description="sampling temperature")
    max_tokens: int = Field(default=4096, ge=1, description="longest answer requested")
    context_window: int | None = Field(
        default=8192, ge=1, description="tokens the model reads; None = ask the provider (raw tags)"
    )
    capabilities: list[str] = Field(
        default_factory=lambda: ["chat"], description="what it can do: chat, embed, tools, ..."
    )
    prices: ModelPrices = Field(default_factory=ModelPrices, description="cost per million tokens")

    @model_validator(mode="after")
    def _default_tag(self) -> ModelDef:
        """Fill the provider tag from the name so callers can always use `.model`."""
        if not self.model:
            self.model = self.name
        return self

    @property
    def tag(self) -> str:
        """The provider's tag for this model."""
        return self.model or self.name


class ModelsCatalog(BaseModel):
    """Every known model by name, and the default model name of each role."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelDef] = Field(default_factory=dict, description="models by name")
    roles: dict[str, str] = Field(default_factory=dict, description="role -> model name or tag")

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: Any) -> Any:
        """Let an entry omit `name`: its key in `models` is its name."""
        if isinstance(data, dict) and isinstance(data.get("models"), dict):
            models = {}
            for key, entry in data["models"].items():
                if isinstance(entry, dict) and "name" not in entry:
                    entry = {"name": key, **entry}
                models[key] = entry
            data = {**data, "models": models}
        return data

    @model_validator(mode="after")
    def _names_match_keys(self) -> ModelsCatalog:
        """An entry's name must be its key, or roles would resolve to the wrong entry."""
        for key, entry in self.models.items():
            if entry.name != key:
                raise ValueError(f"models.{key}.name is {entry.name!r}; it must equal its key")
        return self

    def resolve(self, role: str, override: str | None = None) -> ModelDef:
        """The model for a role: the override or the role's default, as an entry or a raw tag."""
        if role not in ROLES and role not in self.roles:
            known = ", ".join(sorted({*ROLES, *self.roles}))
            raise ConfigError(f"unknown model role {role!r}; known roles: {known}")
        name = override or self.roles.get(role)
        if not name:
            raise ConfigError(
                f"no model configured for role {role!r}: set roles.{role} in models.yaml "
                f"or models.{role} in config.yaml"
            )
        if name in self.models:
            return self.models[name]
        capability = "embed" if role == "embedder" else "chat"
        return ModelDef(
            name=name, provider="ollama", model=name, context_window=None, capabilities=[capability]
        )
