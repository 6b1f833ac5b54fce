"""The orchestrator's error tree; every error says what went wrong and what to do.

Each class carries `exit_code` (what the CLI exits with), `retriable` (another try of the same
step may pass) and `resumable` (`orchestrator resume ID` can help once the cause is fixed); a run
ended by an error stores its text and these facts, and `core.final_word` turns them into the last
thing a user reads.

OrchestratorError                  exit retriable resumable
├── ConfigError                      2     no       no     bad or unknown configuration value
├── InputError                       2     no       no     bad CLI argument, path or repository state
│   └── RepoError                    2     no       no     --repo is not a git repository, or is dirty
├── NotFoundError                    2     no       no     a run, phase or intervention id that does not exist
├── AlreadyAnsweredError             1     no       no     an intervention that was already approved or rejected
│   └── WithdrawnError               1     no       no     an intervention withdrawn because its run ended
├── StateError                       1     no      yes     the database could not be read or written
│   ├── DiskFullError                1     no      yes     no space left (ENOSPC, SQLITE_FULL); names the path
│   ├── ReadOnlyHomeError            1     no       no     a writing command on a read-only home or database
│   └── DamagedDatabaseError         1     no       no     the database file is malformed; `orchestrator doctor --fix`
├── LLMError                         1     no      yes     a model call failed
│   ├── LLMRetriableError            1    yes      yes     connection, timeout, 429, 5xx, overloaded
│   ├── LLMAuthError                 2     no      yes     the provider refused the API key (401/403), or none was given
│   ├── ModelNotFoundError           2     no      yes     the model is not present on the provider (not retried)
│   ├── ProviderMismatchError        2     no      yes     the URL answers, but not as the provider it was told
│   ├── PromptTooLargeError          1     no       no     the prompt does not fit the model's context window
│   ├── ReplayMissError              1     no       no     a replay cassette holds no answer for a request
│   └── LLMCallStoppedError          1     no      yes     replayed: the recorded call was stopped before it answered
├── PlanError                        1     no       no     the planner's answer was not a valid plan after one repair round
│   └── PlanValidationError          1     no       no     one answer that is not a usable plan (sent back to the model)
├── EditError                        1    yes      yes     SEARCH/REPLACE blocks that did not apply, or a path outside the worktree
├── GitError                         1     no      yes     a git operation failed
│   ├── MergeConflictError           1     no      yes     merging a phase branch back conflicted
│   └── PushError                    1     no      yes     the origin refused the run branch (access, hook)
├── VerificationError                1     no      yes     a verification command could not be started
├── ArtifactStoreError               1     no      yes     the artifacts folder or bucket (artifacts.url) cannot be used
├── UnsafePathError                  1     no       no     a path built from an id would leave the home or worktree
├── RunLockedError                   1     no       no     another live process holds the run's lease
│   └── LeaseLostError               1     no       no     this process's lease was taken over (stale fencing token)
├── TransitionError                  1     no       no     an illegal status change (a bug in the orchestrator)
├── ForeignError                     1     no      yes     any other exception during a run (rag, verify, a plugin, the OS)
└── RunStop                                                control flow: the run stops on purpose
    ├── RunCancelled                 1     no       no     cancelled by the user (from this or another process)
    ├── RunAborted                   1     no       no     policy `abort`, or a rejected decision that fails the run
    ├── BudgetStopped                1     no       no     a budget was reached and the person chose to stop
    └── NeedsInputError              1     no      yes     `--yes` met a question only a person can answer

How a run ends (core.lifecycle.Lifecycle.end_run):
    RunCancelled                          -> cancelled
    DiskFullError, NeedsInputError,
    PushError, ArtifactStoreError,
    asyncio.CancelledError (signal)       -> interrupted  (pending questions stay answerable)
    any other error                       -> failed

Errors of the libraries core uses are mapped in ONE place, core.error_map.as_orchestrator_error:
    rag.errors.NotARepositoryError        -> InputError
    rag.errors.RagError (others)          -> ForeignError ("index: ...")
    OSError ENOSPC, sqlite "disk is full" -> DiskFullError
    git.GitCommandError                   -> GitError
    any other Exception (verify, plugins,
    the OS, bugs)                         -> ForeignError ("<Type>: <message>")
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Base of every error the orchestrator raises on purpose."""

    exit_code = 1
    retriable = False
    resumable = False


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


class WithdrawnError(AlreadyAnsweredError):
    """An intervention withdrawn because its run ended (cancelled, failed or completed)."""


class StateError(OrchestratorError):
    """The state database could not be opened, migrated, read or written."""

    resumable = True


class DiskFullError(StateError):
    """No space left on a device (ENOSPC, SQLite's "disk is full"); `path` names where."""

    def __init__(self, message: str, *, path: str | None = None, hinted: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.hinted = hinted  # the message already says where to free space and what to run next


class ReadOnlyHomeError(StateError):
    """A command that writes was started on a read-only home or database; read commands still work."""

    resumable = False


class DamagedDatabaseError(StateError):
    """The database file is malformed (truncated, garbage header); `orchestrator doctor --fix` recovers it."""

    resumable = False


class LLMError(OrchestratorError):
    """A model call failed for good."""

    resumable = True


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

    resumable = False


class ModelNotFoundError(LLMError):
    """The configured model does not exist on the provider; the message says how to pull it."""

    exit_code = 2


class ProviderMismatchError(LLMError):
    """The server at the configured URL is not the provider it was told (e.g. the Ollama
    provider pointed at llama.cpp's server); the message names the host and what answered."""

    exit_code = 2


class ReplayMissError(LLMError):
    """A replay cassette has no answer for a request."""

    resumable = False


class LLMCallStoppedError(LLMError):
    """A recorded model call was stopped before the provider answered (the run was cancelled,
    interrupted or timed out there); replaying its cassette raises this at the same call."""


class PlanError(OrchestratorError):
    """The planner could not produce a valid plan; the message quotes what the model said."""


class PlanValidationError(PlanError):
    """A planner answer that is not a usable plan; the message is sent back to the model."""


class EditError(OrchestratorError):
    """Edits from an agent that could not be applied inside the worktree."""

    retriable = True
    resumable = True


class GitError(OrchestratorError):
    """A git operation failed."""

    resumable = True


class MergeConflictError(GitError):
    """Merging a phase branch into the run branch conflicted; `files` lists the paths."""

    def __init__(self, message: str, files: list[str] | None = None) -> None:
        super().__init__(message)
        self.files = files or []


class PushError(GitError):
    """The origin refused the run branch after a phase commit; the phase is not recorded as done."""


class VerificationError(OrchestratorError):
    """A verification command could not be started at all."""

    resumable = True


class ArtifactStoreError(OrchestratorError):
    """The folder or S3 bucket of `artifacts.url` cannot be read or written; names it without secrets."""

    resumable = True


class RunLockedError(OrchestratorError):
    """Another live process is executing the run (its heartbeat lease has not expired)."""

    exit_code = 1


class LeaseLostError(RunLockedError):
    """A write of a run by a process whose lease was taken over (its fencing token is stale):
    refused, and that process stops driving the run without writing anything more for it."""


class UnsafePathError(OrchestratorError):
    """A path built from an id (a run's, a phase's) would leave the folder it must stay in."""


class TransitionError(OrchestratorError):
    """A status change the lifecycle's transition table does not allow; `current` is the status
    the row had (an answer to a question that is no longer pending is mapped to a user error)."""

    def __init__(self, message: str, *, current: str | None = None) -> None:
        super().__init__(message)
        self.current = current


class ForeignError(OrchestratorError):
    """An exception from outside the orchestrator's own code (rag, verify, a plugin, the OS)."""

    resumable = True


class RunStop(OrchestratorError):
    """Control flow: the run stops on purpose (cancel, abort, budget, a question for a person)."""


class RunCancelled(RunStop):
    """The run was cancelled (from this process or another one)."""

    def __init__(self, message: str = "cancelled by the user") -> None:
        super().__init__(message)


class RunAborted(RunStop):
    """The run must stop as failed (policy `abort`, or a rejected decision that fails the run)."""


class BudgetStopped(RunStop):
    """A budget was reached and the person chose to stop the run."""


class NeedsInputError(RunStop):
    """`--yes` met an intervention that needs a person's input; the run stops and can be resumed."""

    resumable = True
