"""The backup catalogue: backup runs, their ``index.json`` files, listing, finding and pruning.

A backup folder holds one sub-folder per run (``<backup>/<run id>/``), with the moved files under
their store-relative names and an ``index.json`` saying what the run holds. This module reads and
writes those indexes and deletes whole runs when pruning; it never moves a model file (that is
``transfer.py``'s job) and decides nothing about the store.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from . import faults
from .errors import UnknownRunError
from .journal import fsync_dir
from .layout import INDEX_NAME

INDEX_FORMAT = 1


class Status:
    """A run's ``status``: in-progress until its run finalises it, then complete or failed."""

    IN_PROGRESS = "in-progress"
    COMPLETE = "complete"
    FAILED = "failed"


@dataclass(frozen=True)
class Provenance:
    """Which manifest a run served (or, for a run of displaced files, which restore made it)."""

    source: str | None
    sha256: str | None
    name: str | None

    @classmethod
    def from_json(cls, data: Any) -> Provenance:
        data = data if isinstance(data, dict) else {}
        return cls(data.get("source"), data.get("sha256"), data.get("name"))


@dataclass(frozen=True)
class Entry:
    """One entry a run holds: its store-relative name, what it was and how it got there.

    ``sha256`` is of the bytes (None for a symlink). ``method`` is ``rename`` (same filesystem) or
    ``copy`` (copied, fsynced, verified, original unlinked).
    """

    name: str
    kind: str
    size: int
    sha256: str | None
    link_target: str | None
    method: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        return cls(
            str(data["name"]),
            str(data["kind"]),
            int(data.get("size", 0)),
            data.get("sha256"),
            data.get("link_target"),
            str(data.get("method", "rename")),
        )


@dataclass(frozen=True)
class BackupRun:
    """A backup run as recorded in its ``index.json``. ``skipped`` lists (name, why) an apply left."""

    run_id: str
    path: Path
    created_ns: int
    status: str
    store: str
    manifest: Provenance
    entries: tuple[Entry, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)

    def to_json(self) -> dict[str, Any]:
        """The index document (``index.json``)."""
        doc: dict[str, Any] = {
            "format_version": INDEX_FORMAT,
            "run_id": self.run_id,
            "created_ns": self.created_ns,
            "status": self.status,
            "store": self.store,
            "manifest": asdict(self.manifest),
            "entries": [asdict(e) for e in self.entries],
        }
        if self.skipped:
            doc["skipped"] = [{"name": n, "why": w} for n, w in self.skipped]
        return doc


def new_run_id() -> str:
    """A sortable, unique-enough run id: UTC time plus random hex."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def read_run(run_dir: Path) -> BackupRun | None:
    """The run in ``run_dir``, or None when it has no readable, well-formed index."""
    try:
        data = json.loads((run_dir / INDEX_NAME).read_text(encoding="utf-8"))
        return BackupRun(
            run_id=str(data["run_id"]),
            path=run_dir,
            created_ns=int(data["created_ns"]),
            status=str(data["status"]),
            store=str(data["store"]),
            manifest=Provenance.from_json(data.get("manifest")),
            entries=tuple(Entry.from_json(e) for e in data["entries"]),
            skipped=tuple((str(s["name"]), str(s["why"])) for s in data.get("skipped") or ()),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def list_runs(backup_root: Path) -> list[BackupRun]:
    """Every backup run under ``backup_root``, newest first. Folders without a readable index are skipped."""
    if not backup_root.is_dir():
        return []
    runs = [run for child in backup_root.iterdir() if (run := read_run(child)) is not None]
    return sorted(runs, key=lambda r: (r.created_ns, r.run_id), reverse=True)


def find_run(backup_root: Path, run_id: str) -> BackupRun:
    """The run called ``run_id`` (a unique prefix is enough)."""
    runs = list_runs(backup_root)
    found = [r for r in runs if r.run_id == run_id] or [r for r in runs if r.run_id.startswith(run_id)]
    if len(found) != 1:
        raise UnknownRunError(run_id, str(backup_root), [r.run_id for r in found])
    return found[0]


def prune_runs(backup_root: Path, keep: int) -> tuple[str, ...]:
    """Delete complete runs beyond the newest ``keep``. Never touches failed or unfinished runs."""
    complete = [r for r in list_runs(backup_root) if r.status == Status.COMPLETE]
    pruned = []
    for run in complete[keep:]:
        shutil.rmtree(run.path)
        pruned.append(run.run_id)
    return tuple(pruned)


def create_run(run_dir: Path, store: str, manifest: Provenance, created_ns: int) -> None:
    """Create a run folder with an in-progress index, once (a no-op when it exists: recovery)."""
    if (run_dir / INDEX_NAME).exists():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fsync_dir(run_dir.parent)
    write_index(BackupRun(run_dir.name, run_dir, created_ns, Status.IN_PROGRESS, store, manifest))
    faults.step("index-created")


def write_index(run: BackupRun) -> None:
    """Replace the run's index atomically (temp file, fsync, rename, fsync the folder)."""
    tmp = run.path / (INDEX_NAME + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(run.to_json(), fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, run.path / INDEX_NAME)
    fsync_dir(run.path)


def forget_entries(run_dir: Path, names: Iterable[str]) -> None:
    """Drop restored ``names`` from a run's index; remove the run folder once it holds nothing."""
    run = read_run(run_dir)
    if run is None:  # emptied and removed before a crash: nothing left to update
        return
    gone = set(names)
    left = tuple(e for e in run.entries if e.name not in gone)
    if left:
        write_index(replace(run, entries=left))
    else:
        shutil.rmtree(run_dir)
        fsync_dir(run_dir.parent)
