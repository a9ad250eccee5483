"""The backup catalogue: backup runs, their index files (``layout.INDEX_NAME``), listing, finding and pruning.

A backup folder holds one sub-folder per run (``<backup>/<run id>/``), with the moved files under
their store-relative names and an index saying what the run holds and which store it came
from (path, device and inode). Several stores may share a backup folder: every listing, count and
prune is of one store's runs only. This module reads and writes indexes (through directory
descriptors, never following a link) and deletes pruned runs entry by entry; it never moves a model
file (that is ``transfer.py``'s job) and decides nothing about the store.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..base.errors import BackupError, ConfigError, UnknownRunError
from ..base.fsops import DIR_FLAGS, Tree, open_regular, split, unsafe_name
from ..base.layout import INDEX_NAME, LEGACY_INDEX_NAME
from . import faults

INDEX_FORMAT = 1


class Status:
    """A run's ``status``: in-progress until its run finalises it, then complete or failed (or
    abandoned)."""

    IN_PROGRESS = "in-progress"
    COMPLETE = "complete"
    FAILED = "failed"
    ABANDONED = "abandoned"  # an unfinished run released by ``recover --abandon``: lists what is really in it


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
class StoreId:
    """Which store a run belongs to: its resolved path and the device/inode of its folder (None for
    an index written before runs recorded them, or a store that is gone: matched by path alone)."""

    path: str
    dev_ino: tuple[int, int] | None

    @classmethod
    def of(cls, store_root: str) -> StoreId:
        try:
            st = os.stat(store_root)
        except OSError:
            return cls(store_root, None)
        return cls(store_root, (st.st_dev, st.st_ino))

    def owns(self, run: BackupRun) -> bool:
        if run.store != self.path:
            return False
        return self.dev_ino is None or run.store_id is None or run.store_id == self.dev_ino


@dataclass(frozen=True)
class Entry:
    """One entry a run holds: its store-relative name, what it was and how it got there.

    ``sha256`` is of the bytes when it is known without reading them again (a copy hashes what it
    writes; a rename reads nothing: None unless the scan knew it). ``identity`` is (device, inode,
    size, mtime_ns) of the entry as placed in the run: a restore checks it instead of hashing.
    ``method`` is ``rename`` (same filesystem) or ``copy`` (copied, fsynced, verified, original
    unlinked). ``restored_ns`` is set once a restore put it back (the index keeps it, as the run's
    audit trail).
    """

    name: str
    kind: str
    size: int
    sha256: str | None
    link_target: str | None
    method: str
    restored_ns: int | None = None
    identity: tuple[int, int, int, int] | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        restored = data.get("restored_ns")
        ident = data.get("identity")
        return cls(
            str(data["name"]),
            str(data["kind"]),
            int(data.get("size", 0)),
            data.get("sha256"),
            data.get("link_target"),
            str(data.get("method", "rename")),
            int(restored) if restored is not None else None,
            (int(ident[0]), int(ident[1]), int(ident[2]), int(ident[3])) if isinstance(ident, list) and len(ident) == 4 else None,
        )


@dataclass(frozen=True)
class BackupRun:
    """A backup run as recorded in its index. ``skipped`` lists (name, why) an apply left."""

    run_id: str
    path: Path
    created_ns: int
    status: str
    store: str
    manifest: Provenance
    entries: tuple[Entry, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    store_id: tuple[int, int] | None = None

    @property
    def held(self) -> tuple[Entry, ...]:
        """The entries still in the run (not restored)."""
        return tuple(e for e in self.entries if e.restored_ns is None)

    @property
    def size(self) -> int:
        return sum(e.size for e in self.held)

    @property
    def state(self) -> str:
        """The status to show: ``restored`` / ``partly restored`` for a complete run restored from."""
        if self.status != Status.COMPLETE or len(self.held) == len(self.entries):
            return self.status
        return "restored" if not self.held else "partly restored"

    def to_json(self) -> dict[str, Any]:
        """The index document."""
        doc: dict[str, Any] = {
            "format_version": INDEX_FORMAT,
            "tool": TOOL,
            "run_id": self.run_id,
            "created_ns": self.created_ns,
            "status": self.status,
            "store": self.store,
            "store_id": list(self.store_id) if self.store_id else None,
            "manifest": asdict(self.manifest),
            "entries": [
                {k: v for k, v in asdict(e).items() if k not in ("restored_ns", "identity") or v is not None} for e in self.entries
            ],
        }
        if self.skipped:
            doc["skipped"] = [{"name": n, "why": w} for n, w in self.skipped]
        return doc


TOOL = "ocr-reconcile"
RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}(-displaced)?")


def new_run_id() -> str:
    """A sortable, unique-enough run id: UTC time plus random hex."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def open_backup_root(backup_root: Path, what: str = "backup folder") -> Tree:
    """Open (creating it, mode 0700) the backup folder: checked before a run writes its journal.
    ConfigError when it is a link, not a folder, owned by another user, writable by every user, or
    not writable."""
    try:
        tree = Tree.open(backup_root, create=True)
    except OSError as exc:
        link = exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(backup_root)
        why = "it is a symbolic link, which is never followed" if link or exc.errno == errno.ELOOP else exc.strerror or str(exc)
        raise ConfigError(f"{what} {backup_root} cannot be used: {why}; nothing was changed") from None
    st = os.fstat(tree.fd)
    problem = ""
    if st.st_uid != os.geteuid():
        problem = f"it is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})"
    elif st.st_mode & stat.S_IWOTH:
        problem = "every user may write in it (mode o+w); it must be out of other users' reach"
    elif not os.access(backup_root, os.W_OK | os.X_OK):
        problem = "it is not writable"
    if problem:
        tree.close()
        raise ConfigError(f"{what} {backup_root} cannot be used: {problem}; nothing was changed")
    return tree


def _read_index(dir_fd: int) -> dict[str, Any]:
    """The run's index document (OSError if it is absent, a link or not a regular file)."""
    try:
        fd = open_regular(dir_fd, INDEX_NAME)
    except FileNotFoundError:
        fd = open_regular(dir_fd, LEGACY_INDEX_NAME)
    try:
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = json.loads(fh.read(16 * 1024 * 1024))
    finally:
        os.close(fd)
    if not isinstance(data, dict):
        raise ValueError("index is not an object")
    return data


def read_run(run_dir: Path) -> BackupRun | None:
    """The run in ``run_dir``, or None when it is not a folder (a link is never followed), or has
    no readable, well-formed index whose run id is the folder's name."""
    try:
        fd = os.open(run_dir, DIR_FLAGS)
    except OSError:
        return None
    try:
        data = _read_index(fd)
        store_id = data.get("store_id")
        run = BackupRun(
            run_id=str(data["run_id"]),
            path=run_dir,
            created_ns=int(data["created_ns"]),
            status=str(data["status"]),
            store=str(data["store"]),
            manifest=Provenance.from_json(data.get("manifest")),
            entries=tuple(Entry.from_json(e) for e in data["entries"]),
            skipped=tuple((str(s["name"]), str(s["why"])) for s in data.get("skipped") or ()),
            store_id=(int(store_id[0]), int(store_id[1])) if store_id else None,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None
    finally:
        os.close(fd)
    return run if run.run_id == run_dir.name else None


def list_runs(backup_root: Path, store: StoreId | None = None) -> list[BackupRun]:
    """The backup runs under ``backup_root`` (of ``store`` only, when given), newest first. Folders
    without a readable index are skipped."""
    try:
        names = os.listdir(backup_root)
    except OSError:
        return []
    runs = [run for name in names if (run := read_run(backup_root / name)) is not None and (store is None or store.owns(run))]
    return sorted(runs, key=lambda r: (r.created_ns, r.run_id), reverse=True)


def find_run(backup_root: Path, run_id: str, store: StoreId | None = None) -> BackupRun:
    """The run called ``run_id`` (a unique prefix is enough), of ``store`` when given."""
    runs = list_runs(backup_root, store)
    found = [r for r in runs if r.run_id == run_id] or [r for r in runs if r.run_id.startswith(run_id)]
    if len(found) != 1:
        raise UnknownRunError(run_id, str(backup_root), [r.run_id for r in found])
    return found[0]


def create_run(backup: Tree, run: BackupRun) -> Tree:
    """Make the run folder (mode 0700) with an in-progress index, or open it when it is already this
    run's (recovery). Raises FileExistsError for a folder of that name that is not this run's."""
    try:
        os.mkdir(run.run_id, 0o700, dir_fd=backup.fd)
        os.fsync(backup.fd)
        made = True
    except FileExistsError:
        made = False
    tree = backup.child(run.run_id)
    if not made:
        existing = read_run(Path(tree.path))
        if existing is None or existing.store != run.store or existing.created_ns != run.created_ns:
            tree.close()
            raise FileExistsError(errno.EEXIST, f"{tree.path} exists and is not this run's folder")
        return tree
    write_index(tree, replace(run, status=Status.IN_PROGRESS, entries=(), skipped=()))
    faults.step("index-created")
    return tree


def write_index(tree: Tree, run: BackupRun) -> None:
    """Replace the run's index atomically (temp file, fsync, rename, fsync the folder). BackupError when
    it cannot be written (a full disk): the files stay where they are, and the half-written temp goes."""
    tmp = INDEX_NAME + ".tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=tree.fd)  # left by a crash of this run (the folder is the tool's)
    data = memoryview((json.dumps(run.to_json(), indent=2, sort_keys=True) + "\n").encode())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=tree.fd)
        try:
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, INDEX_NAME, src_dir_fd=tree.fd, dst_dir_fd=tree.fd)
        os.fsync(tree.fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=tree.fd)
        raise BackupError(
            f"cannot write the index of backup run {tree.path}: {exc.strerror or exc}; every file is whole in the store or in "
            "that run: free space on its filesystem, then recover the store (its journal is kept)"
        ) from None


def mark_restored(tree: Tree, names: Iterable[str], when_ns: int) -> None:
    """Mark restored ``names`` in the run's index; the index (and the run folder) stay."""
    run = read_run(Path(tree.path))
    if run is None:
        return
    gone = set(names)
    entries = tuple(replace(e, restored_ns=when_ns) if e.name in gone and e.restored_ns is None else e for e in run.entries)
    write_index(tree, replace(run, entries=entries))
    remove_empty_folders(tree, gone)


def remove_empty_folders(tree: Tree, names: Iterable[str]) -> None:
    """Remove the folders above ``names`` in ``tree`` that are empty now, deepest first."""
    folders = sorted({p for n in names if not unsafe_name(n) for p in _parents(n)}, key=lambda p: p.count("/"), reverse=True)
    for folder in folders:
        above, base = split(folder)
        with contextlib.suppress(OSError):
            os.rmdir(base, dir_fd=tree.dir(above))


def _parents(name: str) -> list[str]:
    parts = name.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
