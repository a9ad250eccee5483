"""Mutate: carry out a plan by moving files to a backup, restore them, and manage backup runs.

This is the only module that changes the store. ``apply_plan`` consumes a :class:`Plan` and
decides nothing new: it moves exactly the plan's ``delete`` set, and skips (never moves) an entry
whose identity changed since the scan. Within one filesystem a move is one ``os.rename`` (no data
copied); across filesystems it is copy to a temporary name, fsync, verify, rename, then unlink, so
that at every instant each file is whole in the store or whole in the backup.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ApplyError, BackupError, CannotConvergeError, ConfigError, GuardError
from .plan import Action, Plan
from .scan import HASH_CHUNK, FileFacts, file_sha256, stat_entry

INDEX = "index.json"
INDEX_FORMAT = 1
BACKUP_SUFFIX = ".ocr-reconcile-backups"
PARTIAL = ".ocr-reconcile-partial"


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


def apply_plan(plan: Plan, backup_root: Path, keep: int | None, run_id: str | None = None) -> ApplyResult:
    """Move the plan's ``delete`` entries into ``backup_root/<run id>/`` and prune old runs.

    Refuses a plan that cannot converge. Raises ApplyError if a move fails; the index then lists
    exactly what moved, and everything else is untouched in the store.
    """
    if not plan.converges:
        missing = ", ".join(c.name for c in plan.of(Action.MISSING))
        raise CannotConvergeError(f"declared models are missing or differ from their pin: {missing}; nothing was moved")
    check_backup_root(plan.scan.root, backup_root)
    if plan.violations:
        raise GuardError("; ".join(plan.violations) + "; nothing was moved")
    if not plan.has_changes:
        return ApplyResult(run_id=None, run_dir=None)
    run_id = run_id or new_run_id()
    run_dir = backup_root / run_id
    try:
        run_dir.mkdir(parents=True)
    except OSError as exc:
        raise ApplyError(f"cannot create backup folder {run_dir}: {exc.strerror or exc}; nothing was moved") from None
    manifest = {"source": plan.manifest.source, "sha256": plan.manifest.sha256, "name": plan.manifest.name}
    index = _new_index(run_id, plan.scan.root, manifest)
    _write_index(run_dir, index)
    moved: list[Moved] = []
    skipped: list[tuple[str, str]] = []
    for change in plan.to_delete:
        assert change.before is not None  # a delete always has a scanned entry
        why = _changed_since_scan(plan.scan.root, change.before)
        if why:
            skipped.append((change.name, why))
            continue
        try:
            item = _move(Path(plan.scan.root) / change.name, run_dir / change.name, change.before)
        except OSError as exc:
            index["status"] = "failed"
            _write_index(run_dir, index)
            done = ", ".join(m.name for m in moved) or "none"
            raise ApplyError(
                f"moving {change.name} to {run_dir} failed: {exc.strerror or exc}; it is still in the store. "
                f"Moved before the failure: {done}"
            ) from None
        moved.append(item)
        index["entries"].append(_entry(item))
        _write_index(run_dir, index)
    index["status"] = "complete"
    index["skipped"] = [{"name": n, "why": w} for n, w in skipped]
    _write_index(run_dir, index)
    pruned = prune_runs(backup_root, keep) if keep is not None else ()
    return ApplyResult(run_id, run_dir, tuple(moved), tuple(skipped), pruned)


def _changed_since_scan(root: str, facts: FileFacts) -> str:
    now = stat_entry(root, facts.name, facts.symlinked_folder)
    if now is None:
        return "vanished since the plan was made"
    if now.identity != facts.identity:
        return "changed since the plan was made; left in place"
    return ""


def _move(src: Path, dst: Path, facts: FileFacts) -> Moved:
    """Move one entry; never follows a symlink (a link is moved as a link)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(dst):
        raise FileExistsError(17, f"{dst} already exists in the backup")
    same_fs = os.lstat(src).st_dev == os.stat(dst.parent).st_dev
    if same_fs:
        os.rename(src, dst)
        method = "rename"
    else:
        _copy_verified(src, dst, facts)
        os.unlink(src)
        method = "copy"
    _fsync_dir(dst.parent)
    _fsync_dir(src.parent)
    digest = None if facts.kind == "symlink" else file_sha256(os.fspath(dst))
    return Moved(facts.name, facts.kind, facts.size, digest, facts.link_target, method)


def _copy_verified(src: Path, dst: Path, facts: FileFacts) -> None:
    """Copy across filesystems to a temporary name, fsync, verify, then rename into place."""
    tmp = dst.with_name(dst.name + PARTIAL)
    try:
        if facts.kind == "symlink":
            os.symlink(os.readlink(src), tmp)
            if os.readlink(tmp) != os.readlink(src):
                raise OSError(5, "symlink copy differs")
        else:
            want = hashlib.sha256()
            with open(src, "rb") as fin, open(tmp, "xb") as fout:
                while chunk := fin.read(HASH_CHUNK):
                    want.update(chunk)
                    fout.write(chunk)
                fout.flush()
                os.fsync(fout.fileno())
            shutil.copystat(src, tmp)
            if file_sha256(os.fspath(tmp)) != want.hexdigest():
                raise OSError(5, f"verification of the copy of {src} failed")
        os.rename(tmp, dst)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _entry(item: Moved) -> dict[str, Any]:
    return {
        "name": item.name,
        "kind": item.kind,
        "size": item.size,
        "sha256": item.sha256,
        "link_target": item.link_target,
        "method": item.method,
    }


def _new_index(run_id: str, store_root: str, manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        "format_version": INDEX_FORMAT,
        "run_id": run_id,
        "created_ns": time.time_ns(),
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
    _fsync_dir(run_dir)


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
    """Put the run's entries (or just ``names``) back into the store.

    Checks everything before moving anything: an unknown name, or a different file already at a
    destination, refuses the whole restore unless ``force``, in which case each displaced file is
    first moved into a new backup run (nothing is overwritten or lost).
    """
    root = store_root or run.store
    if not os.path.isdir(root):
        raise BackupError(f"store folder {root} does not exist; pass --store to restore elsewhere")
    by_name = {e["name"]: e for e in run.entries}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise BackupError(f"run {run.run_id} holds no {', '.join(map(repr, unknown))}")
    selected = [by_name[n] for n in (names or list(by_name))]
    for entry in selected:
        held = run.path / entry["name"]
        if not os.path.lexists(held):
            raise BackupError(f"backup file {held} is missing; nothing was restored")
        if entry["kind"] == "file" and file_sha256(os.fspath(held)) != entry.get("sha256"):
            raise BackupError(f"backup file {held} does not match the sha256 in its index; nothing was restored")
    present, conflicts = _classify_destinations(root, selected)
    if conflicts and not force:
        raise BackupError(
            "a different file is in the store at "
            + ", ".join(conflicts)
            + "; nothing was restored (--force moves it to a new backup run first)"
        )
    displaced_run = _displace(root, run, conflicts) if conflicts else None
    restored: list[str] = []
    remaining = {e["name"]: e for e in run.entries}
    for entry in selected:
        name = entry["name"]
        if name in present:
            continue
        facts = FileFacts(name, entry["kind"], entry["size"], 0, 0, 0, link_target=entry.get("link_target"))
        try:
            _move(run.path / name, Path(root) / name, facts)
        except OSError as exc:
            _rewrite_entries(run, remaining.values())
            raise BackupError(
                f"restoring {name} failed: {exc.strerror or exc}; restored before it: {', '.join(restored) or 'none'}"
            ) from None
        restored.append(name)
        del remaining[name]
        _rewrite_entries(run, remaining.values())
    if not remaining:
        shutil.rmtree(run.path)
    return RestoreResult(tuple(restored), tuple(sorted(present)), displaced_run)


def _classify_destinations(root: str, entries: Iterable[dict[str, Any]]) -> tuple[set[str], list[str]]:
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


def _displace(root: str, run: BackupRun, names: list[str]) -> str:
    """Move the files in the way of a forced restore into a new backup run."""
    run_id = new_run_id() + "-displaced"
    run_dir = run.path.parent / run_id
    run_dir.mkdir(parents=True)
    index = _new_index(run_id, root, {"source": f"restore --force of {run.run_id}", "sha256": None, "name": None})
    _write_index(run_dir, index)
    for name in names:
        facts = stat_entry(root, name)
        if facts is None:
            continue
        index["entries"].append(_entry(_move(Path(root) / name, run_dir / name, facts)))
        _write_index(run_dir, index)
    index["status"] = "complete"
    _write_index(run_dir, index)
    return run_id


def _rewrite_entries(run: BackupRun, entries: Iterable[dict[str, Any]]) -> None:
    data = json.loads((run.path / INDEX).read_text(encoding="utf-8"))
    data["entries"] = list(entries)
    _write_index(run.path, data)
