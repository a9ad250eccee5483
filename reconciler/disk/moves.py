"""One move of one entry, made so that it cannot be redirected and never loses a byte (the data of
a run, :class:`~.records.Move` and :class:`~.records.RunHeader`, is ``records.py``'s).

:class:`Trees` holds the folder descriptors a run acts through. :func:`move_entry` moves one entry:
within one filesystem a rename that never replaces; across filesystems (or on EXDEV) a copy to a
temporary name the run owns, fsync, verify, a check that the source did not change meanwhile, a
rename into place that never replaces, then the unlink of the original. It raises :class:`Skip`
when the entry must stay where it is. The run itself (journal, indexes) is ``transfer.py``'s.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import TracebackType

from ..base.errors import ApplyError
from ..base.fsops import Tree, rename_noreplace, split
from ..base.progress import Progress, Silent
from . import faults
from .catalogue import BackupRun, Status, create_run, open_backup_root
from .copying import Skip, check_unchanged, copy_verified
from .records import Move, Role, RunHeader


class Unsettled(Exception):
    """The entry did move (``method``, ``digest``), but a step after the move failed (an fsync of its
    folders): the run records the move, then stops with ``error``."""

    def __init__(self, method: str, digest: str | None, identity: tuple[int, int, int, int] | None, error: OSError) -> None:
        super().__init__(str(error))
        self.method = method
        self.digest = digest
        self.identity = identity
        self.error = error


class Trees:
    """The folder descriptors a run acts through: the store, the backup folder, and run folders
    (a new run's folder is made on its first move, so a run that moves nothing makes none).
    :meth:`open` checks the backup folder, and that the store is the one the run began on."""

    def __init__(self, header: RunHeader, store: Tree, backup: Tree, progress: Progress | None = None) -> None:
        self.header = header
        self.progress = progress or Silent()  # bytes moved: all at once for a rename, chunk by chunk for a copy
        self.store = store
        self.backup = backup
        self.runs: dict[str, Tree] = {}
        self.unsynced: set[int] = set()  # folders a rename changed, fsynced once per group commit

    @classmethod
    def open(cls, header: RunHeader, progress: Progress | None = None) -> Trees:
        """ConfigError for an unusable backup folder; ApplyError for a store that is gone or replaced."""
        try:
            store = Tree.open(header.store, mode=0o777)  # folders a restore remakes: as the umask says
        except OSError as exc:
            raise ApplyError(f"cannot open store folder {header.store}: {exc.strerror or exc}; nothing was moved") from None
        if header.store_id is not None and store.identity() != header.store_id:
            store.close()
            raise ApplyError(
                f"store folder {header.store} was replaced since its run began (another folder is there now); nothing was moved"
            )
        try:
            backup = open_backup_root(Path(header.run_dir).parent)
        except BaseException:
            store.close()
            raise
        return cls(header, store, backup, progress)

    def run(self, run_dir: str, create: bool) -> Tree | None:
        """The run folder ``run_dir`` (made, with an in-progress index, when ``create``), or None
        when it does not exist."""
        if run_dir not in self.runs:
            name = Path(run_dir).name
            if create:
                h = self.header
                new = BackupRun(name, Path(run_dir), h.created_ns, Status.IN_PROGRESS, h.store, h.manifest, store_id=h.store_id)
                self.runs[run_dir] = create_run(self.backup, new)
            else:
                try:
                    self.runs[run_dir] = self.backup.child(name)
                except (FileNotFoundError, NotADirectoryError):
                    return None
        return self.runs[run_dir]

    def ends(self, move: Move, create: bool) -> tuple[Tree | None, Tree | None]:
        """The (source, destination) trees of ``move``; a run folder may be None (absent)."""
        h = self.header
        if move.role in (Role.RESTORE, Role.INSTALL):
            return self.run(h.run_dir, False), self.store
        run_dir = h.run_dir if move.role is Role.BACKUP else h.displaced_run_dir
        assert run_dir is not None
        return self.store, self.run(run_dir, create)

    def close(self) -> None:
        for tree in (self.store, self.backup, *self.runs.values()):
            tree.close()

    def __enter__(self) -> Trees:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def placed_identity(tree: Tree, move: Move) -> tuple[int, int, int, int] | None:
    """(device, inode, size, mtime_ns) of what a move put at its destination in ``tree``."""
    st = tree.lstat(move.name)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) if st is not None else None


def move_entry(header: RunHeader, index: int, move: Move, trees: Trees) -> tuple[str, str | None, tuple[int, int, int, int] | None]:
    """Move one entry, never following a link (a link is moved as a link), never replacing anything.

    Returns the method, the sha256 of the moved bytes when known without reading them again (a copy
    hashes what it writes; a rename reads nothing), and the placed entry's identity. Raises Skip when
    the entry must stay where it is.
    """
    source, _ = trees.ends(move, create=False)
    if source is None:
        raise Skip("its backup run folder is gone")
    parent, base = split(move.name)
    try:
        src_fd = source.dir(parent)
    except (FileNotFoundError, NotADirectoryError):
        raise Skip("vanished since the plan was made (its folder is gone)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Skip(f"its folder {parent!r} was replaced by a symbolic link; left in place") from None
        raise
    check_unchanged(move, source.lstat(move.name))
    _, dest = trees.ends(move, create=True)
    assert dest is not None
    try:
        dst_fd = dest.dir(parent, create=True)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EEXIST):
            raise Skip(f"something other than a folder is at {parent!r} in {dest.path}; left in place") from None
        raise
    if dest.lstat(move.name) is not None:
        raise Skip(f"a file appeared at {os.path.join(dest.path, move.name)}; both were kept")
    try:
        rename_noreplace(src_fd, base, dst_fd, base)
    except FileExistsError:
        raise Skip(f"a file appeared at {os.path.join(dest.path, move.name)}; both were kept") from None
    except OSError as exc:
        if exc.errno != errno.EXDEV:  # another filesystem, or two bind mounts of one
            raise
        digest = copy_verified(move, src_fd, dst_fd, header.temp(index), os.path.join(dest.path, move.name), trees.progress)
        identity = placed_identity(dest, move)
        _sync(src_fd, dst_fd, "copy", digest, identity)
        return "copy", digest, identity
    faults.step("renamed")
    identity = placed_identity(dest, move)  # a rename copies nothing: no byte is read, its identity is the proof
    trees.unsynced.update((src_fd, dst_fd))  # fsynced with the rest of its group (``transfer.run_moves``)
    return "rename", move.facts.sha256, identity


def _sync(src_fd: int, dst_fd: int, method: str, digest: str | None, identity: tuple[int, int, int, int] | None) -> None:
    try:
        os.fsync(dst_fd)
        os.fsync(src_fd)
    except OSError as exc:
        raise Unsettled(method, digest, identity, exc) from None
