"""Tests of the config package: paths, layered loading, error messages, models and snapshots."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from config.catalog import ModelDef, ModelsCatalog
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
from core.errors import ConfigError


def write_yaml(path: Path, data: object) -> Path:
    """Write data as YAML, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    """An explicit home in tmp_path, so the user config is <home>/config.yaml."""
    return Paths.resolve(str(tmp_path / "home"), env={})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    folder = tmp_path / "repo"
    folder.mkdir()
    return folder


def load(
    paths: Paths,
    repo: Path | None = None,
    env: dict[str, str] | None = None,
    cli: dict[str, object] | None = None,
) -> LoadedConfig:
    return load_config(paths, repo=repo, env=env or {}, cli=cli)


# --- paths -----------------------------------------------------------------------------------


def test_home_precedence_cli_then_env_then_xdg(tmp_path: Path) -> None:
    env = {"ORCHESTRATOR_HOME": str(tmp_path / "env-home"), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    assert resolve_home(str(tmp_path / "cli-home"), env) == tmp_path / "cli-home"
    assert resolve_home(None, env) == tmp_path / "env-home"
    assert resolve_home(None, {"XDG_DATA_HOME": str(tmp_path / "xdg")}) == (
        tmp_path / "xdg" / "agent-orchestrator"
    )
    assert resolve_home(None, {"HOME": str(tmp_path)}) == (
        tmp_path / ".local" / "share" / "agent-orchestrator"
    )
    assert resolve_home("~/state", {"HOME": str(tmp_path)}) == tmp_path / "state"


def test_default_user_config_lives_in_xdg_config(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    paths = Paths.resolve(None, env)
    assert not paths.explicit
    assert paths.user_config == tmp_path / "cfg" / "agent-orchestrator" / "config.yaml"
    assert paths.db == tmp_path / "data" / "agent-orchestrator" / "orchestrator.db"


def test_orchestrator_home_moves_user_config(tmp_path: Path) -> None:
    home = tmp_path / "elsewhere"
    paths = Paths.resolve(
        None, {"ORCHESTRATOR_HOME": str(home), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    )
    assert paths.explicit
    assert paths.user_config == home / "config.yaml"
    assert paths.user_models == home / "models.yaml"
    write_yaml(paths.user_config, {"execution": {"max_attempts": 7}})
    loaded = load(paths)
    assert loaded.config.execution.max_attempts == 7
    assert loaded.files == [home / "config.yaml"]


def test_ensure_creates_private_home(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "state")
    paths.ensure()
    assert stat.S_IMODE(paths.home.stat().st_mode) == 0o700
    for folder in (
        paths.logs,
        paths.worktrees,
        paths.demo,
        paths.cache,
        paths.indexes,
        paths.reports,
        paths.artifacts,
    ):
        assert folder.is_dir()
    assert paths.user_config == tmp_path / "state" / "config.yaml"


# --- defaults and layering -------------------------------------------------------------------


def test_shipped_defaults_hold_every_default(paths: Paths) -> None:
    loaded = load(paths)
    assert loaded.config.snapshot() == OrchestratorConfig().snapshot()
    assert set(loaded.sources.values()) == {"defaults"}
    assert "execution.external.prompt_via" in loaded.sources
    assert loaded.files == []


def test_every_field_has_a_description() -> None:
    def walk(model: type) -> None:
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"
            if isinstance(info.annotation, type) and hasattr(info.annotation, "model_fields"):
                walk(info.annotation)

    walk(OrchestratorConfig)
    walk(ModelDef)


def test_layer_precedence_and_sources(paths: Paths, repo: Path) -> None:
    user = write_yaml(
        paths.user_config,
        {
            "execution": {"max_attempts": 4, "max_parallel_phases": 3, "backoff_jitter": 0.1},
            "llm": {"host": "http://user:1", "timeout_seconds": 11},
            "rag": {"max_context_tokens": 100},
            "verification": {"severity": {"lint": "major"}},
        },
    )
    shared = write_yaml(
        repo / "orchestrator.yaml",
        {
            "execution": {"max_attempts": 5, "max_parallel_phases": 4},
            "llm": {"timeout_seconds": 22},
            "verification": {"test": ["pytest -q"]},
        },
    )
    local = write_yaml(repo / "orchestrator.local.yaml", {"execution": {"max_attempts": 6}})
    env = {
        "OLLAMA_HOST": "ollama.lan:9999",
        "ORCHESTRATOR__LLM__TIMEOUT_SECONDS": "33",
        "ORCHESTRATOR__RAG__MAX_CONTEXT_TOKENS": "200",
    }
    loaded = load(
        paths, repo, env, cli={"rag.max_context_tokens": 300, "models.planner": "llama3.1:8b"}
    )
    cfg, src = loaded.config, loaded.sources
    assert cfg.execution.backoff_jitter == 0.1 and src["execution.backoff_jitter"] == str(user)
    assert cfg.execution.max_parallel_phases == 4
    assert src["execution.max_parallel_phases"] == str(shared)
    assert cfg.execution.max_attempts == 6 and src["execution.max_attempts"] == str(local)
    assert cfg.llm.host == "http://ollama.lan:9999" and src["llm.host"] == "env OLLAMA_HOST"
    assert cfg.llm.timeout_seconds == 33
    assert src["llm.timeout_seconds"] == "env ORCHESTRATOR__LLM__TIMEOUT_SECONDS"
    assert cfg.rag.max_context_tokens == 300
    assert src["rag.max_context_tokens"] == "cli rag.max_context_tokens"
    assert cfg.models.planner == "llama3.1:8b"
    assert cfg.verification.severity["lint"] == "major"
    assert cfg.verification.severity["build"] == "major"  # deep merge keeps sibling defaults
    assert src["verification.severity.test"] == "defaults"
    assert cfg.verification.test == ["pytest -q"]
    assert loaded.files == [
        paths.user_config,
        repo / "orchestrator.yaml",
        repo / "orchestrator.local.yaml",
    ]


def test_orchestrator_env_beats_ollama_host(paths: Paths) -> None:
    env = {"OLLAMA_HOST": ":1234", "ORCHESTRATOR__LLM__HOST": "http://from-env:5"}
    loaded = load(paths, env=env)
    assert loaded.config.llm.host == "http://from-env:5"
    assert loaded.sources["llm.host"] == "env ORCHESTRATOR__LLM__HOST"


def test_cli_labels_name_the_flag(paths: Paths) -> None:
    loaded = load_config(
        paths,
        env={},
        cli={"models.planner": "llama3.1:8b"},
        cli_labels={"models.planner": "--model"},
    )
    assert loaded.sources["models.planner"] == "cli --model"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ollama.lan:9999", "http://ollama.lan:9999"),
        (":1234", "http://127.0.0.1:1234"),
        ("myhost", "http://myhost:11434"),
        ("https://gpu.example.com", "https://gpu.example.com:443"),
        ("http://10.0.0.2:11434/", "http://10.0.0.2:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_ollama_host_forms(raw: str, expected: str) -> None:
    assert normalize_ollama_host(raw) == expected


def test_bad_ollama_host_names_the_variable(paths: Paths) -> None:
    with pytest.raises(ConfigError, match="env OLLAMA_HOST: llm.host: expected a port"):
        load(paths, env={"OLLAMA_HOST": "host:notaport"})
    with pytest.raises(ConfigError, match="cli --host: llm.host: expected host:port or an http"):
        load_config(paths, env={}, cli={"llm.host": "ftp://x"}, cli_labels={"llm.host": "--host"})


def test_host_is_normalised_in_every_layer(paths: Paths) -> None:
    write_yaml(paths.user_config, {"llm": {"host": "gpu-box:11500"}})
    assert load(paths).config.llm.host == "http://gpu-box:11500"
    assert load(paths, cli={"llm.host": ":9"}).config.llm.host == "http://127.0.0.1:9"


def test_env_values_are_parsed_by_type(paths: Paths) -> None:
    env = {
        "ORCHESTRATOR__EXECUTION__MAX_ATTEMPTS": "3",
        "ORCHESTRATOR__VERIFICATION__ENABLED": "false",
        "ORCHESTRATOR__VERIFICATION__TEST": "[pytest -q, make check]",
        "orchestrator__Rag__Max_File_Bytes": "1000",
        "ORCHESTRATOR__GIT__BRANCH_PREFIX": "123",  # a string key keeps digits as text
        "ORCHESTRATOR__LLM__RECORD": "null",
        "ORCHESTRATOR__THRESHOLDS__PER_CATEGORY__LINT": "4",
    }
    cfg = load(paths, env=env).config
    assert cfg.execution.max_attempts == 3
    assert cfg.verification.enabled is False
    assert cfg.verification.test == ["pytest -q", "make check"]
    assert cfg.rag.max_file_bytes == 1000
    assert cfg.git.branch_prefix == "123"
    assert cfg.llm.record is None
    assert cfg.thresholds.per_category == {"lint": 4}


def test_cli_string_values_are_parsed(paths: Paths) -> None:
    cfg = load(
        paths,
        cli={
            "execution.max_parallel_phases": "5",
            "llm.provider": "replay",
            "verification.enabled": "no",
        },
    ).config
    assert cfg.execution.max_parallel_phases == 5
    assert cfg.llm.provider == "replay"
    assert cfg.verification.enabled is False


# --- errors ----------------------------------------------------------------------------------


def test_misspelt_key_suggests_the_right_one(paths: Paths, repo: Path) -> None:
    path = write_yaml(repo / "orchestrator.yaml", {"execution": {"max_paralel_phases": 3}})
    with pytest.raises(ConfigError) as info:
        load(paths, repo)
    message = str(info.value)
    assert str(path) in message
    assert "execution.max_paralel_phases" in message
    assert "did you mean 'execution.max_parallel_phases'" in message


def test_misspelt_section_and_env_key(paths: Paths) -> None:
    write_yaml(paths.user_config, {"exectuion": {"max_attempts": 2}})
    with pytest.raises(ConfigError, match="did you mean 'execution'"):
        load(paths)
    paths.user_config.unlink()
    with pytest.raises(ConfigError) as info:
        load(paths, env={"ORCHESTRATOR__LLM__HOTS": "x"})
    assert "env ORCHESTRATOR__LLM__HOTS" in str(info.value)
    assert "did you mean 'llm.host'" in str(info.value)


def test_unknown_category_key_suggests(paths: Paths) -> None:
    write_yaml(paths.user_config, {"thresholds": {"per_category": {"bild": 1}}})
    with pytest.raises(ConfigError, match="did you mean 'thresholds.per_category.build'"):
        load(paths)


def test_unknown_cli_key(paths: Paths) -> None:
    with pytest.raises(ConfigError, match="cli models.planer: unknown key 'models.planer'"):
        load(paths, cli={"models.planer": "x"})


def test_bad_type_names_layer_key_expected_and_given(paths: Paths, repo: Path) -> None:
    path = write_yaml(repo / "orchestrator.local.yaml", {"execution": {"max_attempts": "lots"}})
    with pytest.raises(ConfigError) as info:
        load(paths, repo)
    message = str(info.value)
    assert message.startswith(f"{path}: execution.max_attempts: expected a valid integer")
    assert "given 'lots'" in message


def test_bad_literal_and_range_from_env(paths: Paths) -> None:
    with pytest.raises(ConfigError) as info:
        load(paths, env={"ORCHESTRATOR__EXECUTION__ON_PHASE_FAILURE": "explode"})
    assert "env ORCHESTRATOR__EXECUTION__ON_PHASE_FAILURE: execution.on_phase_failure" in str(
        info.value
    )
    assert "'abort', 'ask' or 'continue'" in str(info.value)
    with pytest.raises(ConfigError, match="greater than or equal to 1, given 0"):
        load(paths, cli={"execution.max_parallel_phases": 0})


def test_bad_value_overridden_later_still_names_its_file(paths: Paths, repo: Path) -> None:
    user = write_yaml(paths.user_config, {"rag": {"max_context_tokens": "many"}})
    write_yaml(repo / "orchestrator.yaml", {"rag": {"enabled": False}})
    with pytest.raises(ConfigError, match=f"^{user}: rag.max_context_tokens"):
        load(paths, repo)


def test_section_given_a_scalar(paths: Paths) -> None:
    write_yaml(paths.user_config, {"llm": "ollama"})
    with pytest.raises(ConfigError, match="llm: expected a mapping"):
        load(paths)


def test_invalid_yaml_names_file_and_line(paths: Paths) -> None:
    paths.user_config.parent.mkdir(parents=True)
    paths.user_config.write_text("execution:\n  max_attempts: 3\n  bad: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load(paths)
    assert str(paths.user_config) in str(info.value)
    assert "invalid YAML at line" in str(info.value)


def test_duplicate_key_is_an_error(paths: Paths) -> None:
    paths.user_config.parent.mkdir(parents=True)
    paths.user_config.write_text("llm:\n  host: a\n  host: b\n")
    with pytest.raises(ConfigError, match="line 3.*duplicate key 'host'"):
        load(paths)


def test_yaml_anchors_and_merge_keys_work(paths: Paths) -> None:
    paths.user_config.parent.mkdir(parents=True)
    paths.user_config.write_text(
        "verification:\n  build: &cmds [make]\n  test: *cmds\n"
        "execution:\n  <<: {max_attempts: 4}\n  max_parallel_phases: 3\n"
    )
    loaded = load(paths)
    assert loaded.config.verification.test == ["make"]
    assert loaded.config.execution.max_attempts == 4


def test_top_level_must_be_a_mapping(paths: Paths) -> None:
    paths.user_config.parent.mkdir(parents=True)
    paths.user_config.write_text("- execution\n- llm\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load(paths)


def test_empty_file_is_fine(paths: Paths) -> None:
    paths.user_config.parent.mkdir(parents=True)
    paths.user_config.write_text("# nothing yet\n")
    assert load(paths).files == [paths.user_config]


def test_cross_field_rule_names_source(paths: Paths) -> None:
    with pytest.raises(ConfigError, match="env ORCHESTRATOR__EXECUTION__LEASE_SECONDS: .*lease"):
        load(paths, env={"ORCHESTRATOR__EXECUTION__LEASE_SECONDS": "1"})


# --- models ----------------------------------------------------------------------------------


def test_model_resolution(paths: Paths) -> None:
    loaded = load(paths)
    catalog = loaded.catalog
    planner = catalog.resolve("planner")
    assert planner.name == "qwen2.5-coder:7b" and planner.context_window == 32768
    embedder = catalog.resolve("embedder")
    assert embedder.provider == "onnx" and "embed" in embedder.capabilities
    entry = catalog.resolve("executor", "llama3.1:8b")
    assert entry.context_window == 131072
    raw = catalog.resolve("executor", "deepseek-coder-v2:16b")
    assert (raw.name, raw.provider, raw.tag, raw.context_window) == (
        "deepseek-coder-v2:16b",
        "ollama",
        "deepseek-coder-v2:16b",
        None,
    )
    assert catalog.resolve("embedder", "mxbai-embed-large").capabilities == ["embed"]
    with pytest.raises(ConfigError, match="unknown model role 'critic'"):
        catalog.resolve("critic")


def test_config_override_and_user_models_file(paths: Paths) -> None:
    write_yaml(
        paths.user_models,
        {
            "models": {
                "my-coder": {"model": "hf.co/me/coder:q4", "context_window": 16384},
                "llama3.1:8b": {"temperature": 0.7},
            },
            "roles": {"executor": "my-coder"},
        },
    )
    loaded = load(paths, cli={"models.planner": "llama3.1:8b"})
    assert loaded.model_for("executor").tag == "hf.co/me/coder:q4"
    planner = loaded.model_for("planner")
    assert planner.temperature == 0.7 and planner.context_window == 131072
    assert loaded.catalog_sources["roles.executor"] == str(paths.user_models)
    assert paths.user_models in loaded.files


def test_bad_models_file_names_file_and_key(paths: Paths) -> None:
    write_yaml(paths.user_models, {"models": {"x": {"context_windw": 5}}})
    with pytest.raises(ConfigError, match="did you mean 'models.x.context_window'"):
        load(paths)
    write_yaml(paths.user_models, {"models": {"x": {"context_window": "big"}}})
    with pytest.raises(ConfigError, match=f"{paths.user_models}: models.x.context_window"):
        load(paths)


def test_catalog_names_default_to_keys() -> None:
    catalog = ModelsCatalog.model_validate({"models": {"a": {}}, "roles": {"planner": "a"}})
    assert catalog.resolve("planner").model == "a"
    with pytest.raises(ValueError):
        ModelsCatalog.model_validate({"models": {"a": {"name": "b"}}})


# --- snapshots and show ----------------------------------------------------------------------


def test_snapshot_round_trip(paths: Paths) -> None:
    loaded = load(
        paths,
        env={"ORCHESTRATOR__EXECUTION__MAX_ATTEMPTS": "9"},
        cli={"models.executor": "llama3.1:8b"},
    )
    snapshot = json.loads(json.dumps(make_snapshot(loaded)))
    config, catalog = config_from_snapshot(snapshot)
    assert config == loaded.config
    assert catalog == loaded.catalog
    assert catalog.resolve("executor", config.models.executor).context_window == 131072


def test_snapshot_from_older_version_drops_removed_keys() -> None:
    snapshot = {"config": {"execution": {"max_attempts": 2, "retired_knob": True}}}
    config, catalog = config_from_snapshot(snapshot)
    assert config.execution.max_attempts == 2
    assert catalog.resolve("planner").name == "qwen2.5-coder:7b"
    with pytest.raises(ConfigError, match="stored with this run is invalid"):
        config_from_snapshot({"config": {"execution": {"max_attempts": "x"}}})


def test_render_show_lists_values_and_sources(paths: Paths) -> None:
    user = write_yaml(paths.user_config, {"execution": {"max_attempts": 4}})
    loaded = load(paths, env={"OLLAMA_HOST": ":7777"})
    text = render_show(loaded)
    assert "max_attempts: 4" in text and f"# from {user}" in text
    assert "host: http://127.0.0.1:7777" in text and "# from env OLLAMA_HOST" in text
    assert "poll_seconds: 0.25" in text and "# from defaults" in text
    assert "planner: qwen2.5-coder:7b" in text
    data = show_dict(loaded)
    json.dumps(data)
    assert data["sources"]["execution.max_attempts"] == str(user)
    assert data["models"]["roles"]["embedder"]["provider"] == "onnx"
    assert data["config"]["execution"]["max_attempts"] == 4
