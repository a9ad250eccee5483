"""File operations through directory descriptors: the only way a mutating run touches a store or a
backup folder.

A :class:`Tree` opens its root once and each subfolder once, every component with
``O_DIRECTORY | O_NOFOLLOW``; every rename, link, unlink and open then names an entry *relative to
the descriptor of its folder*. A folder swapped for a symbolic link after it was opened cannot
redirect anything (the open fails with ELOOP, or the descriptor still points at the original
folder). :func:`rename_noreplace` never replaces an existing entry. Do not use these helpers for
read-only scanning (``scan.py`` lstat's paths and follows nothing it acts on).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from types import TracebackType

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RENAME_NOREPLACE = 1


def unsafe_name(name: object) -> str:
    """Why ``name`` (from a file on disk: a backup index, a journal) could reach outside the folder it
    is relative to ("" when it cannot): absolute, empty, NUL, an empty, '.' or '..' part. Any other
    byte is allowed: a file the tool moved may have any name the filesystem allows."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if name.startswith("/"):
        return "must be relative to the store, not an absolute path"
    if "\x00" in name:
        return "must not contain a NUL byte"
    parts = name.split("/")
    if ".." in parts:
        return "must not contain '..'"
    if "" in parts or "." in parts:
        return "must not have an empty or '.' part"
    return ""


def split(name: str) -> tuple[str, str]:
    """``("a/b", "c")`` for the store-relative ``"a/b/c"``; ``("", "c")`` for ``"c"``."""
    parent, _, base = name.rpartition("/")
    return parent, base


class Tree:
    """Open descriptors of one folder tree (a store, a backup folder or one of its runs). Use it as a
    context manager; :meth:`dir` opens (and with ``create`` makes) a subfolder once and caches it."""

    def __init__(self, path: str, root_fd: int, mode: int = 0o700) -> None:
        self.path = path
        self.mode = mode  # of the subfolders :meth:`dir` makes (before the umask)
        self._fds: dict[str, int] = {"": root_fd}

    @classmethod
    def open(cls, path: str | os.PathLike[str], create: bool = False, follow: bool = False, mode: int = 0o700) -> Tree:
        """Open the folder ``path``. Its last component is never followed unless ``follow`` (an
        operator's own path, resolved once at scan time); ``create`` makes it (mode 0700) if absent."""
        flags = DIR_FLAGS & ~os.O_NOFOLLOW if follow else DIR_FLAGS
        path = os.fspath(path)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            if not create:
                raise
            os.makedirs(path, mode=0o700, exist_ok=True)
            fsync_dir(os.path.dirname(path.rstrip("/")) or "/")
            fd = os.open(path, flags)
        return cls(path, fd, mode)

    @property
    def fd(self) -> int:
        return self._fds[""]

    def identity(self) -> tuple[int, int]:
        """``(st_dev, st_ino)`` of the root folder as opened."""
        st = os.fstat(self.fd)
        return st.st_dev, st.st_ino

    def dir(self, parent: str, create: bool = False) -> int:
        """The descriptor of subfolder ``parent`` ('/'-separated, "" for the root). Raises
        FileNotFoundError if it is absent (and not ``create``), OSError ELOOP/ENOTDIR if any
        component is a link or not a folder."""
        if parent in self._fds:
            return self._fds[parent]
        above, base = split(parent)
        up = self.dir(above, create)
        try:
            fd = os.open(base, DIR_FLAGS, dir_fd=up)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(base, self.mode, dir_fd=up)
            os.fsync(up)
            fd = os.open(base, DIR_FLAGS, dir_fd=up)
        self._fds[parent] = fd
        return fd

    def child(self, name: str) -> Tree:
        """A new :class:`Tree` for the folder ``name`` directly inside this one (never a link)."""
        return Tree(os.path.join(self.path, name), os.open(name, DIR_FLAGS, dir_fd=self.fd))

    def lstat(self, name: str) -> os.stat_result | None:
        """``lstat`` of the store-relative ``name``, or None when it (or a folder above it) is absent
        or is no longer a real folder."""
        parent, base = split(name)
        try:
            return os.stat(base, dir_fd=self.dir(parent), follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None
            raise

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a folder by path (only for folders the tool just made, or the journal's folder)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _renameat2() -> object | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.renameat2
    except (OSError, AttributeError):
        return None


_RENAMEAT2 = _renameat2()


def rename_noreplace(src_fd: int, src: str, dst_fd: int, dst: str) -> None:
    """Rename ``src`` (in folder ``src_fd``) to ``dst`` (in ``dst_fd``); FileExistsError if ``dst``
    exists, never replacing it. ``renameat2(RENAME_NOREPLACE)`` where the filesystem has it, else a
    hard link then an unlink (both names are the same inode in between: recovery treats that as done)."""
    if _RENAMEAT2 is not None:
        fn = _RENAMEAT2
        ret = fn(src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), _RENAME_NOREPLACE)  # type: ignore[operator]
        if ret == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), dst)
    os.link(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
    os.unlink(src, dir_fd=src_fd)


def written_by_me(st: os.stat_result) -> bool:
    """Whether ``st`` is a regular file this (effective) user owns, with one link: a file the tool
    wrote, not one another user planted or hard-linked into a folder they can write."""
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_nlink == 1


def open_regular(dir_fd: int, name: str) -> int:
    """Open ``name`` in ``dir_fd`` for reading, never following a link nor blocking on a FIFO;
    OSError EINVAL unless it is a regular file."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", name)
    os.set_blocking(fd, True)
    return fd
