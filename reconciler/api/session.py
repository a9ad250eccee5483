"""The library API: one :class:`Session` per store, opened with :func:`open_session`.

Every front end (the CLI, the Ansible modules) goes through this module and holds no workflow of its
own: a session opens the store once (the engine only when a scan needs it), always frees it on exit,
and every change runs under the store lock, through the one apply sequence :meth:`Session.converge`
(or under the :class:`Held` lock a caller took with :meth:`Session.lock`). Errors are :mod:`~.errors`
classes carrying structured data; nothing here prints or names a command-line flag. For example::

    with open_session(manifest="manifests/example.yaml", store="/srv/models") as session:
        done = session.converge(confirm=lambda proposal: True)   # lock, recover, plan, check, apply
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..base.errors import BackupError, RelativeStoreError, StalePlanError, StoreNotFound, UsageError
from ..base.layout import check_backup_root, default_backup_root
from ..base.progress import Progress
from ..decide.plan import Guards, Plan, guards_for, make_plan, refuse_unapplicable
from ..decide.planfile import SavedPlan, Snapshot, iso_time
from ..disk.catalogue import BackupRun, Status, StoreId, find_run, list_runs, open_backup_root
from ..disk.journal import Pending, pending_run, store_lock
from ..disk.retention import Retention, deletable, delete_runs, surplus_runs
from ..read.hashcache import HashCache
from ..read.manifest import Manifest, load_manifest
from ..read.scan import Everything, StoreScan, mutable_root, resolve_root, scan_store
from ..read.stores import ModelStore, engine_default_path, open_store
from .freshness import check_fresh, load_unchanged, manifest_of, same_folder
from .outcomes import Converged, Held, Proposal

if TYPE_CHECKING:  # the mutation modules are imported by the calls that mutate, so reading stays light
    from ..disk.recovery import Abandoned, Recovery
    from .apply import ApplyResult
    from .restore import RestorePlan, RestoreResult


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

    def _cache(self, read_only: bool = False) -> HashCache:
        """The store's hash cache (disabled: always re-hash, and never write it)."""
        return HashCache(self.store_root(), enabled=bool(self.hash_cache), writable=self.hash_cache != "read" and not read_only)

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

    def verify(
        self, saved: SavedPlan, same_backend: bool = True, max_delete: int | None = None, allow_empty: bool = False, read_only: bool = False
    ) -> Plan:
        """Re-plan against the store now and return the fresh plan, or raise StalePlanError naming
        every difference from ``saved`` (store files, manifest, backend, the plan itself). The guards
        come from the current manifest and the caller, never from the file: a hand-edited plan with a
        recomputed checksum cannot lift them. ``read_only``: the hash cache is not written (a check of
        a folder the plan only names, before any lock is taken)."""
        manifest = manifest_of(saved)
        scan = scan_store(self._store(), manifest.pinned, self._cache(read_only), self.progress)
        fresh = make_plan(manifest, scan, guards_for(manifest, max_delete, allow_empty))
        check_fresh(saved.plan, fresh, same_backend)
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
        """Hold the store lock for the block, waiting up to ``lock_timeout``; an interrupted run is recovered
        first (``Held.recovery`` says what it did). A saved plan's session checks the plan is for this store
        folder before the lock file is even created (unless an interrupted run waits there: it comes first)."""
        from ..disk.recovery import recover

        root = store_root or mutable_root(self._given_root())
        declared = self.manifest.store_path if self.manifest is not None else None
        if self.saved is not None and self.pending(root) is None and not same_folder(self.saved, root, declared):
            self.verify(self.saved, read_only=True)  # a plan for another folder (or older than 1.3): checked before any file is made
        with store_lock(root, self.lock_timeout, command) as lock:
            waiting = self.pending(root) is not None
            yield Held(lock, recover(root, lock, self.backup_root(root)) if waiting else None)

    def recover(self, held: Held | None = None) -> Recovery | None:
        """Finish an interrupted run on this store; None when there was none."""
        if held is None:
            with self.lock("recover") as held:
                pass
        return held.recovery

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
        backup folder it would use. :meth:`converge` calls it; call it yourself only around :meth:`apply`."""
        backup_root = self.backup_root(plan.scan.root)
        refuse_unapplicable(plan, backup_root)
        return backup_root

    def converge(
        self,
        confirm: Callable[[Proposal], bool] | None = None,
        *,
        show: Callable[[Proposal], object] | None = None,
        recovered: Callable[[Recovery], object] | None = None,
        check: bool = False,
        reviewed: Plan | None = None,
        max_delete: int | None = None,
        allow_empty: bool = False,
    ) -> Converged:
        """The one apply sequence every front end uses: lock -> recover -> plan once, under the lock ->
        freshness -> applicability -> confirm -> apply.

        ``recovered`` hears at once what finishing an interrupted run did (planning may still refuse).
        ``show`` sees the proposal as soon as the plan is made (before a refusal is raised, so a front end
        can print or report the plan it refuses); ``confirm`` is asked only when there is something to do
        and it may be done (None: yes). ``reviewed``: a plan made earlier (say, before a review); the fresh
        plan must equal it (StalePlanError names every difference). In a session opened on a saved plan,
        the fresh plan is checked against that. ``check``: read-only (Ansible's check mode): no lock, no
        recovery (``Proposal.pending`` says what a real run would finish first), the hash cache unwritten
        when the session was opened so, and nothing applied. Refusals raise :mod:`~.errors` classes.
        """
        if check:
            return self._converge(None, self.pending(), confirm, show, reviewed, max_delete, allow_empty)
        with self.lock() as held:
            if held.recovery is not None and recovered is not None:
                recovered(held.recovery)
            return self._converge(held, None, confirm, show, reviewed, max_delete, allow_empty)

    def _converge(
        self,
        held: Held | None,
        pending: Pending | None,
        confirm: Callable[[Proposal], bool] | None,
        show: Callable[[Proposal], object] | None,
        reviewed: Plan | None,
        max_delete: int | None,
        allow_empty: bool,
    ) -> Converged:
        from .apply import apply_plan

        if reviewed is not None:
            manifest = self._manifest_for(reviewed)
            # a plan made in this process keeps its caller's guards; one read from a document gets the manifest's
            guards = reviewed.guards if reviewed.scan.live else guards_for(manifest, max_delete, allow_empty)
            plan = make_plan(manifest, self.scan(), guards)
            check_fresh(reviewed, plan, same_backend=True, subject="plan")
        else:
            plan = self.plan(max_delete, allow_empty)  # a saved plan's session: verified against it, once
        backup_root = self.backup_root(plan.scan.root)
        pruning = tuple(self.would_prune(plan))
        proposal = Proposal(plan, held.recovery if held else None, pending, backup_root, pruning, self.retention(), held is None)
        if show is not None:
            show(proposal)
        refuse_unapplicable(plan, backup_root)
        if held is None or not plan.has_changes or (confirm is not None and not confirm(proposal)):
            return Converged(proposal, None)
        return Converged(proposal, apply_plan(plan, backup_root, proposal.retention, held.lock, self.progress))

    def _manifest_for(self, plan: Plan) -> Manifest:
        """The manifest ``plan`` was made from: the session's (UsageError if it is another one), or,
        for a session opened without one, the plan's own file (StalePlanError if edited since)."""
        if self.manifest is None:
            self.manifest = load_unchanged(plan.manifest)
            if self._backend_given is None and self._opened is None:
                self._backend = self.manifest.backend
        elif self.manifest.sha256 != plan.manifest.sha256:
            raise UsageError(
                f"the plan was made from manifest {plan.manifest.path} (sha256 {plan.manifest.sha256[:12]}…), "
                f"not from this session's {self.manifest.source} (sha256 {self.manifest.sha256[:12]}…)"
            )
        return self.manifest

    def apply(self, plan: Plan, held: Held | None = None) -> ApplyResult:
        """Apply ``plan``. Without ``held``: :meth:`converge` with ``reviewed=plan`` (locks, re-plans once
        under the lock, applies only if the fresh plan equals ``plan``). With the ``held`` lock, ``plan``
        must be a live plan made under it (:meth:`plan` in the ``with session.lock()`` block)."""
        from .apply import ApplyResult, apply_plan

        if held is None:
            return self.converge(reviewed=plan).result or ApplyResult(None, None)
        self._manifest_for(plan)
        if not plan.scan.live:
            raise UsageError("this plan was read from a document; apply the fresh plan Session.plan() or verify() returns")
        return apply_plan(plan, self.check_applicable(plan), self.retention(), held.lock, self.progress)

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
