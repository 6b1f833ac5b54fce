"""The orchestrator's error tree; every error says what went wrong and what to do.

OrchestratorError
├── ConfigError            bad or unknown configuration value (exit code 2)
├── InputError             bad CLI argument, path or repository state (exit code 2)
│   └── RepoError          --repo is not a git repository, or is dirty
├── NotFoundError          a run, phase or intervention id that does not exist (exit code 2)
├── AlreadyAnsweredError   an intervention that was already approved or rejected
├── StateError             the database could not be read or written
│   ├── ReadOnlyHomeError  a writing command on a read-only home or database
│   └── DamagedDatabaseError the database file is malformed; `orchestrator doctor --fix`
├── DiskFullError          no space left (SQLite, git, Chroma or a file write); resume after freeing
├── LLMError               a model call failed
│   ├── LLMRetriableError  connection, timeout, 429, 5xx, overloaded: worth another try
│   ├── LLMAuthError       the provider refused the API key (401/403), or none was given
│   ├── ModelNotFoundError the model is not present on the provider (not retried)
│   ├── ProviderMismatchError the URL answers, but not as the provider it was told (not retried)
│   ├── PromptTooLargeError the prompt does not fit the model's context window
│   └── ReplayMissError    a replay cassette holds no answer for a request
├── PlanError              the planner's answer was not a valid plan after one repair round
├── EditError              SEARCH/REPLACE blocks that did not apply, or a path outside the worktree
├── GitError               a git operation failed
│   └── MergeConflictError merging a phase branch back conflicted
├── VerificationError      a verification command could not be started
├── UnsafePathError        a path built from an id would resolve outside the home or worktree
└── RunLockedError         another live process holds the run's lease
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Base of every error the orchestrator raises on purpose."""

    exit_code = 1
    retriable = False


class ConfigError(OrchestratorError):
    """A configuration value or key is wrong; the message names file, key path, expected and given."""

    exit_code = 2


class InputError(OrchestratorError):
    """A CLI argument, path or repository state the user must fix."""

    exit_code = 2


class RepoError(InputError):
    """The --repo path is not a git repository, has no commit, or has uncommitted changes."""


class NotFoundError(OrchestratorError):
    """An id that names nothing in the database."""

    exit_code = 2


class AlreadyAnsweredError(OrchestratorError):
    """An intervention that has already been approved or rejected."""

    exit_code = 1


class StateError(OrchestratorError):
    """The state database could not be opened, migrated, read or written."""


class ReadOnlyHomeError(StateError):
    """A command that writes was started on a read-only home or database; read commands still work."""


class DamagedDatabaseError(StateError):
    """The database file is malformed (truncated, garbage header); `orchestrator doctor --fix` recovers it."""


class DiskFullError(OrchestratorError):
    """The disk holding the home or repository is full; the message names it and says to resume."""

    exit_code = 1


class LLMError(OrchestratorError):
    """A model call failed for good."""


class LLMRetriableError(LLMError):
    """A model call failed in a way that may pass on another try (connection, timeout, 429, 5xx)."""

    retriable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        # Seconds the server asked us to wait (HTTP Retry-After), honoured by the client's backoff.
        self.retry_after = retry_after


class LLMAuthError(LLMError):
    """The provider rejected the credentials, or no API key was found; the message names the variable."""

    exit_code = 2


class PromptTooLargeError(LLMError):
    """The prompt is larger than the model's context window; it is never truncated silently."""


class ModelNotFoundError(LLMError):
    """The configured model does not exist on the provider; the message says how to pull it."""

    exit_code = 2


class ProviderMismatchError(LLMError):
    """The server at the configured URL is not the provider it was told (e.g. the Ollama
    provider pointed at llama.cpp's server); the message names the host and what answered."""

    exit_code = 2


class ReplayMissError(LLMError):
    """A replay cassette has no answer for a request."""


class PlanError(OrchestratorError):
    """The planner could not produce a valid plan; the message quotes what the model said."""


class EditError(OrchestratorError):
    """Edits from an agent that could not be applied inside the worktree."""

    retriable = True


class GitError(OrchestratorError):
    """A git operation failed."""


class MergeConflictError(GitError):
    """Merging a phase branch into the run branch conflicted; `files` lists the paths."""

    def __init__(self, message: str, files: list[str] | None = None) -> None:
        super().__init__(message)
        self.files = files or []


class VerificationError(OrchestratorError):
    """A verification command could not be started at all."""


class RunLockedError(OrchestratorError):
    """Another live process is executing the run (its heartbeat lease has not expired)."""

    exit_code = 1


class UnsafePathError(OrchestratorError):
    """A path built from an id (a run's, a phase's) would leave the folder it must stay in."""
