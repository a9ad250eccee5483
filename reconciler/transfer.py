"""The journaled transfer engine: carry out a list of moves so that no file is ever lost, and finish
(roll forward, in ``recovery.py``) a list a crash interrupted.

Both apply and restore are a :class:`RunHeader`: every intended :class:`Move`, written to the
journal before the first one. After each move a ``done`` record is appended. Within one filesystem a
move is one ``os.rename`` (no data copied); across filesystems it is copy to a temporary name (hashing
on the way), fsync, verify, rename into place, then unlink the original. So at every instant each file
is whole at its source or whole at its destination, and ``recovery.recover`` can always finish the run.
This module decides nothing: it executes the moves it is given, skipping (never moving) an entry whose
identity changed since it was planned. Every entry point takes the held :class:`~.journal.StoreLock`.

Errors during a run: EACCES/EPERM on one file skips that file and goes on; any other OSError
(ENOSPC, EIO, …) stops the run. Either way the index and the message say exactly what moved.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from . import faults
from .catalogue import BackupRun, Entry, Provenance, Status, create_run, forget_entries, prune_runs, write_index
from .errors import ApplyError, PendingRunError
from .hashing import CHUNK, StreamHasher, file_sha256
from .journal import Journal, StoreLock, fsync_dir
from .layout import journal_path, partial_path
from .scan import FileFacts, stat_entry

_SKIP_ERRNOS = (errno.EACCES, errno.EPERM)


class Op(str, Enum):
    """What a run is: an apply (store -> new backup run) or a restore (backup run -> store)."""

    APPLY = "apply"
    RESTORE = "restore"


class Role(str, Enum):
    """Why one entry moves: to a backup run, back into the store, or out of a restore's way."""

    BACKUP = "backup"
    RESTORE = "restore"
    DISPLACE = "displace"


@dataclass(frozen=True)
class Move:
    """One intended move of one entry; ``facts`` is the identity it must still have when moved."""

    src: str
    dst: str
    role: Role
    facts: FileFacts

    @property
    def name(self) -> str:
        return self.facts.name

    @property
    def key(self) -> str:
        """Journal key: a name can be both displaced and restored in one run."""
        return f"{self.role.value}:{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "role": self.role.value, "facts": asdict(self.facts)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Move:
        return cls(data["src"], data["dst"], Role(data["role"]), FileFacts(**data["facts"]))


@dataclass(frozen=True)
class RunHeader:
    """Everything a run will do, journaled before it starts. ``run_dir`` is the new run's folder for
    an apply and the source run's folder for a restore; ``displaced_run_dir`` receives the files a
    forced restore moves out of the way; ``keep`` prunes older runs after a complete apply."""

    op: Op
    run_id: str
    run_dir: str
    store: str
    manifest: Provenance
    created_ns: int
    moves: tuple[Move, ...]
    keep: int | None = None
    displaced_run_dir: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op.value,
            "run_id": self.run_id,
            "run_dir": self.run_dir,
            "store": self.store,
            "manifest": asdict(self.manifest),
            "created_ns": self.created_ns,
            "moves": [m.to_json() for m in self.moves],
            "keep": self.keep,
            "displaced_run_dir": self.displaced_run_dir,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunHeader:
        return cls(
            op=Op(data["op"]),
            run_id=str(data.get("run_id") or Path(data["run_dir"]).name),
            run_dir=data["run_dir"],
            store=data["store"],
            manifest=Provenance.from_json(data.get("manifest")),
            created_ns=int(data["created_ns"]),
            moves=tuple(Move.from_json(m) for m in data["moves"]),
            keep=data.get("keep"),
            displaced_run_dir=data.get("displaced_run_dir"),
        )


@dataclass(frozen=True)
class Outcome:
    """What a run did: entries moved (not counting displaced ones), skipped with why, runs pruned."""

    moved: tuple[Entry, ...]
    skipped: tuple[tuple[str, str], ...]
    pruned: tuple[str, ...]
    error: str = ""


@dataclass
class RunState:
    """Moves done (their journal records) and skipped (why), by journal key; recovery rebuilds it."""

    def done_names(self) -> tuple[str, ...]:
        return tuple(_name_of(k) for k in self.done)

    def skips(self) -> tuple[tuple[str, str], ...]:
        """(name, why) of every skipped move."""
        return tuple((_name_of(k), why) for k, why in self.skipped.items())

    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def execute(header: RunHeader, lock: StoreLock) -> Outcome:
    """Journal ``header``, carry out its moves, write the run's index. Raises PendingRunError if an
    interrupted run's journal is still there, ApplyError if the journal cannot be written."""
    lock.check(header.store)
    path = journal_path(header.store)
    try:
        journal = Journal.begin(path, header.to_json())
    except FileExistsError:
        raise PendingRunError(str(path)) from None
    except OSError as exc:
        raise ApplyError(f"cannot write journal {path}: {exc.strerror or exc}; nothing was moved") from None
    faults.step("journal-begun")
    return run_moves(header, journal, RunState())


def run_moves(header: RunHeader, journal: Journal, state: RunState) -> Outcome:
    """Carry out (or, from ``recovery.recover``, finish) the moves of ``header``, then finalise the run."""
    if header.op is Op.APPLY:
        create_run(Path(header.run_dir), header.store, header.manifest, header.created_ns)
    if header.displaced_run_dir:
        create_run(Path(header.displaced_run_dir), header.store, header.manifest, header.created_ns)

    def skip(move: Move, why: str) -> None:
        state.skipped[move.key] = why
        journal.record({"type": "skip", "key": move.key, "why": why})

    error = ""
    for move in header.moves:
        if move.key in state.done or move.key in state.skipped:
            continue
        why = _changed(move)
        if why:
            skip(move, why)
            continue
        try:
            method, digest = _move_entry(move)
        except OSError as exc:
            if exc.errno in _SKIP_ERRNOS:
                skip(move, f"{exc.strerror or exc} (left in place)")
                continue
            moved_names = ", ".join(state.done_names()) or "none"
            error = (
                f"moving {move.name} failed: {exc.strerror or exc}; it is still whole where it was. Moved before the failure: {moved_names}"
            )
            break
        record = {"type": "done", "key": move.key, "method": method, "sha256": digest}
        journal.record(record)
        state.done[move.key] = record
        faults.step("recorded")
    pruned = _finalise(header, state, failed=bool(error))
    journal.remove()
    faults.step("journal-removed")
    moved = tuple(_entry(m, state.done[m.key]) for m in header.moves if m.key in state.done and m.role is not Role.DISPLACE)
    return Outcome(moved, state.skips(), pruned, error)


def _name_of(key: str) -> str:
    """The store-relative name in a journal key (``role:name``, see :attr:`Move.key`)."""
    return key.split(":", 1)[1]


def _entry(move: Move, record: dict[str, Any]) -> Entry:
    f = move.facts
    return Entry(f.name, f.kind, f.size, record.get("sha256"), f.link_target, record.get("method", "rename"))


def _finalise(header: RunHeader, state: RunState, failed: bool) -> tuple[str, ...]:
    """Write the indexes a finished (or stopped) run leaves behind; prune old runs after a full apply."""
    status = Status.FAILED if failed else Status.COMPLETE

    def index(run_dir: str, role: Role, skipped: tuple[tuple[str, str], ...] = ()) -> None:
        entries = tuple(_entry(m, state.done[m.key]) for m in header.moves if m.role is role and m.key in state.done)
        folder = Path(run_dir)
        write_index(BackupRun(folder.name, folder, header.created_ns, status, header.store, header.manifest, entries, skipped))

    if header.op is Op.APPLY:
        index(header.run_dir, Role.BACKUP, state.skips())
        faults.step("index-written")
        if failed or header.keep is None or not any(m.role is Role.BACKUP and m.key in state.done for m in header.moves):
            return ()  # a run that moved nothing never makes older runs count as surplus
        pruned = prune_runs(Path(header.run_dir).parent, header.keep)
        faults.step("pruned")
        return pruned
    if header.displaced_run_dir:
        index(header.displaced_run_dir, Role.DISPLACE)
    forget_entries(Path(header.run_dir), [m.name for m in header.moves if m.role is Role.RESTORE and m.key in state.done])
    faults.step("index-written")
    return ()


def _changed(move: Move) -> str:
    """Why ``move.src`` is no longer the entry that was planned ("" if it still is)."""
    now = stat_entry(os.path.dirname(move.src), os.path.basename(move.src))
    if now is None:
        return "vanished since the plan was made"
    if now.identity != move.facts.identity:
        return "changed since the plan was made; left in place"
    return ""


def moved_digest(move: Move) -> str | None:
    """The sha256 of what a move put at its destination (None for a symlink)."""
    return None if move.facts.kind == "symlink" else file_sha256(move.dst)


def _move_entry(move: Move) -> tuple[str, str | None]:
    """Move one entry; never follows a symlink (a link is moved as a link).

    Returns the method and the sha256 of the moved bytes (None for a symlink).
    """
    src, dst = Path(move.src), Path(move.dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, f"{dst} already exists")
    if os.lstat(src).st_dev == os.stat(dst.parent).st_dev and _renamed(src, dst):
        method, digest = "rename", None
        faults.step("renamed")
    else:  # another filesystem (or one the kernel will not rename across, such as two bind mounts)
        digest = _copy_verified(src, dst, move.facts.kind)
        os.unlink(src)
        method = "copy"
        faults.step("source-unlinked")
    fsync_dir(dst.parent)
    fsync_dir(src.parent)
    if method == "rename":
        digest = moved_digest(move)  # rename copies nothing, so hash once, from the new place
    return method, digest


def _renamed(src: Path, dst: Path) -> bool:
    """Rename ``src`` to ``dst``; False when the kernel says EXDEV (two bind mounts of one filesystem
    share a device number, yet rename across them fails): the caller copies instead."""
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return False
        raise
    return True


def _copy_verified(src: Path, dst: Path, kind: str) -> str | None:
    """Copy across filesystems to a temporary name, fsync, verify, then rename into place.

    Returns the verified sha256 of the bytes (None for a symlink).
    """
    tmp = partial_path(dst)
    if os.path.lexists(tmp):
        os.unlink(tmp)  # left by a crash: never trusted
    digest = None
    try:
        if kind == "symlink":
            os.symlink(os.readlink(src), tmp)
        else:
            want = StreamHasher()
            with open(src, "rb") as fin, open(tmp, "xb") as fout:
                while chunk := fin.read(CHUNK):
                    want.update(chunk)
                    fout.write(chunk)
                    fault = faults.copy_fault()
                    if fault:
                        raise fault
                fout.flush()
                os.fsync(fout.fileno())
            shutil.copystat(src, tmp)
            digest = want.hexdigest()
            if file_sha256(tmp) != digest:
                raise OSError(errno.EIO, f"verification of the copy of {src} failed")
        fsync_dir(tmp.parent)
        faults.step("copy-written")
        os.rename(tmp, dst)
        fsync_dir(dst.parent)
        faults.step("copy-renamed")
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    return digest
