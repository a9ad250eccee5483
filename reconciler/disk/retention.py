"""Retention of backup runs: which runs ``backup.keep`` / ``backup.max_age`` (or ``backups prune``)
make surplus, and deleting a run as far as the tool made it (the files its index lists, then the
folders they leave empty, then the index). Only genuine runs of one store are ever deleted.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..base.fsops import Tree, split, unsafe_name, written_by_me
from ..base.layout import INDEX_NAME, LEGACY_INDEX_NAME
from .catalogue import RUN_ID, BackupRun, Status, StoreId, list_runs, remove_empty_folders


@dataclass(frozen=True)
class Retention:
    """What may delete old runs: ``keep`` the newest N runs that hold files, and runs older than
    ``max_age_s`` seconds. None disables either. The manifest's ``backup`` section, or ``backups prune``."""

    keep: int | None = None
    max_age_s: int | None = None

    @property
    def active(self) -> bool:
        return self.keep is not None or self.max_age_s is not None


def surplus_runs(backup_root: Path, store: StoreId, retention: Retention, now_ns: int, coming: int = 0) -> list[BackupRun]:
    """The runs ``retention`` makes surplus at ``now_ns``, once ``coming`` new runs exist (1 to preview
    an apply): complete runs of ``store`` that still hold files beyond the newest ``keep``, fully
    restored runs older than the oldest run kept, and runs older than ``max_age_s``. Only genuine runs
    (a tool-made index, a run-id folder name) ever qualify; failed and unfinished runs never do."""
    genuine = [r for r in list_runs(backup_root, store) if r.status == Status.COMPLETE and _genuine(r)]
    out: list[BackupRun] = []
    if retention.keep is not None:
        keep = max(retention.keep - coming, 0)
        holding = [r for r in genuine if r.held]
        cutoff = holding[keep - 1].created_ns if 0 < keep <= len(holding) else None
        out += holding[keep:]
        out += [r for r in genuine if not r.held and (keep == 0 or (cutoff is not None and r.created_ns < cutoff))]
    if retention.max_age_s is not None:
        out += [r for r in genuine if r.created_ns < now_ns - retention.max_age_s * 10**9]
    unique = {r.run_id: r for r in out}
    return sorted(unique.values(), key=lambda r: (r.created_ns, r.run_id), reverse=True)


def _genuine(run: BackupRun) -> bool:
    """A run folder the tool made: a run-id name, owned by this user with its index, and entry names
    that stay inside it (an index is data on disk: never trusted further than that)."""
    return bool(RUN_ID.fullmatch(run.run_id)) and not any(unsafe_name(e.name) for e in run.entries) and owned(run)


def owned(run: BackupRun) -> bool:
    """Whether the run's folder and index are this user's (another user may have planted them; an
    index with a second hard link is not one the tool wrote)."""
    try:
        folder = os.stat(run.path, follow_symlinks=False)
        try:
            index = os.stat(run.path / INDEX_NAME, follow_symlinks=False)
        except FileNotFoundError:
            index = os.stat(run.path / LEGACY_INDEX_NAME, follow_symlinks=False)
    except OSError:
        return False
    return folder.st_uid == os.geteuid() and stat.S_ISDIR(folder.st_mode) and written_by_me(index)


def prune_runs(backup: Tree, store: StoreId, retention: Retention, now_ns: int) -> tuple[str, ...]:
    """Delete the :func:`surplus_runs`, each only as far as the tool made it: the entries its index
    lists, the folders they were in once empty, the index, the run folder. Anything else put there
    stays (and keeps its folder)."""
    return delete_runs(backup, surplus_runs(Path(backup.path), store, retention, now_ns))


def delete_runs(backup: Tree, runs: Iterable[BackupRun]) -> tuple[str, ...]:
    """Delete ``runs`` (genuine runs of one store, chosen by the caller) as :func:`delete_run` does."""
    deleted = []
    for run in runs:
        delete_run(backup, run)
        deleted.append(run.run_id)
    return tuple(deleted)


def deletable(run: BackupRun) -> str:
    """Why ``run`` must not be deleted on request ("" when it may): unfinished, or not the tool's."""
    if run.status == Status.IN_PROGRESS:
        return "it is unfinished (recover it first)"
    return "" if _genuine(run) else "it is not a run this user's ocr-reconcile made"


def delete_run(backup: Tree, run: BackupRun) -> None:
    """Remove what the tool put in ``run``: its held entries, then empty folders, then the index."""
    with backup.child(run.run_id) as tree:
        for entry in run.held:
            if unsafe_name(entry.name):
                continue
            parent, base = split(entry.name)
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                os.unlink(base, dir_fd=tree.dir(parent))
        remove_if_empty(backup, run.run_id, tree, [e.name for e in run.entries])


def remove_if_empty(backup: Tree, run_id: str, tree: Tree, names: Iterable[str]) -> None:
    """Remove the index, then the now-empty folders of ``names`` and the run folder itself; a folder
    that still holds something (not the tool's) is left, with it."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(INDEX_NAME, dir_fd=tree.fd)
    remove_empty_folders(tree, names)
    try:
        os.rmdir(run_id, dir_fd=backup.fd)
    except OSError:
        return
    os.fsync(backup.fd)
