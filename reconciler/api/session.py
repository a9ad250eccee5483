"""The library API: one :class:`Session` per store, opened with :func:`open_session`.

Every front end (the CLI, the Ansible modules) goes through this module and holds no workflow of its
own: a session opens the store once (the engine only when a scan needs it), always frees it on exit,
and every mutating call runs under the store lock, taking it itself unless the caller passes the
:class:`Held` lock it already took with :meth:`Session.lock`. Errors are :mod:`~.errors` classes
carrying structured data; nothing here prints or names a command-line flag.

Example (``reconciler/__init__.py`` has a longer one)::

    with open_session(manifest="manifests/example.yaml", store="/srv/models") as session:
        result = session.apply(session.plan())    # locks, re-checks the plan against the store, moves
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..base.errors import BackupError, ManifestError, RelativeStoreError, StalePlanError, StoreNotFound, UsageError
from ..base.layout import check_backup_root, default_backup_root
from ..base.progress import Progress
from ..decide.plan import FleetPlan, Guards, Plan, guards_for, make_plan, refuse_unapplicable
from ..decide.planfile import SavedPlan, Snapshot, fingerprint_differences, iso_time, load_snapshot
from ..disk.catalogue import BackupRun, Status, StoreId, find_run, list_runs, open_backup_root
from ..disk.journal import Pending, StoreLock, pending_run, store_lock
from ..disk.retention import Retention, deletable, delete_runs, surplus_runs
from ..read.hashcache import HashCache
from ..read.manifest import Manifest, ManifestRef, load_manifest
from ..read.scan import Everything, StoreScan, mutable_root, resolve_root, scan_store
from ..read.stores import ModelStore, engine_default_path, open_store

if TYPE_CHECKING:  # the mutation modules are imported by the calls that mutate, so reading stays light
    from ..disk.recovery import Abandoned, Recovery
    from .apply import ApplyResult
    from .restore import RestorePlan, RestoreResult


@dataclass(frozen=True)
class Held:
    """The store lock, held for a ``with session.lock():`` block, and what recovery did on taking it."""

    lock: StoreLock
    recovery: Recovery | None


class Session:
    """One store (and optionally one manifest) for the length of a ``with`` block. Make it with
    :func:`open_session`; do not keep it past the block (the engine is freed when it ends)."""

    def __init__(
        self,
        stack: ExitStack,
        manifest: Manifest | None,
        store: Path | None,
        backend: str | None,
        license_file: Path | None,
        backup_dir: Path | None,
        lock_timeout: float,
        saved: SavedPlan | None = None,
        hash_cache: bool | str = True,
        progress: Progress | None = None,
    ) -> None:
        self._stack = stack
        self.saved = saved
        self.hash_cache = hash_cache
        self.progress = progress
        self.manifest = manifest
        self._store_path = store
        self._backend_given = backend
        self._backend = backend or (manifest.backend if manifest else "auto")
        self._license = license_file
        self._backup_dir = backup_dir
        self.lock_timeout = lock_timeout
        self._opened: ModelStore | None = None

    # -- reading -------------------------------------------------------------------------------------

    def _configured_path(self) -> Path | None:
        return self._store_path or (self.manifest.store_path if self.manifest else None)

    def _store(self) -> ModelStore:
        if self._opened is None:
            self._opened = self._stack.enter_context(open_store(self._backend, self._configured_path(), self._license))
        return self._opened

    def store_root(self) -> str:
        """The store's real path (a symlinked store resolved once). Needs no engine."""
        return resolve_root(self._given_root())[0]

    def _given_root(self) -> str:
        given = self._opened.get_local_path() if self._opened else os.fspath(self._configured_path() or engine_default_path())
        if self._configured_path() is None and not os.path.isabs(given):
            raise RelativeStoreError(given)
        return given

    def backup_root(self, store_root: str | None = None) -> Path:
        """Where backup runs of ``store_root`` (default: this store, even if it is gone) go; never
        inside the store."""
        try:
            root = store_root or self.store_root()
        except StoreNotFound as exc:
            root = exc.path
        chosen = self._backup_dir or (self.manifest.backup_dir if self.manifest else None) or default_backup_root(root)
        return check_backup_root(root, chosen)

    def _need_manifest(self) -> Manifest:
        if self.manifest is None:
            raise UsageError("this session was opened without a manifest; planning needs one")
        return self.manifest

    def scan(self, hash_all: bool = False) -> StoreScan:
        """Scan the store (read-only), hashing the manifest's pinned models, or every file."""
        self._given_root()  # refuses an engine folder that would be relative to the current directory
        names = Everything() if hash_all else (self.manifest.pinned if self.manifest else ())
        return scan_store(self._store(), names, self._cache(), self.progress)

    def _cache(self) -> HashCache:
        """The store's hash cache (disabled: always re-hash, and never write it)."""
        return HashCache(self.store_root(), enabled=bool(self.hash_cache), writable=self.hash_cache != "read")

    def plan(self, max_delete: int | None = None, allow_empty: bool = False, guards: Guards | None = None) -> Plan:
        """Scan and diff against the manifest. ``guards``, when given, replace the other two. In a
        session opened on a saved plan, the fresh plan :meth:`verify` checked against it."""
        if self.saved is not None:
            return self.verify(self.saved, max_delete=max_delete, allow_empty=allow_empty)
        manifest = self._need_manifest()
        plan = make_plan(manifest, self.scan(), guards or guards_for(manifest, max_delete, allow_empty))
        self.backup_root(plan.scan.root)  # apply would refuse a backup folder inside the store: so does the plan
        return plan

    def snapshot(self, hash_all: bool = False, host: str | None = None) -> Snapshot:
        """The store's inventory for fleet plans (:func:`~.planfile.save_snapshot` writes it)."""
        scan = replace(self.scan(hash_all), host=host or socket.gethostname())
        return Snapshot(scan, iso_time(time.time_ns()), hash_all, "")

    def pending(self, store_root: str | None = None) -> Pending | None:
        """An interrupted run waiting for :meth:`recover` on this store (read-only), or None."""
        return pending_run(store_root or self.store_root())

    def verify(self, saved: SavedPlan, same_backend: bool = True, max_delete: int | None = None, allow_empty: bool = False) -> Plan:
        """Re-plan against the store now and return the fresh plan, or raise StalePlanError naming
        every difference from ``saved`` (store files, manifest, backend, the plan itself). The guards
        come from the current manifest and the caller, never from the file: a hand-edited plan with a
        recomputed checksum cannot lift them."""
        manifest = manifest_of(saved)
        scan = scan_store(self._store(), manifest.pinned, self._cache(), self.progress)
        fresh = make_plan(manifest, scan, guards_for(manifest, max_delete, allow_empty))
        _check_fresh(saved.plan, fresh, same_backend)
        return fresh

    def backups(self) -> list[BackupRun]:
        """This store's backup runs (a backup folder may be shared: other stores' runs are not
        listed), newest first."""
        try:
            root = self.store_root()
        except StoreNotFound as exc:
            root = exc.path
        return list_runs(self.backup_root(root), StoreId.of(root))

    def find_run(self, run_id: str) -> BackupRun:
        """The run ``run_id`` (or a unique prefix of it) in this store's backup folder."""
        return find_run(self.backup_root(), run_id)

    def restore_target(self, run: BackupRun) -> str:
        """Where a restore of ``run`` goes (resolved): the store given to :func:`open_session`, else
        the store the run was made from."""
        return mutable_root(os.fspath(self._store_path) if self._store_path is not None else run.store, for_restore=True)

    def plan_restore(self, run_id: str, names: Sequence[str] = (), force: bool = False) -> RestorePlan:
        """What restoring ``names`` (all when empty) of run ``run_id`` would do. Changes nothing."""
        from .restore import plan_restore

        run = self.find_run(run_id)
        return plan_restore(run, names, force, self.restore_target(run))

    # -- mutating: always under the store lock -------------------------------------------------------

    @contextmanager
    def lock(self, command: str = "apply", store_root: str | None = None) -> Iterator[Held]:
        """Hold the store lock for the block, waiting up to ``lock_timeout``; an interrupted run is
        recovered first (``Held.recovery`` says what it did). In a session opened on a saved plan, the
        plan is checked against the store before the lock file is even created (unless an interrupted
        run is waiting there: it is recovered first, and the plan checked after)."""
        from ..disk.recovery import recover

        root = store_root or mutable_root(self._given_root())
        if self.saved is not None and self.pending(root) is None:
            self.verify(self.saved)  # a stale or foreign saved plan creates no lock file beside its store
        with store_lock(root, self.lock_timeout, command) as lock:
            waiting = self.pending(root) is not None
            yield Held(lock, recover(root, lock, self.backup_root(root)) if waiting else None)

    def recover(self, held: Held | None = None) -> Recovery | None:
        """Finish an interrupted run on this store; None when there was none."""
        if held is not None:
            return held.recovery
        with self.lock("recover") as taken:
            return taken.recovery

    def unfinished(self) -> list[BackupRun]:
        """Runs left in progress with no journal to finish them: :meth:`abandon` makes them restorable."""
        return [] if self.pending() is not None else [r for r in self.backups() if r.status == Status.IN_PROGRESS]

    def abandon(self) -> Abandoned | None:
        """Release the store from an interrupted run whose journal cannot be acted on, moving no
        byte (see :func:`~.recovery.abandon`); None when there was no journal."""
        from ..disk.recovery import abandon

        root = self.store_root()
        with store_lock(root, self.lock_timeout, "abandon") as lock:
            return abandon(root, lock, self.backup_root(root))

    def check_applicable(self, plan: Plan) -> Path:
        """Raise if ``plan`` must not be applied (cannot converge, guards, backup folder); return the
        backup folder it would use. Call it before asking for confirmation."""
        backup_root = self.backup_root(plan.scan.root)
        refuse_unapplicable(plan, backup_root)
        return backup_root

    def _manifest_for(self, plan: Plan) -> Manifest:
        """The manifest ``plan`` was made from: the session's (UsageError if it is another one), or,
        for a session opened without one, the plan's own file (StalePlanError if edited since)."""
        if self.manifest is None:
            self.manifest = _load_unchanged(plan.manifest)
            if self._backend_given is None and self._opened is None:
                self._backend = self.manifest.backend
        elif self.manifest.sha256 != plan.manifest.sha256:
            raise UsageError(
                f"the plan was made from manifest {plan.manifest.path} (sha256 {plan.manifest.sha256[:12]}…), "
                f"not from this session's {self.manifest.source} (sha256 {self.manifest.sha256[:12]}…)"
            )
        return self.manifest

    def apply(self, plan: Plan, held: Held | None = None) -> ApplyResult:
        """Move the plan's unmanaged files to a new backup run. Without ``held``, takes the lock,
        re-plans, and applies the fresh plan only if it equals ``plan`` (StalePlanError if not): so a
        plan read back from a file, or made before the lock was taken, can be passed safely."""
        from .apply import apply_plan

        manifest = self._manifest_for(plan)
        keep = self.retention()
        if held is None:
            if self.pending() is None:  # checked before the lock, so that a plan for another store creates no lock file there
                _check_fresh(plan, make_plan(manifest, self.scan(), plan.guards), same_backend=True, subject="plan")
            with self.lock() as taken:
                fresh = make_plan(manifest, self.scan(), plan.guards)
                _check_fresh(plan, fresh, same_backend=True, subject="plan")
                return apply_plan(fresh, self.check_applicable(fresh), keep, taken.lock, None, self.progress, manifest)
        if not plan.scan.live:
            raise UsageError("this plan was read from a document; apply the fresh plan Session.plan() or verify() returns")
        return apply_plan(plan, self.check_applicable(plan), keep, held.lock, None, self.progress, manifest)

    def retention(self) -> Retention:
        """The manifest's backup retention (``backup.keep``, ``backup.max_age``)."""
        manifest = self._need_manifest()
        return Retention(manifest.backup_keep, manifest.backup_max_age_s)

    def would_prune(self, plan: Plan) -> list[BackupRun]:
        """The old runs an apply of ``plan`` would delete afterwards (none when it moves nothing):
        shown in the plan and the prompt, since those deletions are what frees space. Read-only."""
        retention = self.retention()
        if not plan.has_changes or not retention.active:
            return []
        root = plan.scan.root
        return surplus_runs(self.backup_root(root), StoreId.of(root), retention, time.time_ns(), coming=1)

    def plan_prune(self, retention: Retention) -> list[BackupRun]:
        """The runs ``retention`` would delete now (``backups prune``'s dry run). Read-only."""
        if not retention.active:
            raise UsageError("a prune needs a number of runs to keep or a maximum age")
        root = self.store_root()
        return surplus_runs(self.backup_root(root), StoreId.of(root), retention, time.time_ns())

    def find_runs(self, run_ids: Sequence[str]) -> list[BackupRun]:
        """The runs named (unique prefixes allowed), each checked deletable; BackupError otherwise."""
        runs = [self.find_run(r) for r in dict.fromkeys(run_ids)]
        for run in runs:
            why = deletable(run)
            if why:
                raise BackupError(f"run {run.run_id} cannot be deleted: {why}", run.run_id)
        return runs

    def delete_runs(self, runs: Sequence[BackupRun], held: Held | None = None) -> tuple[str, ...]:
        """Delete ``runs`` under the store lock (each only as far as the tool made it). The runs are
        looked up again under the lock; one that changed or vanished meanwhile is StalePlanError."""
        if held is None:
            with self.lock("backups delete") as taken:
                return self.delete_runs(runs, taken)
        fresh = self.find_runs([r.run_id for r in runs])
        if fresh != list(runs):
            raise StalePlanError(["the backup runs changed since they were listed"], "deletion")
        with open_backup_root(self.backup_root()) as backup:
            return delete_runs(backup, fresh)

    def restore(self, plan: RestorePlan, held: Held | None = None) -> RestoreResult:
        """Carry out a restore plan. Without ``held``, takes the lock for the plan's store and plans
        the restore again under it: if recovery had to run first, or the store or the run changed,
        the plan is stale (StalePlanError) and nothing is restored."""
        from .restore import plan_restore, restore

        if held is not None:
            return restore(plan, held.lock, self.progress)
        with self.lock("restore", plan.store) as taken:
            if taken.recovery is not None:
                raise StalePlanError(["an interrupted run was recovered first; plan the restore again"], "restore plan")
            run = find_run(plan.run.path.parent, plan.run.run_id)
            fresh = plan_restore(run, plan.names, plan.force, plan.store, plan.displaced_run_id)
            if not fresh.same_as(plan):
                raise StalePlanError(["the store or the backup run changed since the restore was planned"], "restore plan")
            return restore(fresh, taken.lock, self.progress)


@contextmanager
def open_session(
    manifest: Manifest | str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    backend: str | None = None,
    license_file: str | os.PathLike[str] | None = None,
    backup_dir: str | os.PathLike[str] | None = None,
    lock_timeout: float = 0.0,
    saved: SavedPlan | None = None,
    hash_cache: bool | str = True,  # "read": used, never written (a check that must change nothing)
    progress: Progress | None = None,
) -> Iterator[Session]:
    """Open a session on a store. ``manifest`` (a path or a loaded :class:`Manifest`) supplies the
    store path, backend and backup settings that the other arguments do not override. The engine,
    if one is opened, is freed when the block ends, on every exit path.

    With ``saved`` (a plan read by :func:`~.planfile.load_plan`), the session is that plan's: its
    manifest (StalePlanError if edited since), store and backend (``backend`` may override it, to
    check a plan without the engine); :meth:`Session.plan` returns the verified fresh plan."""
    if saved is not None:
        if manifest is not None or store is not None:
            raise UsageError("a saved plan names its own manifest and store")
        manifest, store, backend = manifest_of(saved), saved.plan.scan.root, backend or saved.plan.scan.backend
    loaded = manifest if isinstance(manifest, Manifest) or manifest is None else load_manifest(manifest)
    with ExitStack() as stack:
        yield Session(
            stack, loaded, _path(store), backend, _path(license_file), _path(backup_dir), lock_timeout, saved, hash_cache, progress
        )


def _path(given: str | os.PathLike[str] | None) -> Path | None:
    return Path(given).expanduser() if given is not None else None  # "~" as in the manifest's paths


def manifest_of(saved: SavedPlan) -> Manifest:
    """The manifest a saved plan was made from; StalePlanError if it is gone, invalid or edited."""
    return _load_unchanged(saved.plan.manifest)


def _load_unchanged(ref: ManifestRef) -> Manifest:
    try:
        manifest = load_manifest(ref.path)
    except ManifestError:
        raise StalePlanError([f"manifest {ref.path} is missing or no longer valid"]) from None
    if manifest.sha256 != ref.sha256:
        raise StalePlanError([f"manifest edited: {ref.path} (sha256 {ref.sha256[:12]}… -> {manifest.sha256[:12]}…)"])
    return manifest


def _check_fresh(was: Plan, fresh: Plan, same_backend: bool, subject: str = "saved plan") -> None:
    """Refuse ``was`` when the store changed, or when re-planning would not give the same plan."""
    differences = fingerprint_differences(was, fresh.scan)
    if same_backend and was.scan.backend != fresh.scan.backend:
        differences.append(f"backend changed: {was.scan.backend} -> {fresh.scan.backend}")
    if not differences and [(c.name, c.action) for c in was.changes] != [(c.name, c.action) for c in fresh.changes]:
        differences.append("re-planning gives a different plan (another ocr-reconcile version?); make the plan again")
    gone = {f.name for f in was.scan.files} - {f.name for f in fresh.scan.files}
    if differences and not fresh.has_changes and gone == {c.name for c in was.to_delete}:
        differences = ["it was applied already: every file it moves is gone from the store, and nothing is left to do"]
    if differences:
        raise StalePlanError(differences, subject)


def plan_fleet(
    manifest: Manifest | str | os.PathLike[str],
    snapshots: Sequence[str | os.PathLike[str]],
    max_delete: int | None = None,
    allow_empty: bool = False,
) -> FleetPlan:
    """One plan per snapshot file (no store is read): the fleet-wide plan for a pull request.
    ``max_delete`` applies on top of the manifest's limit (the stricter wins)."""
    loaded = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    guards = guards_for(loaded, max_delete, allow_empty)
    scans, seen = [], dict[str | None, str]()
    for path in dict.fromkeys(os.fspath(p) for p in snapshots):  # a file given twice counts once
        scan = load_snapshot(path).scan
        if scan.host in seen:
            raise UsageError(f"snapshots {seen[scan.host]} and {path} are both of host {scan.host!r}; a fleet plan has one per host")
        seen[scan.host] = path
        scans.append(scan)
    return FleetPlan(tuple(make_plan(loaded, scan, guards) for scan in scans))
