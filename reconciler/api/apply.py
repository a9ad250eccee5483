"""Mutate: turn a :class:`~.plan.Plan` into moves to a new backup run and hand them to the transfer
engine. Decides nothing new: it moves exactly the plan's ``delete`` set (the engine skips, never
moves, an entry whose identity changed since the scan). Callers pass the held store lock.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from dataclasses import dataclass, field, replace as replace_plan
from pathlib import Path

from ..base.errors import ApplyError, UsageError
from ..base.progress import Progress
from ..decide.plan import Action, Plan, refuse_unapplicable
from ..disk.catalogue import Entry, Provenance, new_run_id
from ..disk.journal import StoreLock
from ..disk.records import Move, Op, Role, RunHeader
from ..disk.retention import Retention
from ..disk.transfer import execute
from .install import InstallResult, install_models


@dataclass(frozen=True)
class ApplyResult:
    """What an apply did. ``run_id`` is None when nothing moved (no run is made then)."""

    run_id: str | None
    run_dir: Path | None
    moved: tuple[Entry, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    pruned_runs: tuple[str, ...] = ()
    install: InstallResult = field(default_factory=InstallResult)

    @property
    def bytes_moved(self) -> int:
        return sum(m.size for m in self.moved)

    @property
    def bytes_freed(self) -> int:
        """Bytes that left the store's filesystem: only copies to another filesystem. A rename within
        one filesystem frees nothing until the run holding the file is pruned."""
        return sum(m.size for m in self.moved if m.method == "copy" and m.kind == "file")


def apply_plan(
    plan: Plan,
    backup_root: Path,
    retention: Retention,
    lock: StoreLock,
    progress: Progress | None = None,
) -> ApplyResult:
    """Move the plan's ``delete`` entries (and the files a ``replace`` supersedes) into
    ``backup_root/<run id>/`` and prune old runs; then install the plan's models from their sources.
    The plan is all it reads: each install's source, pin and size, and the download settings.

    Refuses a plan that cannot converge or breaks a guard. Raises ApplyError if the run had to stop;
    the index then lists exactly what moved, and everything else is untouched in the store.
    """
    lock.check(plan.scan.root)
    if not plan.scan.live:
        raise UsageError("this plan was read from a document; apply the fresh plan made under the lock")
    refuse_unapplicable(plan, backup_root)
    if not plan.has_changes:
        return ApplyResult(run_id=None, run_dir=None)
    run_id = new_run_id()
    run_dir = backup_root / run_id
    root = Path(plan.scan.root)
    moves = []
    for change in (*plan.to_delete, *plan.of(Action.REPLACE)):
        assert change.before is not None  # a delete or a replace always has a scanned entry
        moves.append(Move(os.fspath(root / change.name), os.fspath(run_dir / change.name), Role.BACKUP, change.before))
    ref = plan.manifest
    header = RunHeader(
        op=Op.APPLY,
        run_id=run_id,
        run_dir=os.fspath(run_dir),
        store=plan.scan.root,
        manifest=Provenance(ref.source, ref.sha256, ref.name),
        created_ns=time.time_ns(),
        moves=tuple(moves),
        keep=retention.keep,
        max_age_s=retention.max_age_s,
    )
    if not moves:  # only installs
        return ApplyResult(None, None, install=_install(plan, lock, progress, ()))
    outcome = execute(header, lock, progress)
    if outcome.error:
        raise ApplyError(outcome.error)
    installed = _install(plan, lock, progress, {name for name, _ in outcome.skipped})
    if not outcome.moved:
        return ApplyResult(None, None, (), outcome.skipped, install=installed)
    return ApplyResult(run_id, run_dir, outcome.moved, outcome.skipped, outcome.pruned, installed)


def _install(plan: Plan, lock: StoreLock, progress: Progress | None, held: Collection[str]) -> InstallResult:
    """The plan's installs, but not a replacement whose old file could not be moved aside (``held``)."""
    if not plan.installs:
        return InstallResult()
    todo = replace_plan(plan, changes=tuple(c for c in plan.changes if c.name not in held or c.action is not Action.REPLACE))
    return install_models(todo, lock, progress)
