"""Recovery: finish (roll forward) a run that a crash interrupted, from its journal and the disk, or
abandon a run whose journal cannot be acted on.

Read-only :func:`pending_run` reports an unfinished run; :func:`recover` settles every half-done move
(the disk decides what had happened), then lets the transfer engine finish the rest. :func:`abandon`
moves no byte: it records where every file of the run is and releases the store. Both take the held
store lock and act through folder descriptors. Safe to run again if interrupted.
"""

from __future__ import annotations

import os
import secrets
import stat
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..base.errors import JournalError
from ..base.fsops import DIR_FLAGS, Tree, fsync_dir, rename_noreplace, split, unsafe_name
from ..base.hashing import file_sha256
from ..base.layout import INDEX_NAME, journal_path
from .catalogue import BackupRun, Entry, Provenance, Status, StoreId, list_runs, open_backup_root, read_run, write_index
from .journal import Journal, StoreLock, read_journal
from .moves import Trees, placed_identity
from .records import Move, MoveDone, MoveSkipped, Op, Role, RunAbandoned, RunHeader, TornHeader, UnreadableHeader
from .retention import owned
from .transfer import RunState, run_moves


@dataclass(frozen=True)
class Recovery:
    """What :func:`recover` found and did with an interrupted run (``op`` "torn": nothing had moved)."""

    op: str
    run_id: str | None
    finished: tuple[str, ...] = ()  # moves completed by recovery
    already_done: tuple[str, ...] = ()  # moves the crashed run had completed
    skipped: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Abandoned:
    """What :func:`abandon` recorded: where the journal was kept, where each file of the run is
    (``(name, place)``), and the unfinished backup runs it turned into restorable ``abandoned`` runs."""

    journal_kept: str
    places: tuple[tuple[str, str], ...]
    runs: tuple[str, ...]


def _header(path: Path, header: RunHeader | UnreadableHeader, store_root: str) -> RunHeader:
    """The journal's run, refused (JournalError) unless it is one a run of this store would make."""
    if isinstance(header, UnreadableHeader):
        raise JournalError(str(path), header.why)
    if os.path.realpath(header.store) != os.path.realpath(store_root):
        raise JournalError(str(path), f"names another store ({header.store})")
    for move in header.moves:
        problem = unsafe_name(move.name)
        if problem or (move.src, move.dst) != _ends(header, move):
            raise JournalError(str(path), f"names a move of {move.name!r} that no run would make ({problem or 'paths do not match'})")
    return header


def _ends(header: RunHeader, move: Move) -> tuple[str, str]:
    """The (source, destination) paths a run makes for ``move``: a journal saying otherwise is refused."""
    store, run = os.path.join(header.store, move.name), os.path.join(header.run_dir, move.name)
    if move.role is Role.BACKUP:
        return store, run
    if move.role in (Role.RESTORE, Role.INSTALL):
        return run, store
    return store, os.path.join(header.displaced_run_dir or "", move.name)


def recover(store_root: str, lock: StoreLock, backup_root: Path) -> Recovery | None:
    """Finish an interrupted run (roll forward), or return None if there is none.

    For each journaled move not recorded as done, the state on disk decides: moved but unrecorded
    (record it); copied and renamed but the original not yet unlinked (verify, unlink); not started
    or half-copied (discard the run's own temporary copy, move it now); changed or vanished (skip);
    both there and different (a conflict: skip, deleting neither). A journal that cannot be acted on
    raises JournalError and is left in place (:func:`abandon` is the way out).
    """
    lock.check(store_root)
    path = journal_path(store_root)
    found = read_journal(path)
    if found is None:
        return None
    found_header, records = found
    if isinstance(found_header, TornHeader):  # crashed while writing the header, before any run folder was made
        unfinished = [r.run_id for r in unfinished_runs(store_root, backup_root)]
        if unfinished:
            raise JournalError(str(path), f"is torn, yet unfinished backup runs of this store exist ({', '.join(unfinished)})")
        os.unlink(path)
        fsync_dir(path.parent)
        return Recovery("torn", None)
    header = _header(path, found_header, store_root)
    state = RunState(
        done={r.key: r for r in records if isinstance(r, MoveDone)},
        skipped={r.key: r.why for r in records if isinstance(r, MoveSkipped)},
    )
    settled = all(m.key in state.done or m.key in state.skipped for m in header.moves)
    for run_dir in (header.run_dir if header.op is Op.APPLY else None, header.displaced_run_dir):
        made = read_run(Path(run_dir)) if run_dir else None
        # a finished run whose journal lists moves it never made: an old journal put back in place
        if made is not None and (made.status == Status.ABANDONED or (made.status != Status.IN_PROGRESS and not settled)):
            raise JournalError(str(path), f"belongs to run {made.run_id}, which is {made.state} already")
    with Trees.open(header) as trees:
        journal = Journal.reopen(path)
        for index, move in enumerate(header.moves):
            if move.key in state.done or move.key in state.skipped:
                continue
            if move.role is Role.RESTORE and any(
                m.role is Role.DISPLACE and m.name == move.name and m.key not in state.done for m in header.moves
            ):
                continue  # the file in its way has not been displaced yet: that comes first, then this restore
            record = _settle(header, index, move, trees)  # completed by the crashed run (or in conflict), not yet recorded
            if record is not None:
                journal.record(record)
                if isinstance(record, MoveSkipped):
                    state.skipped[move.key] = record.why
                else:
                    state.done[move.key] = record
        already = state.done_names()
        outcome = run_moves(header, journal, state, trees)
    finished = tuple(m.name for m in outcome.moved if m.name not in already)
    return Recovery(header.op.value, header.run_id, finished, already, outcome.skipped)


def _settle(header: RunHeader, index: int, move: Move, trees: Trees) -> MoveDone | MoveSkipped | None:
    """Bring a half-done move to a clean state: a done record if it had completed, a skip record if
    source and destination both exist and differ (neither is ever deleted), else None (redo)."""
    source, dest = trees.ends(move, create=False)
    parent, base = split(move.name)
    dst_fd = _dir(dest, parent)
    if dst_fd is not None:
        _discard_temp(dst_fd, header.temp(index))
    src_here = source is not None and source.lstat(move.name) is not None
    dst_here = dest is not None and dest.lstat(move.name) is not None
    if not dst_here:
        return None
    assert dest is not None
    if not src_here:
        same_fs = source is not None and os.fstat(source.fd).st_dev == os.fstat(dest.fd).st_dev
        method = "rename" if same_fs else "copy"
        return MoveDone(move.key, method, None, placed_identity(dest, move))
    assert source is not None
    src_fd = source.dir(parent)
    if _same_content(src_fd, dest.dir(parent), base, move.facts.kind):  # copy in place; the original not yet unlinked
        os.unlink(base, dir_fd=src_fd)
        os.fsync(src_fd)
        return MoveDone(move.key, "copy", None, placed_identity(dest, move))
    # e.g. an interrupted restore, after which the user put a new copy of the model in place
    where = (os.path.join(source.path, move.name), os.path.join(dest.path, move.name))
    return MoveSkipped(move.key, f"both {where[0]} and {where[1]} exist and differ; neither was touched")


def _dir(tree: Tree | None, parent: str) -> int | None:
    if tree is None:
        return None
    try:
        return tree.dir(parent)
    except OSError:  # a folder removed (or replaced) after the crash
        return None


def _discard_temp(dir_fd: int, tmp: str) -> None:
    """Remove the run's temporary copy if it is there and is the tool's (owned by this user): a
    half-copied file is never trusted."""
    try:
        st = os.stat(tmp, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if st.st_uid == os.geteuid() and (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        os.unlink(tmp, dir_fd=dir_fd)
        os.fsync(dir_fd)


def _same_content(src_fd: int, dst_fd: int, base: str, kind: str) -> bool:
    a = os.stat(base, dir_fd=src_fd, follow_symlinks=False)
    b = os.stat(base, dir_fd=dst_fd, follow_symlinks=False)
    if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
        return True  # a hard link, then an unlink (rename_noreplace's fallback): interrupted between
    if kind == "symlink":
        return stat.S_ISLNK(a.st_mode) and stat.S_ISLNK(b.st_mode) and os.readlink(base, dir_fd=src_fd) == os.readlink(base, dir_fd=dst_fd)
    digest = file_sha256(base, dir_fd=src_fd, follow=False)
    return digest is not None and digest == file_sha256(base, dir_fd=dst_fd, follow=False)


def abandon(store_root: str, lock: StoreLock, backup_root: Path) -> Abandoned | None:
    """Release a store from a run that cannot be finished, moving no byte: report where each file of
    the run is (when its journal can be read at all), turn this store's unfinished backup runs into
    ``abandoned`` runs whose index lists what is really in them (so they can be restored), and keep
    the journal, if any, under a new name beside the store. Also the way out for unfinished runs
    whose journal is gone. None when there is neither a journal nor an unfinished run."""
    lock.check(store_root)
    path = journal_path(store_root)
    unfinished = unfinished_runs(store_root, backup_root)
    if not os.path.lexists(path) and not unfinished:
        return None
    if unfinished:
        open_backup_root(backup_root).close()  # the same checks as a run's: never write into another user's folder
    places: list[tuple[str, str]] = []
    try:
        found = read_journal(path)
        header = _header(path, found[0], store_root) if found and not isinstance(found[0], TornHeader) else None
    except JournalError:
        header = None
    if header is not None:
        for move in header.moves:
            at = [p for p in (move.src, move.dst) if os.path.lexists(p)]
            places.append((move.name, " and ".join(at) if at else "neither at its source nor at its destination"))
    for run in unfinished:
        _inventory(run)
    if os.path.lexists(path):
        _seal(path)
    kept = _keep_aside(path) if os.path.lexists(path) else ""
    return Abandoned(kept, tuple(places), tuple(r.run_id for r in unfinished))


def _seal(path: Path) -> None:
    """Append the record that makes a kept journal never replayable (if it is this user's file)."""
    try:
        journal = Journal.reopen(path)
    except JournalError:
        return  # not a journal this user could have written: nothing to replay from it either
    try:
        journal.record(RunAbandoned(time.time_ns()))
    except OSError:
        pass
    finally:
        journal.close()


def unfinished_runs(store_root: str, backup_root: Path) -> list[BackupRun]:
    """This store's in-progress runs that this user made (read-only)."""
    return [r for r in list_runs(backup_root, StoreId.of(store_root)) if r.status == Status.IN_PROGRESS and owned(r)]


def _keep_aside(path: Path) -> str:
    """Rename the journal to a new, unused ``<journal>.abandoned-<time>-<n>`` (never replacing)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    parent = os.open(path.parent, DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        for n in range(1000):
            kept = f"{path.name}.abandoned-{stamp}-{secrets.token_hex(3)}" if n else f"{path.name}.abandoned-{stamp}"
            try:
                rename_noreplace(parent, path.name, parent, kept)
            except FileExistsError:
                continue
            os.fsync(parent)
            return os.path.join(path.parent, kept)
        raise JournalError(str(path), "cannot be renamed aside: every name tried is taken")
    finally:
        os.close(parent)


def _inventory(run: BackupRun) -> None:
    """Rewrite an unfinished run's index as ``abandoned``, listing the files really in it."""
    with Tree(os.fspath(run.path), os.open(run.path, DIR_FLAGS)) as tree:
        entries = []
        for folder, dirs, files, dir_fd in os.fwalk(".", dir_fd=tree.fd):
            linked = [d for d in dirs if stat.S_ISLNK(os.stat(d, dir_fd=dir_fd, follow_symlinks=False).st_mode)]
            for name in sorted(files + linked):
                rel = os.path.normpath(os.path.join(folder, name))
                if rel in (INDEX_NAME, INDEX_NAME + ".tmp"):
                    continue
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    entries.append(Entry(rel, "symlink", st.st_size, None, os.readlink(name, dir_fd=dir_fd), "unknown"))
                elif stat.S_ISREG(st.st_mode):
                    entries.append(Entry(rel, "file", st.st_size, file_sha256(name, dir_fd=dir_fd, follow=False), None, "unknown"))
        manifest = Provenance(run.manifest.source, run.manifest.sha256, run.manifest.name)
        write_index(tree, replace(run, status=Status.ABANDONED, entries=tuple(sorted(entries, key=lambda e: e.name)), manifest=manifest))
