"""Mutate: carry out a plan by moving files to a backup, restore them, recover interrupted runs.

This is the only module that changes the store. ``apply_plan`` consumes a :class:`Plan` and
decides nothing new: it moves exactly the plan's ``delete`` set, and skips (never moves) an entry
whose identity changed since the scan. Every run (apply or restore) is a list of moves written to a
journal before the first one (``journal.py``); after each move a record is appended. Within one
filesystem a move is one ``os.rename`` (no data copied); across filesystems it is copy to a
temporary name, fsync, verify, rename into place, then unlink the original. So at every instant each
file is whole in the store or whole in the backup, and :func:`recover` can always finish a run that
a crash interrupted (roll forward). Callers hold the store lock (``journal.store_lock``).

Errors during a run: EACCES/EPERM on one file skips that file and goes on; any other OSError
(ENOSPC, EIO, …) stops the run. Either way the index and the message say exactly what moved.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import faults
from .errors import ApplyError, BackupError, CannotConvergeError, ConfigError, GuardError
from .journal import Journal, fsync_dir, journal_path, read_journal
from .plan import Action, Plan
from .scan import HASH_CHUNK, FileFacts, file_sha256, stat_entry

INDEX = "index.json"
INDEX_FORMAT = 1
BACKUP_SUFFIX = ".ocr-reconcile-backups"
PARTIAL = ".ocr-reconcile-partial"
_SKIP_ERRNOS = (errno.EACCES, errno.EPERM)


@dataclass(frozen=True)
class Move:
    """One intended move of one entry; ``facts`` is the identity it must still have when moved."""

    src: str
    dst: str
    role: str  # backup (store -> run), restore (run -> store), displace (store -> new run)
    facts: FileFacts

    @property
    def name(self) -> str:
        return self.facts.name

    def to_json(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "role": self.role, "facts": asdict(self.facts)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Move:
        return cls(data["src"], data["dst"], data["role"], FileFacts(**data["facts"]))


@dataclass(frozen=True)
class Moved:
    """One entry now in a backup run (or back in the store, for a restore)."""

    name: str
    kind: str
    size: int
    sha256: str | None
    link_target: str | None
    method: str  # "rename" (same filesystem) or "copy" (copy, fsync, verify, unlink)


@dataclass(frozen=True)
class ApplyResult:
    """What an apply did. ``run_id`` is None when there was nothing to move."""

    run_id: str | None
    run_dir: Path | None
    moved: tuple[Moved, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    pruned_runs: tuple[str, ...] = ()

    @property
    def bytes_moved(self) -> int:
        return sum(m.size for m in self.moved)


@dataclass(frozen=True)
class BackupRun:
    """A backup run as recorded in its ``index.json``."""

    run_id: str
    path: Path
    created_ns: int
    status: str
    store: str
    manifest: dict[str, Any]
    entries: tuple[dict[str, Any], ...] = field(default=())

    @property
    def size(self) -> int:
        return sum(int(e.get("size", 0)) for e in self.entries)


@dataclass(frozen=True)
class RestoreResult:
    """What a restore did: entries put back, entries already identical in the store, displaced files."""

    restored: tuple[str, ...]
    already_present: tuple[str, ...]
    displaced_run: str | None


@dataclass(frozen=True)
class Recovery:
    """What :func:`recover` found and did with an interrupted run."""

    op: str
    run_id: str | None
    finished: tuple[str, ...]  # moves completed by recovery
    already_done: tuple[str, ...]  # moves the crashed run had completed
    skipped: tuple[tuple[str, str], ...]


def default_backup_root(store_root: str) -> Path:
    """``<store>.ocr-reconcile-backups`` beside the store (the engine never lists a sibling)."""
    return Path(store_root.rstrip("/") + BACKUP_SUFFIX)


def check_backup_root(store_root: str, backup_root: Path) -> Path:
    """Refuse a backup folder inside the store (its files would be listed as models), or equal to it."""
    store_real = os.path.realpath(store_root)
    backup_real = os.path.realpath(backup_root)
    if backup_real == store_real or backup_real.startswith(store_real.rstrip("/") + "/"):
        raise ConfigError(f"backup folder {backup_root} is inside the store {store_root}; choose a folder beside it")
    return backup_root


def new_run_id() -> str:
    """A sortable, unique-enough run id: UTC time plus random hex."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


# -- apply ------------------------------------------------------------------------------------------


def refuse_unapplicable(plan: Plan, backup_root: Path) -> None:
    """Raise if ``plan`` must not be applied: missing models (exit 3), a backup folder inside the
    store, or a broken guard (exit 4). Call it before asking for confirmation; apply_plan calls it too."""
    if not plan.converges:
        missing = ", ".join(c.name for c in plan.of(Action.MISSING))
        raise CannotConvergeError(f"declared models are missing or differ from their pin: {missing}; nothing was moved")
    check_backup_root(plan.scan.root, backup_root)
    if plan.violations:
        raise GuardError("; ".join(plan.violations) + "; nothing was moved")


def apply_plan(plan: Plan, backup_root: Path, keep: int | None, run_id: str | None = None) -> ApplyResult:
    """Move the plan's ``delete`` entries into ``backup_root/<run id>/`` and prune old runs.

    Refuses a plan that cannot converge or breaks a guard. Raises ApplyError if the run had to stop;
    the index then lists exactly what moved, and everything else is untouched in the store.
    """
    refuse_unapplicable(plan, backup_root)
    if not plan.has_changes:
        return ApplyResult(run_id=None, run_dir=None)
    run_id = run_id or new_run_id()
    run_dir = backup_root / run_id
    root = Path(plan.scan.root)
    moves = []
    for change in plan.to_delete:
        assert change.before is not None  # a delete always has a scanned entry
        moves.append(Move(os.fspath(root / change.name), os.fspath(run_dir / change.name), "backup", change.before))
    header = {
        "op": "apply",
        "run_id": run_id,
        "run_dir": os.fspath(run_dir),
        "store": plan.scan.root,
        "manifest": {"source": plan.manifest.source, "sha256": plan.manifest.sha256, "name": plan.manifest.name},
        "keep": keep,
        "created_ns": time.time_ns(),
        "moves": [m.to_json() for m in moves],
    }
    outcome = _run(header, done={}, skipped={})
    if outcome.error:
        raise ApplyError(outcome.error)
    return ApplyResult(run_id, run_dir, outcome.moved, outcome.skipped, outcome.pruned)


@dataclass(frozen=True)
class _Outcome:
    moved: tuple[Moved, ...]
    skipped: tuple[tuple[str, str], ...]
    pruned: tuple[str, ...]
    error: str = ""


def _run(header: dict[str, Any], done: dict[str, dict[str, Any]], skipped: dict[str, str], journal: Journal | None = None) -> _Outcome:
    """Carry out (or, from :func:`recover`, finish) the moves of ``header``, then finalise the run."""
    path = journal_path(header["store"])
    if journal is None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            journal = Journal.begin(path, header)
        except FileExistsError:
            raise ApplyError(f"an interrupted run's journal {path} exists; run ocr-reconcile recover first") from None
        except OSError as exc:
            raise ApplyError(f"cannot write journal {path}: {exc.strerror or exc}; nothing was moved") from None
        faults.step("journal-begun")
    moves = [Move.from_json(m) for m in header["moves"]]
    _prepare_run_dirs(header)
    log: Journal = journal

    def skip(move: Move, why: str) -> None:
        skipped[_key(move)] = why
        log.record({"type": "skip", "key": _key(move), "why": why})

    error = ""
    for move in moves:
        if _key(move) in done or _key(move) in skipped:
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
            moved_names = ", ".join(_name(k) for k in done) or "none"
            error = (
                f"moving {move.name} failed: {exc.strerror or exc}; it is still whole where it was. Moved before the failure: {moved_names}"
            )
            break
        record = {"type": "done", "key": _key(move), "method": method, "sha256": digest}
        journal.record(record)
        done[_key(move)] = record
        faults.step("recorded")
    pruned = _finalise(header, done, skipped, failed=bool(error))
    journal.remove()
    faults.step("journal-removed")
    moved = tuple(_moved(m, done[_key(m)]) for m in moves if _key(m) in done and m.role != "displace")
    return _Outcome(moved, tuple((_name(k), w) for k, w in skipped.items()), pruned, error)


def _key(move: Move) -> str:
    """Journal key of a move: a name can be both displaced and restored in one run."""
    return f"{move.role}:{move.name}"


def _name(key: str) -> str:
    return key.split(":", 1)[1]


def _moved(move: Move, record: dict[str, Any]) -> Moved:
    f = move.facts
    return Moved(f.name, f.kind, f.size, record.get("sha256"), f.link_target, record.get("method", "rename"))


def _digest(move: Move) -> str | None:
    return None if move.facts.kind == "symlink" else file_sha256(move.dst)


def _changed(move: Move) -> str:
    """Why ``move.src`` is no longer the entry that was planned ("" if it still is)."""
    now = stat_entry(os.path.dirname(move.src), os.path.basename(move.src))
    if now is None:
        return "vanished since the plan was made"
    if now.identity != move.facts.identity:
        return "changed since the plan was made; left in place"
    return ""


def _move_entry(move: Move) -> tuple[str, str | None]:
    """Move one entry; never follows a symlink (a link is moved as a link).

    Returns the method and the sha256 of the moved bytes (None for a symlink).
    """
    src, dst = Path(move.src), Path(move.dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, f"{dst} already exists")
    if os.lstat(src).st_dev == os.stat(dst.parent).st_dev:
        os.rename(src, dst)
        method, digest = "rename", None
        faults.step("renamed")
    else:
        digest = _copy_verified(src, dst, move.facts.kind)
        os.unlink(src)
        method = "copy"
        faults.step("source-unlinked")
    fsync_dir(dst.parent)
    fsync_dir(src.parent)
    if method == "rename":
        digest = _digest(move)  # rename copies nothing, so hash once, from the new place
    return method, digest


def _copy_verified(src: Path, dst: Path, kind: str) -> str | None:
    """Copy across filesystems to a temporary name, fsync, verify, then rename into place.

    Returns the verified sha256 of the bytes (None for a symlink).
    """
    tmp = dst.with_name(dst.name + PARTIAL)
    if os.path.lexists(tmp):
        os.unlink(tmp)  # left by a crash: never trusted
    digest = None
    try:
        if kind == "symlink":
            os.symlink(os.readlink(src), tmp)
        else:
            want = hashlib.sha256()
            with open(src, "rb") as fin, open(tmp, "xb") as fout:
                while chunk := fin.read(HASH_CHUNK):
                    want.update(chunk)
                    fout.write(chunk)
                    fault = faults.copy_fault()
                    if fault:
                        raise fault
                fout.flush()
                os.fsync(fout.fileno())
            shutil.copystat(src, tmp)
            digest = want.hexdigest()
            if file_sha256(os.fspath(tmp)) != digest:
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


# -- finalising: index files ------------------------------------------------------------------------


def _prepare_run_dirs(header: dict[str, Any]) -> None:
    """Create the run folder(s) with an in-progress index, once (idempotent for recovery)."""
    for key in ("run_dir", "displaced_run_dir"):
        folder = header.get(key)
        if not folder or (header["op"] == "restore" and key == "run_dir"):
            continue
        run_dir = Path(folder)
        if not (run_dir / INDEX).exists():
            run_dir.mkdir(parents=True, exist_ok=True)
            fsync_dir(run_dir.parent)
            _write_index(run_dir, _new_index(run_dir.name, header["store"], header.get("manifest") or {}, header["created_ns"]))
            faults.step("index-created")


def _finalise(header: dict[str, Any], done: dict[str, dict[str, Any]], skipped: dict[str, str], failed: bool) -> tuple[str, ...]:
    """Write the indexes a finished (or stopped) run leaves behind; prune old runs after a full apply."""
    moves = [Move.from_json(m) for m in header["moves"]]
    status = "failed" if failed else "complete"
    if header["op"] == "apply":
        run_dir = Path(header["run_dir"])
        skips = [{"name": _name(k), "why": w} for k, w in skipped.items()]
        _write_run_index(run_dir, header, [m for m in moves if _key(m) in done], done, status, skips)
        faults.step("index-written")
        keep = header.get("keep")
        if failed or keep is None:
            return ()
        pruned = prune_runs(run_dir.parent, keep)
        faults.step("pruned")
        return pruned
    # restore: the displaced files get their own run; the source run loses what was restored
    if header.get("displaced_run_dir"):
        displaced = [m for m in moves if m.role == "displace" and _key(m) in done]
        _write_run_index(Path(header["displaced_run_dir"]), header, displaced, done, status)
    source = Path(header["run_dir"])
    restored = {m.name for m in moves if m.role == "restore" and _key(m) in done}
    if not (source / INDEX).exists():  # emptied and removed before a crash: nothing left to update
        return ()
    data = json.loads((source / INDEX).read_text(encoding="utf-8"))
    data["entries"] = [e for e in data["entries"] if e["name"] not in restored]
    if data["entries"]:
        _write_index(source, data)
    else:
        shutil.rmtree(source)
        fsync_dir(source.parent)
    faults.step("index-written")
    return ()


def _write_run_index(
    run_dir: Path,
    header: dict[str, Any],
    moved: list[Move],
    done: dict[str, dict[str, Any]],
    status: str,
    skipped: list[dict[str, str]] | None = None,
) -> None:
    """The final index of a run folder: one entry per moved file (its name, kind, size, sha256, …)."""
    index = _new_index(run_dir.name, header["store"], header["manifest"], header["created_ns"])
    index["entries"] = [asdict(_moved(m, done[_key(m)])) for m in moved]
    index["status"] = status
    if skipped is not None:
        index["skipped"] = skipped
    _write_index(run_dir, index)


def _new_index(run_id: str, store_root: str, manifest: dict[str, Any], created_ns: int) -> dict[str, Any]:
    return {
        "format_version": INDEX_FORMAT,
        "run_id": run_id,
        "created_ns": created_ns,
        "status": "in-progress",
        "store": store_root,
        "manifest": manifest,
        "entries": [],
    }


def _write_index(run_dir: Path, index: dict[str, Any]) -> None:
    """Replace the index atomically (temp file, fsync, rename, fsync the folder)."""
    tmp = run_dir / (INDEX + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(index, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, run_dir / INDEX)
    fsync_dir(run_dir)


# -- recovery -----------------------------------------------------------------------------------------


def pending_run(store_root: str) -> dict[str, Any] | None:
    """The header of an interrupted run on this store, if its journal is there (read-only)."""
    found = read_journal(journal_path(store_root))
    return found[0] if found else None


def recover(store_root: str) -> Recovery | None:
    """Finish an interrupted run (roll forward), or return None if there is none. Hold the lock.

    For each journaled move not recorded as done, the state on disk decides: moved but unrecorded
    (record it); copied and renamed but the original not yet unlinked (verify, unlink); not started
    or half-copied (discard the temporary copy, move it now); changed or vanished (skip). Safe to
    run again if it is itself interrupted.
    """
    path = journal_path(store_root)
    found = read_journal(path)
    if found is None:
        return None
    header, records = found
    if header["op"] == "torn":  # crashed while writing the header: nothing had moved
        os.unlink(path)
        fsync_dir(path.parent)
        return Recovery("torn", None, (), (), ())
    done = {r["key"]: r for r in records if r.get("type") == "done"}
    skipped = {r["key"]: r["why"] for r in records if r.get("type") == "skip"}
    journal = Journal.reopen(path)
    for move in (Move.from_json(m) for m in header["moves"]):
        if _key(move) in done or _key(move) in skipped:
            continue
        record = _settle(move)  # completed by the crashed run, but not yet recorded
        if record is not None:
            journal.record(record)
            done[_key(move)] = record
    already = tuple(_name(k) for k in done)
    outcome = _run(header, done, skipped, journal)
    finished = tuple(m.name for m in outcome.moved if m.name not in already)
    return Recovery(header["op"], header.get("run_id") or Path(header["run_dir"]).name, finished, already, outcome.skipped)


def _settle(move: Move) -> dict[str, Any] | None:
    """Bring a half-done move to a clean state: a done record if it had completed, else None (redo)."""
    src, dst = Path(move.src), Path(move.dst)
    partial = dst.with_name(dst.name + PARTIAL)
    if os.path.lexists(partial):
        os.unlink(partial)  # a half-copied file is never trusted
        fsync_dir(partial.parent)
    src_here, dst_here = os.path.lexists(src), os.path.lexists(dst)
    if dst_here and not src_here:
        method = "rename" if os.stat(dst.parent).st_dev == os.stat(src.parent).st_dev else "copy"
        return {"type": "done", "key": _key(move), "method": method, "sha256": _digest(move)}
    if dst_here and src_here:  # copy renamed into place; the original not yet unlinked
        if _same_content(src, dst, move.facts.kind):
            os.unlink(src)
            fsync_dir(src.parent)
            return {"type": "done", "key": _key(move), "method": "copy", "sha256": _digest(move)}
        os.unlink(dst)  # not ours to keep: the original is the truth
        fsync_dir(dst.parent)
    return None


def _same_content(a: Path, b: Path, kind: str) -> bool:
    if kind == "symlink":
        return os.path.islink(a) and os.path.islink(b) and os.readlink(a) == os.readlink(b)
    return file_sha256(os.fspath(a)) == file_sha256(os.fspath(b))


# -- backup runs and restore ----------------------------------------------------------------------------


def list_runs(backup_root: Path) -> list[BackupRun]:
    """Every backup run under ``backup_root``, newest first. Folders without a readable index are skipped."""
    if not backup_root.is_dir():
        return []
    runs = []
    for child in backup_root.iterdir():
        run = _read_run(child)
        if run is not None:
            runs.append(run)
    return sorted(runs, key=lambda r: (r.created_ns, r.run_id), reverse=True)


def _read_run(run_dir: Path) -> BackupRun | None:
    try:
        data = json.loads((run_dir / INDEX).read_text(encoding="utf-8"))
        return BackupRun(
            run_id=str(data["run_id"]),
            path=run_dir,
            created_ns=int(data["created_ns"]),
            status=str(data["status"]),
            store=str(data["store"]),
            manifest=dict(data.get("manifest") or {}),
            entries=tuple(data["entries"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def prune_runs(backup_root: Path, keep: int) -> tuple[str, ...]:
    """Delete complete runs beyond the newest ``keep``. Never touches failed or unfinished runs."""
    complete = [r for r in list_runs(backup_root) if r.status == "complete"]
    pruned = []
    for run in complete[keep:]:
        shutil.rmtree(run.path)
        pruned.append(run.run_id)
    return tuple(pruned)


def find_run(backup_root: Path, run_id: str) -> BackupRun:
    """The run called ``run_id`` (a unique prefix is enough)."""
    runs = [r for r in list_runs(backup_root) if r.run_id == run_id] or [r for r in list_runs(backup_root) if r.run_id.startswith(run_id)]
    if not runs:
        raise BackupError(f"no backup run {run_id!r} in {backup_root} (see: ocr-reconcile backups)")
    if len(runs) > 1:
        raise BackupError(f"backup run id {run_id!r} is ambiguous: {', '.join(r.run_id for r in runs)}")
    return runs[0]


def restore_run(run: BackupRun, names: Sequence[str], force: bool, store_root: str | None = None) -> RestoreResult:
    """Put the run's entries (or just ``names``) back into the store, as one journaled run.

    Checks everything before moving anything: an unknown name, a missing or corrupt backup copy, or
    a different file already at a destination refuses the whole restore, unless ``force``, in which
    case each file in the way is first moved into a new backup run (nothing is overwritten or lost).
    """
    root = store_root or run.store
    if not os.path.isdir(root):
        raise BackupError(f"store folder {root} does not exist; pass --store to restore elsewhere")
    by_name = {e["name"]: e for e in run.entries}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise BackupError(f"run {run.run_id} holds no {', '.join(map(repr, unknown))}")
    selected = [by_name[n] for n in (names or list(by_name))]
    held = {}
    for entry in selected:
        facts = stat_entry(os.fspath(run.path), entry["name"])
        if facts is None:
            raise BackupError(f"backup file {run.path / entry['name']} is missing; nothing was restored")
        if entry["kind"] == "file" and file_sha256(os.fspath(run.path / entry["name"])) != entry.get("sha256"):
            raise BackupError(f"backup file {run.path / entry['name']} does not match the sha256 in its index; nothing was restored")
        held[entry["name"]] = facts
    present, conflicts = _classify_destinations(root, selected)
    if conflicts and not force:
        raise BackupError(
            "a different file is in the store at "
            + ", ".join(conflicts)
            + "; nothing was restored (--force moves it to a new backup run first)"
        )
    displaced_dir = run.path.parent / (new_run_id() + "-displaced") if conflicts else None
    moves = []
    for name in conflicts:
        facts = stat_entry(root, name)
        if facts is not None and displaced_dir is not None:
            moves.append(Move(os.path.join(root, name), os.fspath(displaced_dir / name), "displace", facts))
    for entry in selected:
        if entry["name"] not in present:
            moves.append(Move(os.fspath(run.path / entry["name"]), os.path.join(root, entry["name"]), "restore", held[entry["name"]]))
    header = {
        "op": "restore",
        "run_id": run.run_id,
        "run_dir": os.fspath(run.path),
        "displaced_run_dir": os.fspath(displaced_dir) if displaced_dir else None,
        "store": root,
        "manifest": {"source": f"restore --force of {run.run_id}", "sha256": None, "name": None},
        "created_ns": time.time_ns(),
        "moves": [m.to_json() for m in moves],
    }
    outcome = _run(header, done={}, skipped={})
    if outcome.error:
        raise BackupError(outcome.error)
    restored = tuple(m.name for m in outcome.moved)
    return RestoreResult(restored, tuple(sorted(present)), displaced_dir.name if displaced_dir else None)


def _classify_destinations(root: str, entries: Sequence[dict[str, Any]]) -> tuple[set[str], list[str]]:
    present: set[str] = set()
    conflicts: list[str] = []
    for entry in entries:
        dst = os.path.join(root, entry["name"])
        if not os.path.lexists(dst):
            continue
        if entry["kind"] == "symlink":
            same = os.path.islink(dst) and os.readlink(dst) == entry.get("link_target")
        else:
            same = os.path.isfile(dst) and not os.path.islink(dst) and file_sha256(dst) == entry.get("sha256")
        if same:
            present.add(entry["name"])
        else:
            conflicts.append(entry["name"])
    return present, conflicts
