"""The store lock and the write-ahead journal of a mutating run. Both live beside the store
(``layout.py`` names them).

- The lock is held with ``fcntl.flock`` by the one apply/restore/recover running on a store. The
  kernel drops it when the process dies, so no stale lock survives a crash; the file's content (PID,
  start time) only serves the "locked by" message. :func:`store_lock` yields a :class:`StoreLock`,
  which every mutating function takes as an argument: holding one is the proof that the lock is held.
- The journal is JSON lines. The first line lists every intended move; one line is appended (and
  fsynced) after each move completes. It exists only while a run is unfinished: finding one means a
  run was interrupted, and ``recovery.recover`` finishes it. Its records are the values of
  ``records.py``; this module is the only place they become JSON (:func:`encode`) and are read back
  from it (:func:`decode`). It records what it is given and decides nothing about a run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..base.errors import JournalError, LockedError, ReconcilerError, UsageError
from ..base.fsops import fsync_dir, written_by_me
from ..base.layout import journal_path, lock_path
from ..read.scan import FileFacts
from . import faults
from .catalogue import Provenance
from .records import Header, Move, MoveDone, MoveSkipped, Op, Record, Role, RunAbandoned, RunHeader, TornHeader, UnreadableHeader

POLL_SECONDS = 0.05


@dataclass
class StoreLock:
    """A held store lock. Only :func:`store_lock` makes one; it is released when that block ends."""

    root: str
    path: Path
    held: bool = True

    def check(self, root: str) -> None:
        """Raise unless this lock is held, and held for ``root``. Mutating functions call this first."""
        if not self.held:
            raise UsageError(f"the store lock for {self.root} was released when its block ended; take it again")
        if self.root != root:
            raise UsageError(f"the store lock held is for {self.root}, not for {root}")


@contextmanager
def store_lock(store_root: str, timeout: float = 0.0, command: str = "apply") -> Iterator[StoreLock]:
    """Hold the store's lock for the block; wait up to ``timeout`` seconds, else raise LockedError."""
    path = lock_path(store_root)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "not a regular file")
    except OSError as exc:
        why = "it is a symbolic link, which is never followed" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
        raise ReconcilerError(f"cannot open lock file {path}: {why}; nothing was changed") from None
    lock = StoreLock(store_root, path)
    acquired = False
    try:
        folder = os.open(store_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        folder = -1  # a store that is gone (restore reports it); the lock file alone serves
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                # The store folder itself is locked too: the lock file sits in the store's parent, where
                # another user may delete it to let a second run in; the folder cannot be swapped under us.
                if folder >= 0:
                    fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                acquired = True
                break
            except BlockingIOError:
                if folder >= 0:
                    fcntl.flock(folder, fcntl.LOCK_UN)
                if time.monotonic() >= deadline:
                    raise LockedError(store_root, _holder(path), timeout) from None
                time.sleep(POLL_SECONDS)
        holder = {"pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": command}
        _try_write_record(fd, json.dumps(holder))
        faults.pause_after_lock()
        yield lock
    finally:
        if acquired:
            _try_write_record(fd, "")  # a contender must never read a finished holder as the current one
        lock.held = False
        os.close(fd)  # releases the flocks, whatever happened above
        if folder >= 0:
            os.close(folder)


# The holder record is one fixed-size write at offset 0 (never a truncate, then a write), so that a
# contender reads either the whole old record or the whole new one, never an empty or torn file.
RECORD_BYTES = 512


def _try_write_record(fd: int, text: str) -> None:
    """Write the holder record; on a full or failing disk, go on without it (it only serves the
    "locked by" message: the flock is what locks, and ``recover`` must work when the disk is full)."""
    try:
        os.pwrite(fd, text.encode()[:RECORD_BYTES].ljust(RECORD_BYTES), 0)
        if os.fstat(fd).st_size != RECORD_BYTES:
            os.ftruncate(fd, RECORD_BYTES)
    except OSError:
        pass


def _holder(path: Path) -> dict[str, object]:
    """What the lock file says of its holder; empty when unreadable, blank, or naming a dead process
    (a holder killed before it could clear its record, or one that has not written it yet)."""
    try:
        holder = json.loads(path.read_bytes().strip() or b"{}")
        os.kill(int(holder["pid"]), 0)
    except PermissionError:  # alive, owned by another user
        pass
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    return holder if isinstance(holder, dict) else {}


class Journal:
    """Append-only, fsynced record of one run. Use :meth:`begin` or :meth:`reopen`, :meth:`record`,
    :meth:`remove`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def begin(cls, path: Path, header: RunHeader) -> Journal:
        """Create the journal with its header line; FileExistsError if one exists (an unfinished run)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        journal = cls(path, fd)
        journal._append([header])
        fsync_dir(path.parent)
        return journal

    @classmethod
    def reopen(cls, path: Path) -> Journal:
        """Open the journal :func:`read_journal` read, to append; JournalError if what is there now
        is not this user's regular file (swapped since: never blocks on a FIFO, never follows a link)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise JournalError(str(path), f"changed while it was being read ({exc.strerror or exc})") from None
        st = os.fstat(fd)
        if not written_by_me(st):
            os.close(fd)
            raise JournalError(str(path), "changed while it was being read (it is no longer this user's journal)")
        return cls(path, fd)

    def record(self, record: Record) -> None:
        """Append one line and fsync it: once this returns, the line survives a crash."""
        self._append([record])

    def record_many(self, records: Sequence[Record]) -> None:
        """Append several lines in one write and one fsync (a group commit)."""
        self._append(records)

    def _append(self, records: Sequence[RunHeader | Record]) -> None:
        os.write(self._fd, "".join(encode(r) + "\n" for r in records).encode())
        os.fsync(self._fd)

    def close(self) -> None:
        """Stop appending; the journal stays (a run that is not over)."""
        os.close(self._fd)

    def remove(self) -> None:
        """The run is over: delete the journal durably."""
        os.close(self._fd)
        with contextlib.suppress(FileNotFoundError):  # removed by someone else: the run is over all the same
            os.unlink(self.path)
        fsync_dir(self.path.parent)


def read_journal(path: Path) -> tuple[Header, list[MoveDone | MoveSkipped]] | None:
    """``(header, records)`` of an unfinished run, or None. A torn last line (crash mid-write) is
    dropped. A journal with no complete line at all reads as a :class:`~.records.TornHeader` (the
    crash came while its header was written, before any move). Anything else that is not a journal
    (a link, a folder, a first line that is not a header) raises JournalError: it is never guessed
    at. A header that cannot be read as a run reads as an :class:`~.records.UnreadableHeader`, which
    recovery refuses; lines no run writes are left out."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        why = "is a symbolic link" if exc.errno == errno.ELOOP else f"cannot be read ({exc.strerror or exc})"
        raise JournalError(str(path), why) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise JournalError(str(path), "is not a regular file")
        if not written_by_me(st):  # planted by another user, or a hard link to elsewhere
            raise JournalError(str(path), f"is owned by uid {st.st_uid} (with {st.st_nlink} links), not written by this user's runs")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read()
    except OSError as exc:
        raise JournalError(str(path), f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if b"\n" not in data:
        return TornHeader(), []
    entries: list[Header | Record | None] = []
    for line in data.split(b"\n")[:-1]:  # the part after the last newline is a torn append, if anything
        if not line.strip():
            continue
        try:
            entries.append(decode(line))
        except ValueError:
            break  # only the last line can be torn: appends are fsynced one by one
    header = entries[0] if entries else None
    if not isinstance(header, (RunHeader, TornHeader, UnreadableHeader)):
        raise JournalError(str(path), "does not start with a run header (it is damaged, or not a journal)")
    if any(isinstance(e, RunAbandoned) for e in entries):
        raise JournalError(str(path), "belongs to a run that was abandoned (it was renamed back into place?)")
    return header, [e for e in entries[1:] if isinstance(e, (MoveDone, MoveSkipped))]


# -- the journal's edge: the only place a record becomes JSON, and JSON a record ----------------------


def encode(record: RunHeader | Record) -> str:
    """The JSON line of ``record`` (no newline). Keys sorted, field names as they have always been:
    a journal written by any version reads the same. Not for anything but the journal."""
    data: dict[str, Any]
    if isinstance(record, RunHeader):
        data = {"type": "begin", **_header_json(record)}
    elif isinstance(record, MoveDone):
        identity = list(record.identity) if record.identity is not None else None
        data = {"type": "done", "key": record.key, "method": record.method, "sha256": record.sha256, "identity": identity}
    elif isinstance(record, MoveSkipped):
        data = {"type": "skip", "key": record.key, "why": record.why}
    else:
        data = {"type": "abandoned", "ns": record.ns}
    return json.dumps(data, sort_keys=True)


def decode(line: bytes) -> Header | Record | None:
    """The record one complete journal line holds; None for a line no run writes (left out, never an
    error). ValueError only if the line is not JSON at all (a torn append): what a field holds never
    raises (a header that is not a run is an :class:`~.records.UnreadableHeader`)."""
    data = json.loads(line)
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "begin":
        return _header(data)
    if kind == "abandoned":  # whatever else it says: its presence is what counts
        ns = data.get("ns")
        return RunAbandoned(ns if isinstance(ns, int) else 0)
    key = data.get("key") if kind in ("done", "skip") else None
    if not isinstance(key, str):
        return None
    if kind == "skip":
        return MoveSkipped(key, str(data.get("why", "")))
    method, digest, ident = data.get("method", "rename"), data.get("sha256"), data.get("identity")
    whole = isinstance(ident, list) and len(ident) == 4 and all(type(n) is int for n in ident)
    return MoveDone(
        key,
        method if isinstance(method, str) else "rename",
        digest if isinstance(digest, str) else None,
        (ident[0], ident[1], ident[2], ident[3]) if whole else None,
    )


def _header(data: dict[str, Any]) -> Header:
    if data.get("op") == "torn":  # how a torn header has always been spelled
        return TornHeader()
    try:
        return RunHeader(
            op=Op(data["op"]),
            run_id=str(data.get("run_id") or Path(data["run_dir"]).name),
            run_dir=data["run_dir"],
            store=data["store"],
            manifest=Provenance.from_json(data.get("manifest")),
            created_ns=int(data["created_ns"]),
            moves=tuple(Move(m["src"], m["dst"], Role(m["role"]), FileFacts(**m["facts"])) for m in data["moves"]),
            keep=data.get("keep"),
            displaced_run_dir=data.get("displaced_run_dir"),
            token=str(data.get("token") or ""),
            max_age_s=data.get("max_age_s"),
            store_id=(int(data["store_id"][0]), int(data["store_id"][1])) if data.get("store_id") else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        run_id = data.get("run_id")
        why = f"cannot be read as a run ({type(exc).__name__}: {exc})"
        return UnreadableHeader(str(data.get("op", "run")), run_id if isinstance(run_id, str) else None, why)


def _header_json(header: RunHeader) -> dict[str, Any]:
    moves = [{"src": m.src, "dst": m.dst, "role": m.role.value, "facts": asdict(m.facts)} for m in header.moves]
    return {
        "op": header.op.value,
        "run_id": header.run_id,
        "run_dir": header.run_dir,
        "store": header.store,
        "manifest": asdict(header.manifest),
        "created_ns": header.created_ns,
        "moves": moves,
        "keep": header.keep,
        "displaced_run_dir": header.displaced_run_dir,
        "token": header.token,
        "max_age_s": header.max_age_s,
        "store_id": list(header.store_id) if header.store_id else None,
    }


@dataclass(frozen=True)
class Pending:
    """An interrupted run found on a store (read-only report): its op and run id, if readable."""

    op: str
    run_id: str | None


def pending_run(store_root: str) -> Pending | None:
    """The interrupted run on this store, if its journal is there (read-only; an unreadable journal
    reports as op "unreadable", a torn one as "torn", a header that is not a run by the op it names)."""
    try:
        found = read_journal(journal_path(store_root))
    except JournalError:
        return Pending("unreadable", None)
    if found is None:
        return None
    header = found[0]
    if isinstance(header, TornHeader):
        return Pending("torn", None)
    if isinstance(header, UnreadableHeader):
        return Pending(header.op, header.run_id)
    return Pending(header.op.value, header.run_id)
