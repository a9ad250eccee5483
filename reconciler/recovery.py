"""Recovery: finish (roll forward) a run that a crash interrupted, from its journal and the disk.

Read-only :func:`pending_run` reports an unfinished run; :func:`recover` settles every half-done move
(the disk decides what had happened), then lets the transfer engine finish the rest. Takes the held
store lock. Safe to run again if it is itself interrupted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ApplyError
from .hashing import file_sha256
from .journal import Journal, StoreLock, fsync_dir, read_journal
from .layout import journal_path, partial_path
from .transfer import Move, RunHeader, RunState, moved_digest, run_moves


@dataclass(frozen=True)
class Recovery:
    """What :func:`recover` found and did with an interrupted run (``op`` "torn": nothing had moved)."""

    op: str
    run_id: str | None
    finished: tuple[str, ...] = ()  # moves completed by recovery
    already_done: tuple[str, ...] = ()  # moves the crashed run had completed
    skipped: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Pending:
    """An interrupted run found on a store (read-only report): its op and run id, if readable."""

    op: str
    run_id: str | None


def pending_run(store_root: str) -> Pending | None:
    """The interrupted run on this store, if its journal is there (read-only)."""
    found = read_journal(journal_path(store_root))
    if found is None:
        return None
    header = found[0]
    return Pending(str(header.get("op", "run")), header.get("run_id"))


def recover(store_root: str, lock: StoreLock) -> Recovery | None:
    """Finish an interrupted run (roll forward), or return None if there is none.

    For each journaled move not recorded as done, the state on disk decides: moved but unrecorded
    (record it); copied and renamed but the original not yet unlinked (verify, unlink); not started
    or half-copied (discard the temporary copy, move it now); changed or vanished (skip); both there
    and different (a conflict: skip, deleting neither). Safe to run again if it is itself interrupted.
    """
    lock.check(store_root)
    path = journal_path(store_root)
    found = read_journal(path)
    if found is None:
        return None
    raw, records = found
    if raw["op"] == "torn":  # crashed while writing the header: nothing had moved
        os.unlink(path)
        fsync_dir(path.parent)
        return Recovery("torn", None)
    try:
        header = RunHeader.from_json(raw)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ApplyError(f"the journal {path} cannot be read as a run ({type(exc).__name__}: {exc}); it was left in place") from None
    if os.path.realpath(header.store) != os.path.realpath(store_root):
        raise ApplyError(f"the journal {path} names another store ({header.store}); it was left in place and nothing was moved")
    state = RunState(
        done={r["key"]: r for r in records if r.get("type") == "done"},
        skipped={r["key"]: r["why"] for r in records if r.get("type") == "skip"},
    )
    journal = Journal.reopen(path)
    for move in header.moves:
        if move.key in state.done or move.key in state.skipped:
            continue
        record = _settle(move)  # completed by the crashed run (or in conflict), but not yet recorded
        if record is not None:
            journal.record(record)
            if record["type"] == "skip":
                state.skipped[move.key] = record["why"]
            else:
                state.done[move.key] = record
    already = state.done_names()
    outcome = run_moves(header, journal, state)
    finished = tuple(m.name for m in outcome.moved if m.name not in already)
    return Recovery(header.op.value, header.run_id, finished, already, outcome.skipped)


def _settle(move: Move) -> dict[str, Any] | None:
    """Bring a half-done move to a clean state: a done record if it had completed, a skip record if
    source and destination both exist and differ (neither is ever deleted), else None (redo)."""
    src, dst = Path(move.src), Path(move.dst)
    partial = partial_path(dst)
    if os.path.lexists(partial):
        os.unlink(partial)  # a half-copied file is never trusted
        fsync_dir(partial.parent)
    src_here, dst_here = os.path.lexists(src), os.path.lexists(dst)
    if dst_here and not src_here:
        method = "rename" if _same_device(dst.parent, src.parent) else "copy"
        return {"type": "done", "key": move.key, "method": method, "sha256": moved_digest(move)}
    if dst_here and src_here:  # copy renamed into place; the original not yet unlinked
        if _same_content(src, dst, move.facts.kind):
            os.unlink(src)
            fsync_dir(src.parent)
            return {"type": "done", "key": move.key, "method": "copy", "sha256": moved_digest(move)}
        # e.g. an interrupted restore, after which the user put a new copy of the model in place
        return {"type": "skip", "key": move.key, "why": f"both {src} and {dst} exist and differ; neither was touched"}
    return None


def _same_device(a: Path, b: Path) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:  # a parent removed after the crash
        return False


def _same_content(a: Path, b: Path, kind: str) -> bool:
    if kind == "symlink":
        return os.path.islink(a) and os.path.islink(b) and os.readlink(a) == os.readlink(b)
    return file_sha256(a) == file_sha256(b)
