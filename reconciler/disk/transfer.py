"""The journaled transfer engine: carry out a list of moves so that no file is ever lost, and finish
(roll forward, in ``recovery.py``) a list a crash interrupted.

Both apply and restore are a :class:`~.records.RunHeader`: every intended :class:`~.records.Move`,
written to the journal before the first one. After each move a :class:`~.records.MoveDone` record is
appended (a :class:`~.records.MoveSkipped` one for a move not made). Within one filesystem a
move is one rename that never replaces (no data copied); across filesystems (or when the kernel says
EXDEV) it is a copy to a temporary name the tool creates (hashing on the way), fsync, verify, a
check that the source did not change meanwhile, a rename into place that never replaces, then the
unlink of the original. So at every instant each file is whole at its source or whole at its
destination, and ``recovery.recover`` can always finish the run. Every operation is relative to a
folder descriptor opened without following links (``fsops.Tree``), so a folder swapped for a link
cannot redirect a move. This module decides nothing: it executes the moves it is given, skipping
(never moving) an entry whose identity changed since it was planned. Every entry point takes the
held :class:`~.journal.StoreLock`.

Errors during a run: EACCES/EPERM on one file skips that file and goes on; any other OSError
(ENOSPC, EIO, …) stops the run. Either way the index and the message say exactly what moved.
"""

from __future__ import annotations

import errno
import os
import secrets
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..base.errors import ApplyError, PendingRunError
from ..base.layout import journal_path
from ..base.progress import Progress
from . import faults
from .catalogue import BackupRun, Entry, Status, StoreId, mark_restored, remove_empty_folders, write_index
from .copying import Skip
from .journal import Journal, StoreLock
from .moves import Trees, Unsettled, move_entry
from .records import Move, MoveDone, MoveSkipped, Op, Role, RunHeader
from .retention import Retention, prune_runs, remove_if_empty

__all__ = [
    "Outcome",
    "RunState",
    "execute",
    "run_moves",
]

_SKIP_ERRNOS = (errno.EACCES, errno.EPERM)
GROUP = 256  # renames per group commit: one journal fsync and one fsync per folder for each group


@dataclass(frozen=True)
class Outcome:
    """What a run did: entries moved (not counting displaced ones), skipped with why, runs pruned,
    names moved out of a restore's way."""

    moved: tuple[Entry, ...]
    skipped: tuple[tuple[str, str], ...]
    pruned: tuple[str, ...]
    error: str = ""
    displaced: tuple[str, ...] = ()


@dataclass
class RunState:
    """Moves done (their journal records) and skipped (why), by journal key; recovery rebuilds it."""

    def done_names(self) -> tuple[str, ...]:
        return tuple(_name_of(k) for k in self.done)

    def skips(self) -> tuple[tuple[str, str], ...]:
        """(name, why) of every skipped move."""
        return tuple((_name_of(k), why) for k, why in self.skipped.items())

    done: dict[str, MoveDone] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def execute(header: RunHeader, lock: StoreLock, progress: Progress | None = None) -> Outcome:
    """Check the backup folder, journal ``header``, carry out its moves, write the run's index.
    Raises ConfigError for an unusable backup folder, PendingRunError if an interrupted run's
    journal is still there, ApplyError if the journal cannot be written (nothing moved then)."""
    lock.check(header.store)
    path = journal_path(header.store)
    with Trees.open(header, progress) as trees:
        header = replace(header, token=header.token or secrets.token_hex(4), store_id=trees.store.identity())
        trees.header = header
        try:
            journal = Journal.begin(path, header)
        except FileExistsError:
            raise PendingRunError(str(path)) from None
        except OSError as exc:
            raise ApplyError(f"cannot write journal {path}: {exc.strerror or exc}; nothing was moved") from None
        faults.step("journal-begun")
        return run_moves(header, journal, RunState(), trees)


def run_moves(header: RunHeader, journal: Journal, state: RunState, trees: Trees) -> Outcome:
    """Carry out (or, from ``recovery.recover``, finish) the moves of ``header``, then finalise the run."""

    def skip(move: Move, why: str) -> None:
        state.skipped[move.key] = why
        journal.record(MoveSkipped(move.key, why))

    error = ""
    group: list[MoveDone] = []

    def commit() -> str:
        """Group commit: fsync every folder the group's renames changed, then record the whole group
        in one journal write and fsync. Until then a crash leaves renamed-but-unrecorded moves, which
        recovery settles from the disk (as for one move). An fsync failure is returned, after the
        group is recorded all the same (its renames did happen)."""
        if not group:
            return ""
        failure = ""
        try:
            for fd in trees.unsynced:
                os.fsync(fd)
        except OSError as exc:
            failure = f"{len(group)} files were moved, but syncing their folders failed: {exc.strerror or exc}; the run stopped there"
        trees.unsynced.clear()
        journal.record_many(group)
        state.done.update((r.key, r) for r in group)
        group.clear()
        faults.step("recorded")
        return failure

    role: Role | None = None
    todo = [m for m in header.moves if m.key not in state.done and m.key not in state.skipped]
    trees.progress.begin(
        f"{header.op.value}: {len(todo)} file{'s' if len(todo) != 1 else ''}", sum(m.facts.size for m in todo if m.facts.kind == "file")
    )
    for index, move in enumerate(header.moves):
        if move.key in state.done or move.key in state.skipped:
            continue
        if move.role is not role:  # a restore's displacements are recorded before anything comes back in their place
            role = move.role
            error = commit()
            if error:
                break
        try:
            method, digest, identity = move_entry(header, index, move, trees)
        except Skip as skipped:
            skip(move, str(skipped))
            continue
        except Unsettled as unsettled:
            commit()
            record = MoveDone(move.key, unsettled.method, unsettled.digest, unsettled.identity)
            journal.record(record)
            state.done[move.key] = record
            failure = unsettled.error.strerror or str(unsettled.error)
            error = f"{move.name} was moved, but syncing its folders failed: {failure}; the run stopped there"
            break
        except OSError as exc:
            if exc.errno in _SKIP_ERRNOS:
                skip(move, f"{exc.strerror or exc} (left in place)")
                continue
            synced = commit()
            moved_names = ", ".join(state.done_names()) or "none"
            error = (
                f"moving {move.name} failed: {exc.strerror or exc}; it is still whole where it was. Moved before the failure: {moved_names}"
            ) + (f"; {synced}" if synced else "")
            break
        record = MoveDone(move.key, method, digest, identity)
        if method == "rename":
            trees.progress.advance(move.facts.size if move.facts.kind == "file" else 0)
            group.append(record)
            if len(group) >= GROUP:
                error = commit()
                if error:
                    break
            continue
        error = commit()  # a copy is recorded on its own, after the renames before it
        journal.record(record)
        state.done[move.key] = record
        faults.step("recorded")
        if error:
            break
    error = commit() or error
    trees.progress.end()
    pruned = _finalise(header, state, trees, failed=bool(error))
    journal.remove()
    faults.step("journal-removed")
    moved = tuple(_entry(m, state.done[m.key]) for m in header.moves if m.key in state.done and m.role is not Role.DISPLACE)
    displaced = tuple(m.name for m in header.moves if m.key in state.done and m.role is Role.DISPLACE)
    return Outcome(moved, state.skips(), pruned, error, displaced)


def _name_of(key: str) -> str:
    """The store-relative name in a journal key (``role:name``, see :attr:`Move.key`)."""
    return key.split(":", 1)[1]


def _entry(move: Move, record: MoveDone) -> Entry:
    f = move.facts
    return Entry(f.name, f.kind, f.size, record.sha256, f.link_target, record.method, identity=record.identity)


def _finalise(header: RunHeader, state: RunState, trees: Trees, failed: bool) -> tuple[str, ...]:
    """Write the indexes a finished (or stopped) run leaves behind (a run folder that received
    nothing is removed); prune old runs of this store after a full apply that moved something."""
    status = Status.FAILED if failed else Status.COMPLETE

    def index(run_dir: str, role: Role, skipped: tuple[tuple[str, str], ...] = ()) -> bool:
        tree = trees.run(run_dir, create=False)
        if tree is None:
            return False
        entries = tuple(_entry(m, state.done[m.key]) for m in header.moves if m.role is role and m.key in state.done)
        if not entries:
            remove_if_empty(trees.backup, Path(run_dir).name, tree, [m.name for m in header.moves if m.role is role])
            return False
        h = header
        write_index(
            tree, BackupRun(Path(run_dir).name, Path(run_dir), h.created_ns, status, h.store, h.manifest, entries, skipped, h.store_id)
        )
        return True

    if header.op is Op.APPLY:
        moved = index(header.run_dir, Role.BACKUP, state.skips())
        faults.step("index-written")
        retention = Retention(header.keep, header.max_age_s)
        if failed or not retention.active or not moved:
            return ()  # a run that moved nothing never makes older runs count as surplus
        pruned = prune_runs(trees.backup, StoreId(header.store, header.store_id), retention, header.created_ns)
        faults.step("pruned")
        return pruned
    if header.op is Op.INSTALL:  # no index: the files are in the store now; empty folders of verified/ go
        staged = trees.run(header.run_dir, create=False)
        if staged is not None:
            remove_empty_folders(staged, [m.name for m in header.moves])
        return ()
    if header.displaced_run_dir:
        index(header.displaced_run_dir, Role.DISPLACE)
    source = trees.run(header.run_dir, create=False)
    if source is not None:
        mark_restored(source, [m.name for m in header.moves if m.role is Role.RESTORE and m.key in state.done], time.time_ns())
    faults.step("index-written")
    return ()
