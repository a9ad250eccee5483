"""ocr-reconcile: make an Aspose OCR AI model folder match a declared manifest.

The library API (the CLI and the Ansible modules are thin clients of it)::

    from reconciler import open_session

    with open_session(manifest="manifests/example.yaml", store="/srv/models") as session:
        plan = session.plan()                 # scan (read-only) + diff: a frozen Plan
        print(plan.summary, plan.violations)
        with session.lock() as held:          # the store lock; an interrupted run is recovered first
            result = session.apply(session.plan(), held)
        print(result.run_id, [m.name for m in result.moved])

Stages: load (``manifest``) → scan (``scan``, read-only, through ``stores``) → plan (``plan``, pure)
→ apply (``apply``, ``restore``, ``recovery`` over ``transfer`` and ``moves``, the only mutators) → release (the session's ``finally``).
Everything a caller needs is exported here; other modules are internal and may change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base.version import __version__

if TYPE_CHECKING:  # the names below are imported on first use (PEP 562): `ocr-reconcile --version` imports none of them
    from .api.apply import ApplyResult
    from .api.install import InstallResult
    from .api.restore import RestorePlan, RestoreResult
    from .api.session import Held, Session, manifest_of, open_session, plan_fleet
    from .base.errors import (
        ApplyError,
        BackupError,
        CannotConvergeError,
        ConfigError,
        ConfirmationRefused,
        EngineError,
        ExitCode,
        GuardError,
        InstallError,
        JournalError,
        LockedError,
        ManifestError,
        PendingRunError,
        PlanFileError,
        ReconcilerError,
        RelativeStoreError,
        RestoreConflictError,
        StalePlanError,
        StoreError,
        StoreNotFound,
        UnknownRunError,
        UsageError,
    )
    from .decide.plan import Action, Change, FleetPlan, Guard, Guards, Plan, Summary, Violation
    from .decide.planfile import SavedPlan, Snapshot, fleet_doc, load_plan, load_snapshot, plan_doc, save_plan, save_snapshot
    from .disk.catalogue import BackupRun, Entry
    from .disk.journal import Pending
    from .disk.recovery import Abandoned, Recovery
    from .read.manifest import Manifest, load_manifest
    from .read.scan import FileFacts, StoreScan
    from .read.sources import SourceSettings

_WHERE = {
    "Abandoned": "disk.recovery",
    "Action": "decide.plan",
    "ApplyError": "base.errors",
    "ApplyResult": "api.apply",
    "BackupError": "base.errors",
    "BackupRun": "disk.catalogue",
    "CannotConvergeError": "base.errors",
    "Change": "decide.plan",
    "ConfigError": "base.errors",
    "ConfirmationRefused": "base.errors",
    "EngineError": "base.errors",
    "Entry": "disk.catalogue",
    "ExitCode": "base.errors",
    "FileFacts": "read.scan",
    "FleetPlan": "decide.plan",
    "Guard": "decide.plan",
    "GuardError": "base.errors",
    "InstallError": "base.errors",
    "InstallResult": "api.install",
    "Guards": "decide.plan",
    "Held": "api.session",
    "JournalError": "base.errors",
    "LockedError": "base.errors",
    "Manifest": "read.manifest",
    "ManifestError": "base.errors",
    "Pending": "disk.journal",
    "PendingRunError": "base.errors",
    "Plan": "decide.plan",
    "PlanFileError": "base.errors",
    "ReconcilerError": "base.errors",
    "Recovery": "disk.recovery",
    "RelativeStoreError": "base.errors",
    "RestoreConflictError": "base.errors",
    "RestorePlan": "api.restore",
    "RestoreResult": "api.restore",
    "SavedPlan": "decide.planfile",
    "Session": "api.session",
    "Snapshot": "decide.planfile",
    "StalePlanError": "base.errors",
    "StoreError": "base.errors",
    "StoreNotFound": "base.errors",
    "StoreScan": "read.scan",
    "SourceSettings": "read.sources",
    "Summary": "decide.plan",
    "UnknownRunError": "base.errors",
    "UsageError": "base.errors",
    "Violation": "decide.plan",
    "fleet_doc": "decide.planfile",
    "load_manifest": "read.manifest",
    "load_plan": "decide.planfile",
    "load_snapshot": "decide.planfile",
    "manifest_of": "api.session",
    "open_session": "api.session",
    "plan_doc": "decide.planfile",
    "plan_fleet": "api.session",
    "save_plan": "decide.planfile",
    "save_snapshot": "decide.planfile",
}


def __getattr__(name: str) -> Any:
    """Import an exported name from its module on first use (and keep it)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'reconciler' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "Abandoned",
    "Action",
    "ApplyError",
    "ApplyResult",
    "BackupError",
    "BackupRun",
    "CannotConvergeError",
    "Change",
    "ConfigError",
    "ConfirmationRefused",
    "EngineError",
    "Entry",
    "ExitCode",
    "FileFacts",
    "FleetPlan",
    "Guard",
    "GuardError",
    "Guards",
    "Held",
    "InstallError",
    "InstallResult",
    "JournalError",
    "LockedError",
    "Manifest",
    "ManifestError",
    "Pending",
    "PendingRunError",
    "Plan",
    "PlanFileError",
    "ReconcilerError",
    "Recovery",
    "RelativeStoreError",
    "RestoreConflictError",
    "RestorePlan",
    "RestoreResult",
    "SavedPlan",
    "Session",
    "Snapshot",
    "SourceSettings",
    "StalePlanError",
    "StoreError",
    "StoreNotFound",
    "StoreScan",
    "Summary",
    "UnknownRunError",
    "UsageError",
    "Violation",
    "__version__",
    "fleet_doc",
    "load_manifest",
    "load_plan",
    "load_snapshot",
    "manifest_of",
    "open_session",
    "plan_doc",
    "plan_fleet",
    "save_plan",
    "save_snapshot",
]
