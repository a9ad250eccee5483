"""Restore: plan putting a backup run's files back (a frozen :class:`RestorePlan`, shown by
``restore --dry-run``), then execute that plan with the same journaled engine as apply.

:func:`read_restore_facts` reads the disk (the backup copies, verified against the index, and what
is at each destination); :func:`decide_restore` is pure and makes every decision; :func:`restore`
executes a plan and decides nothing new. Nothing is ever overwritten: a different file in the way
is a conflict, refused unless ``force``, which first moves it into a new backup run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ..base.errors import BackupError, RestoreConflictError, StoreNotFound
from ..base.fsops import unsafe_name
from ..base.hashing import file_sha256
from ..base.progress import Progress
from ..disk.catalogue import BackupRun, Entry, Provenance, Status, new_run_id
from ..disk.journal import StoreLock
from ..disk.records import Move, Op, Role, RunHeader
from ..disk.transfer import execute
from ..read.scan import FileFacts, stat_entry


@dataclass(frozen=True)
class Destination:
    """What is at a restore destination now: nothing, the same entry, or something different."""

    facts: FileFacts | None
    same: bool


@dataclass(frozen=True)
class RestoreFacts:
    """What :func:`decide_restore` needs to know of the disk, read by :func:`read_restore_facts`.

    ``held`` maps each selected name to its backup copy's facts (None: missing); ``intact`` says the
    copy matches its index; ``destinations`` says what sits at each name in the store.
    """

    held: Mapping[str, FileFacts | None]
    intact: Mapping[str, bool]
    destinations: Mapping[str, Destination]


@dataclass(frozen=True)
class RestorePlan:
    """What a restore will do: ``moves`` (displacements first, then restores), names already back
    (identical), and the run that will receive displaced files. Execute it with :func:`restore`."""

    run: BackupRun
    store: str
    moves: tuple[Move, ...]
    already_present: tuple[str, ...]
    displaced_run_id: str | None
    names: tuple[str, ...] = ()  # as asked (empty: the whole run), to plan again under the lock
    force: bool = False

    def same_as(self, other: RestorePlan) -> bool:
        """Whether ``other`` moves the same entries, with the same identities, the same way."""

        def key(plan: RestorePlan) -> list[tuple[str, str, tuple[object, ...]]]:
            return [(m.role.value, m.name, m.facts.identity) for m in plan.moves]

        return key(self) == key(other) and self.already_present == other.already_present

    @property
    def restores(self) -> tuple[Move, ...]:
        return tuple(m for m in self.moves if m.role is Role.RESTORE)

    @property
    def displaces(self) -> tuple[Move, ...]:
        return tuple(m for m in self.moves if m.role is Role.DISPLACE)


@dataclass(frozen=True)
class RestoreResult:
    """What a restore did: entries put back, entries already identical in the store, the run that
    received displaced files (None when none was displaced), and entries skipped (name, why)."""

    restored: tuple[str, ...]
    already_present: tuple[str, ...]
    displaced_run: str | None
    skipped: tuple[tuple[str, str], ...] = ()


def select(run: BackupRun, names: Sequence[str]) -> list[Entry]:
    """The run's entries named by ``names`` (all of them when empty); BackupError for unknown names."""
    for entry in run.entries:  # an index is data on disk, which anyone who can write the backup folder can edit
        problem = unsafe_name(entry.name)
        if problem:
            raise BackupError(
                f"run {run.run_id}'s index names {entry.name!r}, which is not a valid store-relative name ({problem}); "
                "nothing was restored",
                run.run_id,
                [entry.name],
            )
    names = list(dict.fromkeys(names))  # a name asked for twice is restored once
    by_name = {e.name: e for e in run.entries}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise BackupError(f"run {run.run_id} holds no {', '.join(map(repr, unknown))}", run.run_id, unknown)
    if run.status == Status.IN_PROGRESS:
        raise BackupError(f"run {run.run_id} is unfinished (an interrupted run); recover it first, then restore", run.run_id)
    back = [n for n in names if by_name[n].restored_ns is not None]
    if back or (not names and not run.held):
        what = ", ".join(map(repr, back)) if back else "every file it held"
        raise BackupError(f"run {run.run_id}: {what} was already restored (its index keeps the record)", run.run_id, back)
    return [by_name[n] for n in names] if names else list(run.held)


def read_restore_facts(run: BackupRun, entries: Sequence[Entry], store: str) -> RestoreFacts:
    """Read (never change) the backup copies and the store destinations of ``entries``."""
    if not os.path.isdir(store):
        raise StoreNotFound(store, for_restore=True)
    held, intact, destinations = {}, {}, {}
    for entry in entries:
        copy = held[entry.name] = stat_entry(os.fspath(run.path), entry.name)
        intact[entry.name] = copy is not None and _intact(run, entry, copy)
        there = stat_entry(store, entry.name)
        destinations[entry.name] = Destination(there, there is not None and _same(run, store, entry, there))
    return RestoreFacts(held, intact, destinations)


def _intact(run: BackupRun, entry: Entry, copy: FileFacts) -> bool:
    """Whether the backup copy is the entry the run recorded: by identity (nothing read) when the
    index has it, else by sha256 (an index written before identities were recorded)."""
    if entry.kind != "file":
        return copy.kind == entry.kind
    if entry.identity is not None:
        return (copy.kind, copy.dev, copy.inode, copy.size, copy.mtime_ns) == ("file", *entry.identity)
    return file_sha256(run.path / entry.name) == entry.sha256


def _same(run: BackupRun, store: str, entry: Entry, there: FileFacts) -> bool:
    """Whether the file already at the destination is the backed-up one (then it is left alone).
    Bytes are read only for a same-size regular file in the way."""
    if entry.kind == "symlink":
        return there.kind == "symlink" and there.link_target == entry.link_target
    if there.kind != "file" or there.size != entry.size:
        return False
    want = entry.sha256 or file_sha256(run.path / entry.name)
    return want is not None and file_sha256(os.path.join(store, entry.name)) == want


def decide_restore(
    run: BackupRun, entries: Sequence[Entry], store: str, facts: RestoreFacts, force: bool, displaced_run_id: str
) -> RestorePlan:
    """Pure: the plan for putting ``entries`` back into ``store``, or the reason it cannot be done.

    Checks everything before planning anything: a missing or corrupt backup copy refuses the whole
    restore, and so does a different file at a destination unless ``force``.
    """
    for entry in entries:
        if facts.held[entry.name] is None:
            raise BackupError(f"backup file {run.path / entry.name} is missing; nothing was restored", run.run_id, [entry.name])
        if not facts.intact[entry.name]:
            raise BackupError(
                f"backup file {run.path / entry.name} is not the file its index recorded (changed or replaced); nothing was restored",
                run.run_id,
                [entry.name],
            )
    present = tuple(sorted(e.name for e in entries if facts.destinations[e.name].same))
    conflicts = [e.name for e in entries if facts.destinations[e.name].facts is not None and not facts.destinations[e.name].same]
    unmovable = [n for n in conflicts if (there := facts.destinations[n].facts) is not None and there.kind not in ("file", "symlink")]
    if unmovable:
        raise RestoreConflictError(run.run_id, unmovable, unmovable=True)
    if conflicts and not force:
        raise RestoreConflictError(run.run_id, conflicts)
    displaced_dir = run.path.parent / displaced_run_id
    moves = []
    for name in conflicts:
        there = facts.destinations[name].facts
        assert there is not None
        moves.append(Move(os.path.join(store, name), os.fspath(displaced_dir / name), Role.DISPLACE, there))
    for entry in entries:
        if entry.name not in present:
            held = facts.held[entry.name]
            assert held is not None
            held = replace(held, sha256=entry.sha256)  # a copy across filesystems verifies it on its one pass
            moves.append(Move(os.fspath(run.path / entry.name), os.path.join(store, entry.name), Role.RESTORE, held))
    names = tuple(e.name for e in entries) if len(entries) != len(run.held) else ()
    return RestorePlan(run, store, tuple(moves), present, displaced_run_id if conflicts else None, names, force)


def plan_restore(run: BackupRun, names: Sequence[str], force: bool, store: str, displaced_run_id: str | None = None) -> RestorePlan:
    """Read the disk and decide: the restore plan for ``names`` of ``run`` (all when empty)."""
    entries = select(run, names)
    facts = read_restore_facts(run, entries, store)
    return decide_restore(run, entries, store, facts, force, displaced_run_id or new_run_id() + "-displaced")


def restore(plan: RestorePlan, lock: StoreLock, progress: Progress | None = None) -> RestoreResult:
    """Execute ``plan`` as one journaled run under the held store lock."""
    lock.check(plan.store)
    displaced = os.fspath(plan.run.path.parent / plan.displaced_run_id) if plan.displaced_run_id else None
    header = RunHeader(
        op=Op.RESTORE,
        run_id=plan.run.run_id,
        run_dir=os.fspath(plan.run.path),
        store=plan.store,
        manifest=Provenance(f"forced restore of {plan.run.run_id}", None, None),
        created_ns=time.time_ns(),
        moves=plan.moves,
        displaced_run_dir=displaced,
    )
    outcome = execute(header, lock, progress)
    if outcome.error:
        raise BackupError(outcome.error, plan.run.run_id)
    displaced_run = plan.displaced_run_id if outcome.displaced else None
    return RestoreResult(tuple(m.name for m in outcome.moved), plan.already_present, displaced_run, outcome.skipped)
