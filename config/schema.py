"""The orchestrator's settings as nested pydantic models; every field says what it controls.

No secret belongs here: API keys come from the environment only, so a config snapshot stored
with a run is always safe to show and export.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

Category = Literal["build", "test", "lint", "security", "custom"]
Severity = Literal["major", "medium", "minor"]
CATEGORIES: tuple[str, ...] = ("build", "test", "lint", "security", "custom")


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ExternalAgentConfig(Section):
    """How to run an external coding agent (any CLI) as the executor."""

    command: list[str] = Field(
        default_factory=list,
        description="argv template; {prompt_file}, {prompt} and {worktree} are filled in",
    )
    prompt_via: Literal["file", "stdin", "arg"] = Field(
        default="stdin",
        description="how the agent receives its prompt: a file path, stdin, or an argument",
    )
    timeout_seconds: float = Field(
        default=1800, gt=0, description="kill the agent after this many seconds"
    )


PermissionPolicy = Literal["ask", "allow_edits", "allow_all", "deny"]
PermissionRule = Literal["ask", "allow", "deny"]
ToolKindName = Literal[
    "read", "edit", "delete", "move", "search", "execute", "think", "fetch", "switch_mode", "other"
]


class AgentConfig(Section):
    """A coding agent run over the Agent Client Protocol (`execution.executor: acp`)."""

    name: str | None = Field(
        default=None,
        description="agent preset (copilot, claude, codex, gemini, qwen, opencode, goose), or a "
        "label for `command`; setting it alone selects the acp executor",
    )
    command: list[str] = Field(
        default_factory=list,
        description="argv of the agent, replacing the preset's (e.g. a local build of an agent)",
    )
    mode: Literal["auto", "acp", "plain"] = Field(
        default="auto",
        description="acp: speak ACP; plain: the preset's non-interactive command through the "
        "external executor; auto: ACP when the agent has it",
    )
    permissions: PermissionPolicy = Field(
        default="ask",
        description="answer to the agent's permission requests: ask a person, allow edits "
        "(file writes, moves, deletes) and ask for the rest, allow all, or deny all",
    )
    rules: dict[ToolKindName, PermissionRule] = Field(
        default_factory=dict,
        description="per tool kind, overriding `permissions`: e.g. {execute: ask, read: allow}",
    )
    env: list[str] = Field(
        default_factory=list,
        description="more environment variable names passed to the agent (its own credentials), "
        "besides those its preset names",
    )
    timeout_seconds: float = Field(
        default=1800, gt=0, description="stop an attempt that runs longer than this"
    )
    silence_seconds: float = Field(
        default=300,
        gt=0,
        description="stop an agent that sends nothing for this long (time waiting on a person "
        "for a permission does not count)",
    )
    startup_seconds: float = Field(
        default=60, gt=0, description="an agent must answer `initialize` within this"
    )
    cancel_grace_seconds: float = Field(
        default=5, ge=0, description="after session/cancel, wait this long before killing it"
    )


class ExecutionConfig(Section):
    """How phases are scheduled, retried and approved."""

    max_parallel_phases: int = Field(
        default=2, ge=1, description="phases run at the same time at most"
    )
    max_attempts: int = Field(default=3, ge=1, description="attempts per phase before it fails")
    backoff_base_seconds: float = Field(default=1.0, ge=0, description="first wait before a retry")
    backoff_max_seconds: float = Field(
        default=30.0, ge=0, description="longest wait between retries"
    )
    backoff_jitter: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="random fraction (0..1) added to or taken from each wait",
    )
    approval_risk_level: Literal["low", "medium", "high", "critical", "never"] = Field(
        default="high",
        description="phases at this risk level or above wait for a person; never = no gate",
    )
    on_phase_failure: Literal["abort", "ask", "continue"] = Field(
        default="ask", description="what a phase that failed all its attempts does to the run"
    )
    executor: str = Field(
        default="llm", description="executor name: llm, external, acp, or an entry point"
    )
    external: ExternalAgentConfig = Field(
        default_factory=ExternalAgentConfig, description="settings of the external executor"
    )
    agent: AgentConfig = Field(
        default_factory=AgentConfig, description="settings of the acp executor (coding agents)"
    )
    heartbeat_seconds: float = Field(
        default=2.0, gt=0, description="how often a live run renews its lease"
    )
    lease_seconds: float = Field(
        default=15.0, gt=0, description="a run whose lease is older than this is recoverable"
    )
    poll_seconds: float = Field(
        default=0.25,
        gt=0,
        description="how often a waiting run re-reads interventions and cancel flags",
    )
    max_cost_usd: float | None = Field(
        default=None,
        gt=0,
        description="model cost a run may spend (models.yaml prices); reaching it pauses the run",
    )
    max_tokens: int | None = Field(
        default=None,
        ge=1,
        description="prompt + completion tokens a run may use; reaching it pauses the run",
    )
    max_phase_cost_usd: float | None = Field(
        default=None, gt=0, description="model cost one phase may spend (all its attempts)"
    )
    max_phase_tokens: int | None = Field(
        default=None, ge=1, description="tokens one phase may use (all its attempts)"
    )


class CategoryLimit(Section):
    """A per-category limit with its own action."""

    max: int = Field(ge=0, description="open findings of the category allowed")
    on_exceeded: Literal["abort", "ask", "warn"] = Field(
        default="ask", description="what happens when the category exceeds max"
    )


class FindingsThresholds(Section):
    """How many open findings a run tolerates before it stops or asks."""

    max_major: int = Field(default=0, ge=0, description="open major findings allowed")
    max_medium: int = Field(default=10, ge=0, description="open medium findings allowed")
    on_major_exceeded: Literal["abort", "ask", "warn"] = Field(
        default="ask", description="what happens when major findings exceed max_major"
    )
    on_medium_exceeded: Literal["abort", "ask", "warn"] = Field(
        default="warn", description="what happens when medium findings exceed max_medium"
    )
    per_category: dict[Category, int | CategoryLimit] = Field(
        default_factory=dict,
        description="max open findings per category: a number (acts like max_major when exceeded) "
        "or {max: N, on_exceeded: abort|ask|warn}",
    )


def _default_severity() -> dict[Category, Severity]:
    """Build, test and security failures block; lint is minor; custom checks are medium."""
    return {
        "build": "major",
        "test": "major",
        "lint": "minor",
        "security": "major",
        "custom": "medium",
    }


def _default_rule_severity() -> dict[str, Severity]:
    """Lint findings by rule family: likely bugs (pyflakes, bugbear, syntax) medium, style minor."""
    return {
        "ruff:F*": "medium",
        "ruff:E9*": "medium",
        "ruff:B*": "medium",
        "ruff:S*": "medium",
        "ruff:PLE*": "medium",
        "ruff:syntax-error": "major",
        "ruff:*": "minor",
    }


def _default_level_severity() -> dict[str, Severity]:
    """Tools' own levels: security HIGH major, MEDIUM medium, LOW minor; warnings and notes minor."""
    return {
        "*:high": "major",
        "*:medium": "medium",
        "*:low": "minor",
        "*:warning": "minor",
        "*:note": "minor",
        "mypy:error": "medium",
    }


def _default_allowed_commands() -> list[str]:
    """Test runners a phase's verification criteria may name without asking."""
    return [
        "pytest",
        "pytest *",
        "python -m pytest*",
        "python3 -m pytest*",
        "python -m unittest*",
        "python3 -m unittest*",
        "npm test",
        "go test *",
        "cargo test*",
        "make test",
    ]


class VerifyCommand(Section):
    """A verification command with an explicit parser or tool name."""

    command: str = Field(
        description="shell command; {report} is a report file in the home folder, {cache} a cache "
        "folder, {python} the interpreter"
    )
    parser: str = Field(
        default="auto",
        description="auto, junit, ruff, mypy, bandit, sarif, compiler, or a plugin parser",
    )
    tool: str | None = Field(default=None, description="tool name in findings (default: program)")


CommandList = list[str | VerifyCommand]


class VerificationConfig(Section):
    """The repository's own checks, run in the worktree after each phase."""

    enabled: bool = Field(default=True, description="run verification at all")
    build: CommandList = Field(
        default_factory=list, description="build commands (shell strings or {command, parser})"
    )
    test: CommandList = Field(
        default_factory=list, description="test commands (shell strings or {command, parser})"
    )
    lint: CommandList = Field(
        default_factory=list, description="lint commands (shell strings or {command, parser})"
    )
    security: CommandList = Field(
        default_factory=list,
        description="security scan commands (shell strings or {command, parser})",
    )
    custom: CommandList = Field(
        default_factory=list, description="other commands (shell strings or {command, parser})"
    )
    auto_detect: bool = Field(
        default=True,
        description="when no command is configured, detect them (pytest/ruff/mypy/bandit, npm, "
        "make, go, cargo)",
    )
    baseline: bool = Field(
        default=True,
        description="verify the run's base commit first; findings already there are baseline",
    )
    allowed_commands: list[str] = Field(
        default_factory=_default_allowed_commands,
        description="glob patterns of commands named in phase criteria that run without asking",
    )
    max_findings_per_step: int = Field(
        default=1000, ge=1, description="findings kept per command; the least severe are dropped"
    )
    max_report_bytes: int = Field(
        default=64_000_000,
        ge=1,
        description="output written whole to the reports folder per command, for the parsers",
    )
    feedback_max_findings: int = Field(
        default=10, ge=0, description="findings listed in the next attempt's prompt"
    )
    rule_severity: dict[str, Severity] = Field(
        default_factory=_default_rule_severity,
        description='severity by "tool:rule" glob (most specific wins), e.g. "ruff:F*": medium',
    )
    level_severity: dict[str, Severity] = Field(
        default_factory=_default_level_severity,
        description='severity by "tool:level" glob for tools that rate their own findings',
    )
    timeout_seconds: float = Field(
        default=600, gt=0, description="kill a command after this many seconds"
    )
    max_output_bytes: int = Field(
        default=262_144,
        ge=1,
        description="output kept per command (and per agent attempt) in the log: head and tail",
    )
    output_tail_lines: int = Field(
        default=40, ge=0, description="lines of output quoted in a finding"
    )
    severity: dict[Category, Severity] = Field(
        default_factory=_default_severity, description="severity of a failure per category"
    )


class RagConfig(Section):
    """Retrieval of repository context for prompts."""

    enabled: bool = Field(
        default=True, description="index the repository and add context to prompts"
    )
    max_context_tokens: int = Field(
        default=3000, ge=0, description="token budget for retrieved context"
    )
    max_file_bytes: int = Field(
        default=2_000_000,
        ge=1,
        description="larger files are not indexed (generated or minified ones are skipped by content)",
    )
    exclude: list[str] = Field(
        default_factory=lambda: [".git/"],
        description="gitignore-style patterns never indexed (on top of .gitignore; vendored, "
        "generated and minified files are skipped anyway)",
    )


class GitConfig(Section):
    """Branches and commits the orchestrator makes in the user's repository."""

    branch_prefix: str = Field(
        default="orchestrator/", description="prefix of every branch it creates"
    )
    author_name: str = Field(default="Agent Orchestrator", description="author name of its commits")
    author_email: str = Field(
        default="orchestrator@localhost", description="author email of its commits"
    )
    trailer: str = Field(
        default="Orchestrator-Run", description="commit trailer key carrying the run id"
    )
    allow_dirty: bool = Field(
        default=False, description="start even if the repository has uncommitted changes"
    )


class ArtifactsConfig(Section):
    """What a run leaves behind besides git branches."""

    write_summary: bool = Field(
        default=True, description="write a markdown summary when a run ends"
    )
    save_diffs: bool = Field(default=True, description="save each phase's diff as a file")
    url: str = Field(
        default="",
        description="where artifacts go: empty for the home folder, a folder, or s3://bucket/prefix"
        " (endpoint and keys from the AWS_* variables)",
    )

    @field_validator("url")
    @classmethod
    def _known_place(cls, value: str) -> str:
        """A folder, file:// or s3://bucket[/prefix], with no credential inside (the URL is stored)."""
        value = value.strip()
        if "://" not in value:
            return value
        scheme, _, rest = value.partition("://")
        if scheme not in ("s3", "file"):
            raise ValueError(
                f"{scheme}:// is not supported: use a folder, file:// or s3://BUCKET/PREFIX"
            )
        bucket = rest.split("/", 1)[0]
        if scheme == "s3" and not bucket:
            raise ValueError("s3:// needs a bucket: s3://BUCKET or s3://BUCKET/PREFIX")
        if "@" in bucket:
            raise ValueError(
                "keys never go in artifacts.url (it is stored with each run):"
                " set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead"
            )
        return value


with warnings.catch_warnings():
    # `json` is the documented key; it only hides BaseModel.json, which pydantic v2 deprecated.
    warnings.filterwarnings("ignore", message='Field name "json"', category=UserWarning)

    class LoggingConfig(Section):
        """The orchestrator's own log files under <home>/logs."""

        level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
            default="INFO", description="lowest level written"
        )
        max_bytes: int = Field(
            default=5_000_000, ge=1, description="rotate a log file past this size"
        )
        backup_count: int = Field(default=3, ge=0, description="rotated files kept")
        json: bool = Field(  # type: ignore[assignment]
            default=True, description="write JSON lines instead of plain text"
        )


def normalize_ollama_host(raw: str) -> str:
    """Normalise "host", "host:port", ":port" or a URL to http(s)://host:port as Ollama does."""
    text = raw.strip()
    scheme, sep, rest = text.partition("://")
    port = 11434
    if not sep:
        scheme, rest = "http", text
    elif scheme.lower() in ("http", "https"):
        scheme = scheme.lower()
        port = 80 if scheme == "http" else 443
    else:
        raise ValueError(f"expected host:port or an http(s) URL, given {raw!r}")
    split = urlsplit(f"{scheme}://{rest}")
    try:
        port = split.port or port
    except ValueError:
        raise ValueError(f"expected a port number 0-65535, given {raw!r}") from None
    host = split.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::"):  # a server's listen-on-all address; clients use loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    path = split.path.strip("/")
    return f"{scheme}://{host}:{port}" + (f"/{path}" if path else "")


class OpenAIConfig(Section):
    """The OpenAI-compatible provider: OpenAI itself, vLLM, LM Studio, llama.cpp's server, ..."""

    base_url: str = Field(
        default="https://api.openai.com/v1",
        description="API base URL, e.g. http://127.0.0.1:8000/v1 for vLLM or LM Studio",
    )
    api_key_env: str = Field(
        default="OPENAI_API_KEY", description="environment variable holding the API key"
    )
    structured_output: Literal["auto", "json_schema", "json_object", "prompt"] = Field(
        default="auto",
        description="how JSON answers are asked for; auto tries json_schema, then falls back",
    )


class AnthropicConfig(Section):
    """The Anthropic provider (messages API)."""

    base_url: str = Field(default="https://api.anthropic.com", description="API base URL")
    api_key_env: str = Field(
        default="ANTHROPIC_API_KEY", description="environment variable holding the API key"
    )


class LLMConfig(Section):
    """How chat models are reached."""

    provider: str = Field(
        default="auto",
        description="auto (each model's models.yaml provider), ollama, openai, anthropic, "
        "or replay to answer from a cassette",
    )
    host: str = Field(
        default="http://127.0.0.1:11434", description="Ollama server URL (or OLLAMA_HOST)"
    )
    timeout_seconds: float = Field(
        default=300, gt=0, description="give up on one model call after this"
    )
    connect_timeout_seconds: float = Field(
        default=10, gt=0, description="give up connecting after this"
    )
    max_retries: int = Field(
        default=3, ge=0, description="client-level retries of retriable errors"
    )
    retry_backoff_seconds: float = Field(
        default=0.5, ge=0, description="first wait before a client retry"
    )
    max_concurrent_calls: int = Field(
        default=2, ge=1, description="model calls in flight at once per provider (process-wide)"
    )
    concurrency: dict[str, PositiveInt] = Field(
        default_factory=dict,
        description="per-provider limits over max_concurrent_calls, e.g. {openai: 8, ollama: 1}",
    )
    retry_max_wait_seconds: float = Field(
        default=20, ge=0, description="longest wait between client retries (and of Retry-After)"
    )
    secrets_file: str | None = Field(
        default=None,
        description="file of KEY=value lines read for API keys missing from the environment",
    )
    openai: OpenAIConfig = Field(
        default_factory=OpenAIConfig, description="OpenAI and compatible servers"
    )
    anthropic: AnthropicConfig = Field(default_factory=AnthropicConfig, description="Anthropic")
    cache: bool = Field(default=True, description="reuse answers to identical requests")
    record: str | None = Field(
        default=None, description="append every exchange to this cassette file"
    )
    replay: str | None = Field(default=None, description="answer from this cassette file")
    replay_strict: bool = Field(default=False, description="fail on a request the cassette lacks")

    @field_validator("host", mode="before")
    @classmethod
    def _normalise_host(cls, value: object) -> object:
        """Accept the same host forms as OLLAMA_HOST wherever llm.host is set."""
        return normalize_ollama_host(value) if isinstance(value, str) else value


class ModelOverrides(Section):
    """Models per role; each names a models.yaml entry or a raw Ollama tag."""

    planner: str | None = Field(default=None, description="model of the planning agent")
    executor: str | None = Field(default=None, description="model of the executor agents")
    embedder: str | None = Field(default=None, description="model that embeds repository chunks")


class LessonsConfig(Section):
    """Lessons from earlier runs on the same repository, given to the planner and executors."""

    enabled: bool = Field(
        default=True, description="add a Lessons section to the planner's and executors' prompts"
    )
    max_tokens: int = Field(
        default=400, ge=0, description="token budget of that section; the most relevant come first"
    )


class StateConfig(Section):
    """Where runs are stored: the home's SQLite file, or a shared PostgreSQL database."""

    url: str | None = Field(
        default=None,
        description="postgresql://USER@HOST:PORT/DATABASE to store state in PostgreSQL "
        "(or --db / ORCHESTRATOR__STATE__URL); null = the home's SQLite file. Its password "
        "is never stored or shown: the value kept here is masked",
    )
    password_file: str | None = Field(
        default=None,
        description="file whose first line is the database password (mode 0600), for a URL "
        "without one; libpq's PGPASSWORD and ~/.pgpass work too",
    )

    @field_validator("url")
    @classmethod
    def _masked(cls, value: str | None) -> str | None:
        """Keep only the masked URL: the configuration is shown and stored with every run."""
        from config.dburl import is_postgres_url, mask_url

        if value is None:
            return None
        if not is_postgres_url(value):
            raise ValueError(f"expected a postgresql:// URL, given {mask_url(value)!r}")
        return mask_url(value)


class OrchestratorConfig(Section):
    """Every setting of the orchestrator, one section per concern."""

    execution: ExecutionConfig = Field(
        default_factory=ExecutionConfig, description="scheduling, retries and approvals"
    )
    thresholds: FindingsThresholds = Field(
        default_factory=FindingsThresholds, description="limits on open findings"
    )
    verification: VerificationConfig = Field(
        default_factory=VerificationConfig, description="the repository's own checks"
    )
    rag: RagConfig = Field(default_factory=RagConfig, description="repository context retrieval")
    git: GitConfig = Field(default_factory=GitConfig, description="branches and commits")
    artifacts: ArtifactsConfig = Field(
        default_factory=ArtifactsConfig, description="summaries and diffs written per run"
    )
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="own log files")
    llm: LLMConfig = Field(default_factory=LLMConfig, description="model provider connection")
    models: ModelOverrides = Field(
        default_factory=ModelOverrides, description="model per role, over models.yaml roles"
    )
    lessons: LessonsConfig = Field(
        default_factory=LessonsConfig, description="what earlier runs on a repository taught"
    )
    state: StateConfig = Field(
        default_factory=StateConfig, description="the state database (SQLite or PostgreSQL)"
    )

    def snapshot(self) -> dict[str, Any]:
        """A JSON-safe dump of every value, stored with each run so resume uses the same config."""
        return self.model_dump(mode="json")
