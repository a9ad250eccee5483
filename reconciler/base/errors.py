"""One error hierarchy for the whole tool, and the one table of exit codes.

The core raises these and never prints. Each class carries structured data (the names, paths and
numbers a front end needs), a stable machine-readable ``reason`` (what the Ansible module returns)
and the :class:`ExitCode` the CLI exits with. Messages describe the problem only: they never name
a command-line flag or a module option; front ends add their own hint (``cli.py``). Do not raise
exceptions outside this hierarchy from the core: front ends treat them as internal errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import ClassVar


class Guard(str, Enum):
    """Which guard a :class:`Violation` breaks (stable names, for machines and front-end hints)."""

    MAX_DELETE = "max_delete"
    MAX_DELETE_BYTES = "max_delete_bytes"
    EMPTY_MANIFEST = "empty_manifest"
    WHOLE_STORE = "whole_store"
    MAX_INSTALL_BYTES = "max_install_bytes"
    FREE_SPACE = "free_space"

    @property
    def lifted_by_allow_empty(self) -> bool:
        return self in (Guard.EMPTY_MANIFEST, Guard.WHOLE_STORE)


@dataclass(frozen=True)
class Violation:
    """One broken guard. ``message`` says what would happen; it names no flag (front ends add how to
    lift it, from ``guard``)."""

    guard: Guard
    message: str

    def __str__(self) -> str:
        return self.message


class ExitCode(IntEnum):
    """Every exit code of ``ocr-reconcile``, pinned in tests. Usage errors exit 1, so 2 only ever
    means "changes pending"."""

    OK = 0
    ERROR = 1
    CHANGES = 2  # changes pending (plan, check) or left pending (apply skipped files)
    CANNOT_CONVERGE = 3  # declared models missing or differing from their pin
    GUARD = 4  # a deletion guard refused the plan
    STALE_PLAN = 5  # the store or manifest changed since the saved plan was made
    LOCKED = 6  # another run holds the store lock
    INTERRUPTED = 130  # Ctrl-C


class ReconcilerError(Exception):
    """Root of every expected failure."""

    exit_code: ClassVar[ExitCode] = ExitCode.ERROR
    reason: ClassVar[str] = "error"


class ManifestError(ReconcilerError):
    """A manifest could not be read or is invalid.

    ``problems`` holds every finding as a ready one-line message (``file:line:col: field: why``);
    ``str()`` joins them with newlines so each stays on its own line.
    """

    reason = "bad_manifest"

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class StoreError(ReconcilerError):
    """The model store (folder or engine) cannot be read as asked."""

    reason = "store"


class StoreNotFound(StoreError):
    """The store folder does not exist. ``for_restore`` says a restore target was meant."""

    reason = "store_not_found"

    def __init__(self, path: str, for_restore: bool = False) -> None:
        self.path = path
        self.for_restore = for_restore
        super().__init__(f"store folder {path} does not exist")


class RelativeStoreError(StoreError):
    """The engine's default model folder is a relative path (no ``$XDG_DATA_HOME``, no
    ``~/.local/share``): it would be a folder under the current directory, so it is refused."""

    reason = "relative_store"

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"the engine's model folder would be the relative path {path!r}: the engine looks in $XDG_DATA_HOME (when it is an "
            "absolute path) or ~/.local/share, then Aspose.AI.LLM/models, and neither folder exists here, so it would use a folder "
            "under the current directory; set store.path in the manifest, or XDG_DATA_HOME"
        )


class EngineError(StoreError):
    """The Aspose engine could not be imported, configured or queried."""

    reason = "engine"


class ConfigError(ReconcilerError):
    """Settings that are individually valid but unsafe together (e.g. a backup dir inside the store)."""

    reason = "config"


class CannotConvergeError(ReconcilerError):
    """Declared models are absent or differ from their pin: applying cannot reach the manifest."""

    exit_code = ExitCode.CANNOT_CONVERGE
    reason = "cannot_converge"

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        super().__init__(f"declared models are missing or differ from their pin: {', '.join(self.names)}; nothing was moved")


class GuardError(ReconcilerError):
    """A plan breaks deletion guards; ``violations`` say which (``Violation.guard``) and how."""

    exit_code = ExitCode.GUARD
    reason = "guard"

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = tuple(violations)
        super().__init__("; ".join(str(v) for v in self.violations) + "; nothing was moved")


class PlanFileError(ReconcilerError):
    """A saved plan or snapshot file is unreadable, corrupt, hand-edited or of an unknown version.
    ``path`` is the file, ``problem`` what is wrong with it."""

    reason = "bad_plan_file"

    def __init__(self, path: str, problem: str) -> None:
        self.path, self.problem = path, problem
        super().__init__(f"{path}: {problem}")


class StalePlanError(ReconcilerError):
    """The store or the manifest changed since a plan was made (a saved plan, a plan made before the
    lock was taken, or a restore plan: ``subject``); ``differences`` names each change."""

    exit_code = ExitCode.STALE_PLAN
    reason = "stale_plan"

    def __init__(self, differences: Sequence[str], subject: str = "saved plan") -> None:
        self.differences, self.subject = tuple(differences), subject
        super().__init__("\n".join([f"{subject} is stale; nothing was changed:", *self.differences]))


class UsageError(ReconcilerError):
    """Arguments that do not go together, or an argument that cannot be used (a lock held for another
    store, a plan made from another manifest)."""

    reason = "usage"


class InstallError(ReconcilerError):
    """A declared model could not be installed from its source (unreachable, a 404, an HTML page, a wrong
    size or sha256, no room): nothing of it entered the store. ``name`` is the model."""

    reason = "install"

    def __init__(self, name: str, problem: str) -> None:
        self.name, self.problem = name, problem
        super().__init__(f"cannot install {name}: {problem}")


class OutputError(ReconcilerError):
    """The output itself could not be written (a full disk, an I/O error); a reader that went away is
    not one (that is silence)."""

    reason = "output"


class LockedError(ReconcilerError):
    """Another apply/restore/recover holds the store's lock. ``holder`` is what the lock file says
    (``pid``, ``command``, ``since``; empty when unreadable), ``waited`` the seconds waited."""

    exit_code = ExitCode.LOCKED
    reason = "locked"

    def __init__(self, store: str, holder: dict[str, object], waited: float) -> None:
        self.store, self.holder, self.waited = store, dict(holder), waited
        who = "another process"
        if "pid" in holder:
            who = f"PID {holder['pid']} ({holder.get('command', '?')}) since {holder.get('since', '?')}"
        super().__init__(f"store {store} locked by {who}" + (f" (waited {waited:g} s)" if waited else ""))


class ConfirmationRefused(ReconcilerError):
    """The user said no, or there is no one to ask."""

    reason = "not_confirmed"


class ApplyError(ReconcilerError):
    """A move to or from the backup failed part-way; the message says which files moved."""

    reason = "apply_failed"


class PendingRunError(ApplyError):
    """An interrupted run's journal is still there: it must be recovered before a new run starts."""

    reason = "interrupted_run"

    def __init__(self, journal: str) -> None:
        self.journal = journal
        super().__init__(f"an interrupted run's journal {journal} exists; nothing was moved")


class JournalError(ApplyError):
    """An interrupted run's journal cannot be acted on (unreadable, not a file, another store's, or
    inconsistent with the backup folder). It is left in place; abandoning the run is the way out."""

    reason = "unreadable_journal"

    def __init__(self, journal: str, problem: str) -> None:
        self.journal = journal
        self.problem = problem
        super().__init__(f"the journal {journal} {problem}; it was left in place and nothing was moved")


class BackupError(ReconcilerError):
    """A backup run is unknown, unreadable, or cannot be restored as asked. ``run_id`` and ``names``
    say which run and which of its entries, when known."""

    reason = "backup"

    def __init__(self, message: str, run_id: str | None = None, names: Sequence[str] = ()) -> None:
        self.run_id, self.names = run_id, tuple(names)
        super().__init__(message)


class UnknownRunError(BackupError):
    """No backup run has this id (or prefix), or the prefix names several."""

    reason = "unknown_run"

    def __init__(self, run_id: str, backup_root: str, candidates: Sequence[str] = ()) -> None:
        self.backup_root, self.candidates = backup_root, tuple(candidates)
        if self.candidates:
            super().__init__(f"backup run id {run_id!r} is ambiguous: {', '.join(self.candidates)}", run_id)
        else:
            super().__init__(f"no backup run {run_id!r} in {backup_root}", run_id)


class RestoreConflictError(BackupError):
    """Different files sit where a restore would put its files back. ``unmovable``: some are folders or
    special files, which even a forced restore never moves out of the way."""

    reason = "restore_conflict"

    def __init__(self, run_id: str, conflicts: Sequence[str], unmovable: bool = False) -> None:
        self.conflicts, self.unmovable = tuple(conflicts), unmovable
        what = "a folder or special file, which is never moved," if unmovable else "a different file"
        super().__init__(f"{what} is in the store at {', '.join(self.conflicts)}; nothing was restored", run_id, conflicts)
