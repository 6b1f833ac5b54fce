"""The coding agents we know by name: how to start them over ACP (or plainly), install and log in."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.errors import ConfigError


@dataclass(frozen=True)
class AgentPreset:
    """One coding agent: its ACP command line, its plain fallback, and what it needs from the user."""

    name: str
    title: str
    acp: list[str]  # argv speaking ACP on stdio; empty when the agent has no ACP mode
    plain: list[str]  # non-interactive argv for the external executor ({prompt} filled in)
    install: str  # the one command that installs it
    login: str  # how to log in (or which variable to set)
    env: tuple[str, ...] = ()  # credential and setting variables passed through to the agent
    credential_files: tuple[str, ...] = ()  # files under $HOME whose presence means logged in
    npm_package: str | None = None
    version_args: tuple[str, ...] = ("--version",)
    min_node: int | None = None  # major Node version the agent needs, when it is a Node program
    docs: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def binary(self) -> str:
        """The program the preferred mode starts."""
        return (self.acp or self.plain)[0]


PRESETS: dict[str, AgentPreset] = {
    p.name: p
    for p in (
        AgentPreset(
            name="copilot",
            title="GitHub Copilot CLI",
            acp=["copilot", "--acp"],
            plain=["copilot", "--allow-all-tools", "-p", "{prompt}"],
            install="npm install -g @github/copilot",
            login="run `copilot` once and type /login, or set COPILOT_GITHUB_TOKEN (or GH_TOKEN)",
            env=("COPILOT_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN", "GH_HOST"),
            credential_files=(".copilot/config.json",),
            npm_package="@github/copilot",
            min_node=20,
        ),
        AgentPreset(
            name="claude",
            title="Claude Code (through Zed's ACP adapter)",
            acp=["claude-code-acp"],
            plain=["claude", "-p", "{prompt}"],
            install="npm install -g @zed-industries/claude-code-acp @anthropic-ai/claude-code",
            login="run `claude` once and type /login, or set ANTHROPIC_API_KEY",
            env=(
                "ANTHROPIC_API_KEY",
                "ANTHROPIC_AUTH_TOKEN",
                "ANTHROPIC_BASE_URL",
                "ANTHROPIC_MODEL",
                "ANTHROPIC_SMALL_FAST_MODEL",
                "CLAUDE_CODE_OAUTH_TOKEN",
                "CLAUDE_CONFIG_DIR",
            ),
            credential_files=(".claude/.credentials.json",),
            npm_package="@zed-industries/claude-code-acp",
        ),
        AgentPreset(
            name="codex",
            title="OpenAI Codex (through Zed's ACP adapter)",
            acp=["codex-acp"],
            plain=["codex", "exec", "--full-auto", "{prompt}"],
            install="npm install -g @zed-industries/codex-acp @openai/codex",
            login="run `codex login`, or set OPENAI_API_KEY",
            env=("OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_HOME"),
            credential_files=(".codex/auth.json",),
            npm_package="@zed-industries/codex-acp",
        ),
        AgentPreset(
            name="gemini",
            title="Gemini CLI",
            acp=["gemini", "--acp"],
            plain=["gemini", "--yolo", "-p", "{prompt}"],
            install="npm install -g @google/gemini-cli",
            login="run `gemini` once and choose a login, or set GEMINI_API_KEY",
            env=(
                "GEMINI_API_KEY",
                "GOOGLE_API_KEY",
                "GOOGLE_CLOUD_PROJECT",
                "GOOGLE_CLOUD_LOCATION",
                "GOOGLE_GENAI_USE_VERTEXAI",
                "GOOGLE_APPLICATION_CREDENTIALS",
            ),
            credential_files=(".gemini/oauth_creds.json",),
            npm_package="@google/gemini-cli",
            min_node=20,
        ),
        AgentPreset(
            name="qwen",
            title="Qwen Code",
            acp=["qwen", "--acp"],
            plain=["qwen", "--yolo", "-p", "{prompt}"],
            install="npm install -g @qwen-code/qwen-code",
            login="run `qwen` once and choose a login, or set OPENAI_API_KEY, OPENAI_BASE_URL "
            "and OPENAI_MODEL for any OpenAI-compatible server",
            env=("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL", "DASHSCOPE_API_KEY"),
            credential_files=(".qwen/oauth_creds.json", ".qwen/settings.json"),
            npm_package="@qwen-code/qwen-code",
            min_node=22,
        ),
        AgentPreset(
            name="opencode",
            title="OpenCode",
            acp=["opencode", "acp"],
            plain=["opencode", "run", "{prompt}"],
            install="npm install -g opencode-ai",
            login="run `opencode auth login`, or set the provider's key (e.g. ANTHROPIC_API_KEY)",
            env=(
                "ANTHROPIC_API_KEY",
                "OPENAI_API_KEY",
                "OPENROUTER_API_KEY",
                "GEMINI_API_KEY",
                "OPENCODE_CONFIG",
                "OPENCODE_CONFIG_CONTENT",
            ),
            credential_files=(".local/share/opencode/auth.json",),
            npm_package="opencode-ai",
        ),
        AgentPreset(
            name="goose",
            title="Goose",
            acp=["goose", "acp"],
            plain=["goose", "run", "--text", "{prompt}"],
            install="curl -fsSL https://github.com/block/goose/releases/download/stable/"
            "download_cli.sh | CONFIGURE=false bash",
            login="run `goose configure`, or set GOOSE_PROVIDER, GOOSE_MODEL and the provider's key",
            env=("GOOSE_PROVIDER", "GOOSE_MODEL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"),
            credential_files=(".config/goose/config.yaml",),
        ),
    )
}


def preset(name: str) -> AgentPreset:
    """The preset of that name, or a ConfigError listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"execution.agent.name: unknown agent {name!r}; known agents: "
            f"{', '.join(sorted(PRESETS))} (or set execution.agent.command to any ACP agent's argv)"
        ) from None
