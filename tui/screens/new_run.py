"""Section 3: the form that starts a run. It validates everything (task, repository, provider,
model, configuration, provider preflight) before the run is stored, then drives it in this app."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.suggester import Suggester, SuggestFromList
from textual.widgets import Button, Checkbox, Footer, Header, Input, Label, RadioButton, RadioSet

from config.loader import LoadedConfig, load_config, shipped_catalog
from core.errors import ConfigError, ModelNotFoundError, OrchestratorError, RepoError

if TYPE_CHECKING:
    from tui.app import OrchestratorApp


def complete_path(value: str, *, dirs_only: bool) -> str | None:
    """The first existing path that extends `value` (folders end with "/"), or None."""
    if not value:
        return None
    expanded = os.path.expanduser(value)
    folder, prefix = os.path.split(expanded)
    try:
        names = sorted(os.listdir(folder or "."))
    except OSError:
        return None
    for name in names:
        if not name.startswith(prefix) or (name.startswith(".") and not prefix.startswith(".")):
            continue
        full = os.path.join(folder, name)
        is_dir = os.path.isdir(full)
        if dirs_only and not is_dir:
            continue
        if name == prefix and not is_dir:
            continue
        rest = name[len(prefix) :] + ("/" if is_dir else "")
        if not rest:
            continue
        return value + rest
    return None


class PathSuggester(Suggester):
    """Completes file-system paths as the user types (right arrow accepts); listing runs in a thread."""

    def __init__(self, *, dirs_only: bool) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.dirs_only = dirs_only

    async def get_suggestion(self, value: str) -> str | None:
        return await asyncio.to_thread(complete_path, value, dirs_only=self.dirs_only)


def chat_models(provider: str) -> list[str]:
    """The shipped catalog's chat models a provider serves ("auto" and "replay": all of them)."""
    models = shipped_catalog().models
    return [
        name
        for name, m in models.items()
        if "chat" in m.capabilities and (provider in ("auto", "replay") or m.provider == provider)
    ]


def model_hint(provider: str) -> str:
    """The Model field's placeholder for a provider: what empty means, and names to try."""
    if provider == "replay":
        return "empty: the cassette answers, whatever the model"
    names = chat_models(provider)
    extra = "; any pulled Ollama tag works too" if provider == "ollama" else ""
    return "empty: models.yaml's defaults; or " + ", ".join(names[:2]) + extra


def run_overrides(
    *, provider: str, model: str, host: str, replay: str, record: str
) -> dict[str, Any]:
    """The CLI-flag layer of the configuration for what the form says (same keys as `orchestrator run`)."""
    overrides: dict[str, Any] = {"llm.provider": provider}
    if model:
        overrides["models.planner"] = model
        overrides["models.executor"] = model
    if host and provider == "ollama":
        overrides["llm.host"] = host
    if host and provider == "openai":
        overrides["llm.openai.base_url"] = host
    if replay and provider == "replay":
        overrides["llm.replay"] = str(Path(replay).expanduser().resolve())
    if record:
        overrides["llm.record"] = str(Path(record).expanduser().resolve())
    return overrides


# How the engine's advice, written for the CLI's flags, reads on this form (field names instead).
_FORM_WORDING: tuple[tuple[str, str], ...] = (
    (r"pass --repo with (.+?)(?=[.;]|$)", r"put \1 in the Repository field"),
    (
        r"pass --allow-dirty to start from HEAD",
        'tick "Start from HEAD even with uncommitted changes"',
    ),
    (r"pass an existing --replay FILE", "choose an existing file in the Cassette field"),
    (
        r"--provider replay needs --replay FILE",
        "the Replay provider needs a file in the Cassette field",
    ),
    (r"with --model\b", "in the Model field"),
    (r"--yes\b", 'the "Approve risk and threshold interventions" box'),
)
# The field an error class is about, named first so the user knows where to look.
_ERROR_FIELDS: tuple[tuple[type[OrchestratorError], str], ...] = (
    (RepoError, "Repository"),
    (ModelNotFoundError, "Model"),
    (ConfigError, "Configuration"),
)


def form_error(exc: OrchestratorError) -> str:
    """An engine error as the form shows it: the field it is about, then its advice in form words."""
    text = str(exc)
    for pattern, replacement in _FORM_WORDING:
        text = re.sub(pattern, replacement, text)
    field = next((name for kind, name in _ERROR_FIELDS if isinstance(exc, kind)), None)
    return f"{field}: {text}" if field else text


class NewRunScreen(Screen[None]):
    """Task, repository (with path completion), provider and model, options; ctrl+s starts."""

    SECTION = "New run"
    SUB_TITLE = "New run"
    AUTO_FOCUS = "#task"
    DEFAULT_CSS = """
    NewRunScreen VerticalScroll#form { padding: 1 2; }
    NewRunScreen .row { height: auto; margin-bottom: 1; }
    NewRunScreen .row > Label { width: 16; color: $text-muted; padding-top: 0; }
    NewRunScreen .row > Input { width: 1fr; }
    NewRunScreen .hint { color: $text-muted; width: 1fr; margin: 0 0 1 16; }
    NewRunScreen RadioSet { layout: horizontal; width: auto; }
    NewRunScreen.narrow RadioSet { layout: vertical; }
    NewRunScreen RadioSet > RadioButton { width: auto; margin-right: 2; }
    NewRunScreen #replay-row { display: none; }
    NewRunScreen.replay #replay-row { display: block; }
    NewRunScreen #host-row { display: none; }
    NewRunScreen.hosted #host-row { display: block; }
    NewRunScreen #options { height: auto; margin-left: 16; }
    NewRunScreen #errors { color: $error; width: 1fr; height: auto; max-height: 50%; margin: 0 2; }
    NewRunScreen #errors.-empty { display: none; }
    NewRunScreen #buttons { height: auto; margin: 1 0 0 16; }
    NewRunScreen #buttons Button { margin-right: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "start", "Start run"),
        Binding("ctrl+o", "demo_values", "Demo values"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.starting = False

    @property
    def orchestrator(self) -> OrchestratorApp:
        return cast("OrchestratorApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("", id="errors", classes="-empty")
        with VerticalScroll(id="form"):
            with Horizontal(classes="row"):
                yield Label("Task")
                yield Input(
                    placeholder="what the run should do, e.g. Add input validation to the signup form",
                    id="task",
                    compact=True,
                )
            with Horizontal(classes="row"):
                yield Label("Repository")
                yield Input(
                    str(self.orchestrator.work_dir),
                    id="repo",
                    suggester=PathSuggester(dirs_only=True),
                    compact=True,
                )
            yield Label(
                "a git repository with at least one commit; → accepts the completion",
                classes="hint",
            )
            with Horizontal(classes="row"):
                yield Label("Provider")
                with RadioSet(id="provider", compact=True):
                    yield RadioButton("Ollama", value=True, id="provider-ollama")
                    yield RadioButton("OpenAI API", id="provider-openai")
                    yield RadioButton("Anthropic", id="provider-anthropic")
                    yield RadioButton("Per model", id="provider-auto")
                    yield RadioButton("Replay", id="provider-replay")
            with Horizontal(classes="row"):
                yield Label("Model")
                yield Input(
                    placeholder=model_hint("ollama"),
                    id="model",
                    suggester=SuggestFromList(chat_models("ollama"), case_sensitive=False),
                    compact=True,
                )
            with Horizontal(classes="row", id="host-row"):
                yield Label("Host / base URL")
                yield Input(
                    placeholder="empty: from configuration (Ollama http://127.0.0.1:11434;"
                    " OpenAI-compatible e.g. http://127.0.0.1:8000/v1)",
                    id="host",
                    compact=True,
                )
            with Horizontal(classes="row", id="replay-row"):
                yield Label("Cassette")
                yield Input(
                    placeholder="the JSONL cassette to answer from",
                    id="replay",
                    suggester=PathSuggester(dirs_only=False),
                    compact=True,
                )
            with Horizontal(classes="row"):
                yield Label("Record to")
                yield Input(
                    placeholder="optional: a JSONL file that keeps every model call",
                    id="record",
                    compact=True,
                )
            with Vertical(id="options"):
                yield Checkbox(
                    "Approve risk and threshold interventions as they come",
                    id="yes",
                    compact=True,
                )
                yield Checkbox(
                    "Start from HEAD even with uncommitted changes",
                    id="allow-dirty",
                    compact=True,
                )
            with Horizontal(id="buttons"):
                yield Button("Start run (ctrl+s)", variant="primary", id="start")
                yield Button("Demo values (ctrl+o)", id="demo")
        yield Footer()

    def on_mount(self) -> None:
        self.add_class("hosted")

    def on_resize(self) -> None:
        # The provider choices stack when they would not fit on one line beside the labels.
        self.set_class(self.size.width < 100, "narrow")

    @property
    def provider(self) -> str:
        pressed = self.query_one("#provider", RadioSet).pressed_button
        if pressed is None or pressed.id is None:
            return "ollama"
        return pressed.id.removeprefix("provider-")

    @on(RadioSet.Changed, "#provider")
    def _provider_changed(self, event: RadioSet.Changed) -> None:
        # The host row serves Ollama's host and an OpenAI-compatible server's base URL.
        self.set_class(self.provider in ("ollama", "openai"), "hosted")
        self.set_class(self.provider == "replay", "replay")
        # Chat models of the chosen provider only: the embedder is no choice for planning.
        model = self.query_one("#model", Input)
        model.placeholder = model_hint(self.provider)
        model.suggester = SuggestFromList(chat_models(self.provider), case_sensitive=False)

    def _value(self, selector: str) -> str:
        return self.query_one(selector, Input).value.strip()

    def validate_form(self) -> list[str]:
        """What is wrong with the form before anything is loaded or stored (empty when fine)."""
        errors = []
        if not self._value("#task"):
            errors.append("Task: say what the run should do.")
        repo = self._value("#repo")
        if not repo:
            errors.append("Repository: give the path of a git repository.")
        elif not Path(repo).expanduser().is_dir():
            errors.append(f"Repository: {repo} is not a folder.")
        if self.provider == "replay":
            replay = self._value("#replay")
            if not replay:
                errors.append("Cassette: the replay provider needs a cassette file.")
            elif not Path(replay).expanduser().is_file():
                errors.append(f"Cassette: {replay} is not a file.")
        record = self._value("#record")
        if record and not Path(record).expanduser().parent.is_dir():
            errors.append(f"Record: the folder of {record} does not exist.")
        return errors

    def _show_errors(self, errors: list[str]) -> None:
        label = self.query_one("#errors", Label)
        label.update(Text("\n".join(errors)))  # plain text: paths may hold [brackets]
        label.set_class(not errors, "-empty")

    @on(Button.Pressed, "#start")
    def _start_pressed(self) -> None:
        self.action_start()

    @on(Button.Pressed, "#demo")
    def _demo_pressed(self) -> None:
        self.action_demo_values()

    def action_start(self) -> None:
        if self.starting:
            return
        errors = self.validate_form()
        self._show_errors(errors)
        if errors:
            return
        self.starting = True
        self._show_errors(["Checking the repository, the configuration and the provider…"])
        self._start()

    @work(group="start", exclusive=True)
    async def _start(self) -> None:
        app = self.orchestrator
        engine = app.engine
        repo = Path(self._value("#repo")).expanduser().resolve()
        overrides = run_overrides(
            provider=self.provider,
            model=self._value("#model"),
            host=self._value("#host"),
            replay=self._value("#replay"),
            record=self._value("#record"),
        )
        try:
            loaded: LoadedConfig = await asyncio.to_thread(
                load_config, engine.paths, repo=repo, env=os.environ, cli=overrides
            )
            run = await engine.create_run(
                self._value("#task"),
                repo,
                loaded,
                allow_dirty=self.query_one("#allow-dirty", Checkbox).value,
            )
        except OrchestratorError as exc:
            self._show_errors([form_error(exc)])
            return
        finally:
            self.starting = False
        self._show_errors([])
        self.query_one("#task", Input).value = ""
        app.start_engine_task(run.id, auto_approve=self.query_one("#yes", Checkbox).value)
        app.notify(f"run {run.id} started")
        app.open_run(run.id)

    def action_demo_values(self) -> None:
        """Fill the form with the offline demo: a fresh sample repository and its cassette."""
        self._demo_values()

    @work(group="demo", exclusive=True)
    async def _demo_values(self) -> None:
        from core.demo.prepare import DEMO_TASK, cassette_path, prepare_demo_repo  # git: on use

        repo = await asyncio.to_thread(prepare_demo_repo, self.orchestrator.engine.paths.demo)
        self.query_one("#task", Input).value = DEMO_TASK
        self.query_one("#repo", Input).value = str(repo)
        self.query_one("#provider-replay", RadioButton).value = True
        self.query_one("#replay", Input).value = str(cassette_path())
        self.query_one("#task", Input).focus()

    def palette_commands(self) -> list[SystemCommand]:
        return [
            SystemCommand(
                "Start the run", "Validate the form and start (ctrl+s)", self.action_start
            ),
            SystemCommand(
                "Fill in the offline demo",
                "A fresh sample repository and the demo's cassette (ctrl+o)",
                self.action_demo_values,
            ),
        ]

    def action_back(self) -> None:
        self.orchestrator.switch_mode("runs")
