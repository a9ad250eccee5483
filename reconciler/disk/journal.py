"""The store lock and the write-ahead journal of a mutating run. Both live beside the store
(``layout.py`` names them).

- The lock is held with ``fcntl.flock`` by the one apply/restore/recover running on a store. The
  kernel drops it when the process dies, so no stale lock survives a crash; the file's content (PID,
  start time) only serves the "locked by" message. :func:`store_lock` yields a :class:`StoreLock`,
  which every mutating function takes as an argument: holding one is the proof that the lock is held.
- The journal is JSON lines. The first line lists every intended move; one line is appended (and
  fsynced) after each move completes. It exists only while a run is unfinished: finding one means a
  run was interrupted, and ``recovery.recover`` finishes it. This module stores lines; it does not
  know what a move is.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import JournalError, LockedError, ReconcilerError, UsageError
from ..base.fsops import fsync_dir, written_by_me
from ..base.layout import journal_path, lock_path
from . import faults

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
    def begin(cls, path: Path, header: dict[str, Any]) -> Journal:
        """Create the journal with its header line; FileExistsError if one exists (an unfinished run)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        journal = cls(path, fd)
        journal.record({"type": "begin", **header})
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

    def record(self, entry: dict[str, Any]) -> None:
        """Append one line and fsync it: once this returns, the line survives a crash."""
        os.write(self._fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
        os.fsync(self._fd)

    def record_many(self, entries: list[dict[str, Any]]) -> None:
        """Append several lines in one write and one fsync (a group commit)."""
        os.write(self._fd, "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries).encode())
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


TORN: dict[str, Any] = {"type": "begin", "op": "torn", "moves": []}
ABANDONED = "abandoned"  # the last record of a journal that ``recover --abandon`` kept aside: never replayed


def read_journal(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """``(header, records)`` of an unfinished run, or None. A torn last line (crash mid-write) is
    dropped. A journal with no complete line at all reads as :data:`TORN` (the crash came while its
    header was written, before any move). Anything else that is not a journal (a link, a folder, a
    header that does not parse) raises JournalError: it is never guessed at."""
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
        return dict(TORN), []
    lines = data.split(b"\n")
    entries = []
    for line in lines[:-1]:  # the part after the last newline is a torn append, if anything
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except ValueError:
            break  # only the last line can be torn: appends are fsynced one by one
    if not entries or not isinstance(entries[0], dict) or entries[0].get("type") != "begin":
        raise JournalError(str(path), "does not start with a run header (it is damaged, or not a journal)")
    if any(isinstance(e, dict) and e.get("type") == ABANDONED for e in entries):
        raise JournalError(str(path), "belongs to a run that was abandoned (it was renamed back into place?)")
    return entries[0], [e for e in entries[1:] if isinstance(e, dict)]


@dataclass(frozen=True)
class Pending:
    """An interrupted run found on a store (read-only report): its op and run id, if readable."""

    op: str
    run_id: str | None


def pending_run(store_root: str) -> Pending | None:
    """The interrupted run on this store, if its journal is there (read-only; an unreadable journal
    reports as op "unreadable")."""
    try:
        found = read_journal(journal_path(store_root))
    except JournalError:
        return Pending("unreadable", None)
    if found is None:
        return None
    header = found[0]
    return Pending(str(header.get("op", "run")), header.get("run_id"))
