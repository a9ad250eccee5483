"""The public API of ocr-reconcile, written once: ``__init__.py`` loads each name from here on first use
(lazy_loader.attach_stub), and type checkers read it as the package's types. Add an export here only."""

from .api.apply import ApplyResult as ApplyResult
from .api.freshness import manifest_of as manifest_of, plan_fleet as plan_fleet
from .api.install import InstallResult as InstallResult
from .api.outcomes import Converged as Converged, Held as Held, Proposal as Proposal
from .api.restore import RestorePlan as RestorePlan, RestoreResult as RestoreResult
from .api.session import Session as Session, open_session as open_session
from .base.errors import (
    ApplyError as ApplyError,
    BackupError as BackupError,
    CannotConvergeError as CannotConvergeError,
    ConfigError as ConfigError,
    ConfirmationRefused as ConfirmationRefused,
    EngineError as EngineError,
    ExitCode as ExitCode,
    Guard as Guard,
    GuardError as GuardError,
    InstallError as InstallError,
    JournalError as JournalError,
    LockedError as LockedError,
    ManifestError as ManifestError,
    PendingRunError as PendingRunError,
    PlanFileError as PlanFileError,
    ReconcilerError as ReconcilerError,
    RelativeStoreError as RelativeStoreError,
    RestoreConflictError as RestoreConflictError,
    StalePlanError as StalePlanError,
    StoreError as StoreError,
    StoreNotFound as StoreNotFound,
    UnknownRunError as UnknownRunError,
    UsageError as UsageError,
    Violation as Violation,
)
from .base.version import __version__ as __version__
from .decide.plan import (
    Action as Action,
    Change as Change,
    FleetPlan as FleetPlan,
    Guards as Guards,
    Plan as Plan,
    Summary as Summary,
)
from .decide.planfile import (
    SavedPlan as SavedPlan,
    Snapshot as Snapshot,
    fleet_doc as fleet_doc,
    load_plan as load_plan,
    load_snapshot as load_snapshot,
    plan_doc as plan_doc,
    save_plan as save_plan,
    save_snapshot as save_snapshot,
)
from .disk.catalogue import BackupRun as BackupRun, Entry as Entry
from .disk.journal import Pending as Pending
from .disk.recovery import Abandoned as Abandoned, Recovery as Recovery
from .read.manifest import Manifest as Manifest, load_manifest as load_manifest, parse_manifest as parse_manifest
from .read.scan import FileFacts as FileFacts, StoreScan as StoreScan
from .read.sources import SourceSettings as SourceSettings
from .render.plans import safe as safe
from .render.report import (
    converged_report as converged_report,
    plan_diff as plan_diff,
    plan_report as plan_report,
    proposal_report as proposal_report,
    recovery_report as recovery_report,
)

__all__: list[str]  # made at import time from the imports above (lazy_loader)
