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

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below are imported on first use (PEP 562): `ocr-reconcile --version` imports none of them
    from .api import Held, Session, manifest_of, open_session, plan_fleet
    from .apply import ApplyResult
    from .catalogue import BackupRun, Entry
    from .errors import (
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
    from .install import InstallResult
    from .journal import Pending
    from .manifest import Manifest, load_manifest
    from .plan import Action, Change, FleetPlan, Guard, Guards, Plan, Summary, Violation
    from .planfile import SavedPlan, Snapshot, fleet_doc, load_plan, load_snapshot, plan_doc, save_plan, save_snapshot
    from .recovery import Abandoned, Recovery
    from .restore import RestorePlan, RestoreResult
    from .scan import FileFacts, StoreScan
    from .sources import SourceSettings

_WHERE = {
    "Abandoned": "recovery",
    "Action": "plan",
    "ApplyError": "errors",
    "ApplyResult": "apply",
    "BackupError": "errors",
    "BackupRun": "catalogue",
    "CannotConvergeError": "errors",
    "Change": "plan",
    "ConfigError": "errors",
    "ConfirmationRefused": "errors",
    "EngineError": "errors",
    "Entry": "catalogue",
    "ExitCode": "errors",
    "FileFacts": "scan",
    "FleetPlan": "plan",
    "Guard": "plan",
    "GuardError": "errors",
    "InstallError": "errors",
    "InstallResult": "install",
    "Guards": "plan",
    "Held": "api",
    "JournalError": "errors",
    "LockedError": "errors",
    "Manifest": "manifest",
    "ManifestError": "errors",
    "Pending": "journal",
    "PendingRunError": "errors",
    "Plan": "plan",
    "PlanFileError": "errors",
    "ReconcilerError": "errors",
    "Recovery": "recovery",
    "RelativeStoreError": "errors",
    "RestoreConflictError": "errors",
    "RestorePlan": "restore",
    "RestoreResult": "restore",
    "SavedPlan": "planfile",
    "Session": "api",
    "Snapshot": "planfile",
    "StalePlanError": "errors",
    "StoreError": "errors",
    "StoreNotFound": "errors",
    "StoreScan": "scan",
    "SourceSettings": "sources",
    "Summary": "plan",
    "UnknownRunError": "errors",
    "UsageError": "errors",
    "Violation": "plan",
    "fleet_doc": "planfile",
    "load_manifest": "manifest",
    "load_plan": "planfile",
    "load_snapshot": "planfile",
    "manifest_of": "api",
    "open_session": "api",
    "plan_doc": "planfile",
    "plan_fleet": "api",
    "save_plan": "planfile",
    "save_snapshot": "planfile",
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
