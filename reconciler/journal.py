"""The store lock and the write-ahead journal of a mutating run. Both live beside the store.

- ``<store>.ocr-reconcile.lock``: held with ``fcntl.flock`` by the one apply/restore/recover running
  on a store. The kernel drops it when the process dies, so no stale lock survives a crash; the
  file's content (PID, start time) only serves the "locked by" message.
- ``<store>.ocr-reconcile-journal``: JSON lines. The first line lists every intended move; one line
  is appended (and fsynced) after each move completes. It exists only while a run is unfinished:
  finding one means a run was interrupted, and ``apply.recover`` finishes it.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import faults
from .errors import LockedError

LOCK_SUFFIX = ".ocr-reconcile.lock"
JOURNAL_SUFFIX = ".ocr-reconcile-journal"


def lock_path(store_root: str) -> Path:
    return Path(store_root.rstrip("/") + LOCK_SUFFIX)


def journal_path(store_root: str) -> Path:
    return Path(store_root.rstrip("/") + JOURNAL_SUFFIX)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def store_lock(store_root: str, timeout: float = 0.0, command: str = "apply") -> Iterator[None]:
    """Hold the store's lock for the block; wait up to ``timeout`` seconds, else raise LockedError."""
    path = lock_path(store_root)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise LockedError(f"cannot create lock file {path}: {exc.strerror or exc}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockedError(_holder_message(store_root, path, timeout)) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(
            fd,
            json.dumps({"pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": command}).encode(),
            0,
        )
        faults.pause_after_lock()
        yield
    finally:
        os.close(fd)  # releases the flock


def _holder_message(store_root: str, path: Path, timeout: float) -> str:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        holder = {}
    who = f"PID {holder['pid']} ({holder.get('command', '?')}) since {holder.get('since', '?')}" if "pid" in holder else "another process"
    waited = f" (waited {timeout:g} s)" if timeout else ""
    return f"store {store_root} locked by {who}{waited}; retry, or pass --lock-timeout SECONDS to wait"


class Journal:
    """Append-only, fsynced record of one run. Use :meth:`begin`, :meth:`record`, :meth:`remove`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def begin(cls, path: Path, header: dict[str, Any]) -> Journal:
        """Create the journal with its header line; refuse if one exists (an unfinished run)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        journal = cls(path, fd)
        journal._append({"type": "begin", **header})
        fsync_dir(path.parent)
        return journal

    @classmethod
    def reopen(cls, path: Path) -> Journal:
        return cls(path, os.open(path, os.O_WRONLY | os.O_APPEND))

    def record(self, entry: dict[str, Any]) -> None:
        self._append(entry)

    def _append(self, entry: dict[str, Any]) -> None:
        os.write(self._fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
        os.fsync(self._fd)

    def remove(self) -> None:
        """The run is over: delete the journal durably."""
        os.close(self._fd)
        os.unlink(self.path)
        fsync_dir(self.path.parent)


def read_journal(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """``(header, records)`` of an unfinished run, or None. A torn last line (crash mid-write) is dropped."""
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return None
    entries = []
    for line in lines:
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except ValueError:
            break  # only the last line can be torn: appends are fsynced one by one
    if not entries or entries[0].get("type") != "begin":
        return {"type": "begin", "op": "torn", "moves": []}, []  # crashed while writing the header
    return entries[0], entries[1:]
