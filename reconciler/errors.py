"""One error hierarchy for the whole tool.

The core raises these and never prints; only ``cli.py`` turns them into a one-line message and the
exit code carried by the class. Do not raise bare ``Exception`` subclasses from the core: the CLI
treats anything outside this hierarchy as an internal error.
"""

from __future__ import annotations


class ReconcilerError(Exception):
    """Root of every expected failure. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ManifestError(ReconcilerError):
    """A manifest could not be read or is invalid.

    ``problems`` holds every finding as a ready one-line message (``file:line:col: field: why``);
    ``str()`` joins them with newlines so each stays on its own line.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class StoreError(ReconcilerError):
    """The model store (folder or engine) cannot be read as asked: missing folder, bad path."""


class EngineError(StoreError):
    """The Aspose engine could not be imported, configured or queried."""


class ConfigError(ReconcilerError):
    """Settings that are individually valid but unsafe together (e.g. a backup dir inside the store)."""


class CannotConvergeError(ReconcilerError):
    """Declared models are absent (or differ from their pin): applying cannot reach the manifest."""

    exit_code = 3


class GuardError(ReconcilerError):
    """A plan breaks a deletion guard (max_delete, max_delete_bytes, empty manifest, whole store)."""

    exit_code = 4


class PlanFileError(ReconcilerError):
    """A saved plan or snapshot file is unreadable, corrupt, hand-edited or of an unknown version."""


class StalePlanError(ReconcilerError):
    """The store or the manifest changed since a saved plan was made; ``differences`` names each."""

    exit_code = 5

    def __init__(self, differences: list[str]) -> None:
        self.differences = list(differences)
        super().__init__("\n".join(["saved plan is stale; nothing was changed:", *self.differences]))


class UsageError(ReconcilerError):
    """Options that do not go together, or an argument that cannot be used."""


class LockedError(ReconcilerError):
    """Another apply/restore/recover holds the store's lock."""

    exit_code = 6


class ConfirmationRefused(ReconcilerError):
    """The user said no, or there is no terminal to ask and ``--yes`` was not given."""


class ApplyError(ReconcilerError):
    """A move to or from the backup failed part-way; the message says which files moved."""


class BackupError(ReconcilerError):
    """A backup run is unknown, unreadable, or cannot be restored as asked."""
