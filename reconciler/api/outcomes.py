"""The values the apply sequence hands to front ends: the lock a caller holds, what an apply is
about to do (:class:`Proposal`) and what it did (:class:`Converged`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..decide.plan import Plan
from ..disk.catalogue import BackupRun
from ..disk.journal import Pending, StoreLock
from ..disk.retention import Retention

if TYPE_CHECKING:
    from ..disk.recovery import Recovery
    from .apply import ApplyResult


@dataclass(frozen=True)
class Proposal:
    """What an apply is about to do, as :meth:`Session.converge` hands it to the front end's ``show``
    and ``confirm``: the plan (made under the lock), what recovery did first (or, in check mode, the
    interrupted run a real run would finish), the backup folder, and the old runs retention would
    delete afterwards. For showing and asking only: apply has already decided from the plan."""

    plan: Plan
    recovery: Recovery | None
    pending: Pending | None
    backup_root: Path
    pruning: tuple[BackupRun, ...]
    retention: Retention
    check: bool = False  # made in check mode: nothing will be applied


@dataclass(frozen=True)
class Converged:
    """What :meth:`Session.converge` did: the proposal, and the apply's result (None when there was
    nothing to do, in check mode, or when ``confirm`` declined)."""

    proposal: Proposal
    result: ApplyResult | None

    @property
    def plan(self) -> Plan:
        return self.proposal.plan

    @property
    def changed(self) -> bool:
        """Something on the host changed: a recovery, a move or an install."""
        done = self.result
        return self.proposal.recovery is not None or (done is not None and bool(done.moved or done.install.installed))


@dataclass(frozen=True)
class Held:
    """The store lock, held for a ``with session.lock():`` block, and what recovery did on taking it."""

    lock: StoreLock
    recovery: Recovery | None
