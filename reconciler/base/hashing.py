"""The one way ocr-reconcile computes a file's SHA-256: the seam where a hash cache will plug in.

Every hash of a model file (scan pins, snapshots with ``--hash``, backup verification, restore
checks, crash recovery) goes through :func:`file_sha256`, and every hash computed while copying
goes through :class:`StreamHasher`. Do not call ``hashlib`` on file contents anywhere else.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

CHUNK = 1024 * 1024


def file_sha256(
    path: str | os.PathLike[str], dir_fd: int | None = None, follow: bool = True, advance: Callable[[int], object] | None = None
) -> str | None:
    """SHA-256 (hex) of the bytes at ``path`` (relative to ``dir_fd`` when given), following a
    symlink unless ``follow`` is False; None if it cannot be read or is not a regular file (a FIFO or
    a device is never read: ``/dev/zero`` would never end). ``advance`` is told each chunk's size."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        os.set_blocking(fd, True)
        return fd_sha256(fd, advance)
    except OSError:
        return None
    finally:
        os.close(fd)


def fd_sha256(fd: int, advance: Callable[[int], object] | None = None) -> str:
    """SHA-256 (hex) of a regular file open at ``fd``, read from its start (``pread``: the offset
    of ``fd`` is not moved). Raises OSError."""
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, CHUNK, offset):
        digest.update(chunk)
        offset += len(chunk)
        if advance is not None:
            advance(len(chunk))
    return digest.hexdigest()


class StreamHasher:
    """SHA-256 of bytes as they stream past (a copy hashes what it writes, in the same pass).

    Each chunk is hashed on a helper thread while the caller writes it (hashlib releases the GIL), so a
    copy costs about the slower of hashing and copying, not their sum. Chunks are hashed one at a time,
    in order. Use it as a context manager: the thread ends with the block."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ocr-reconcile-sha256")
        self._pending: Future[None] | None = None

    def update(self, chunk: bytes) -> None:
        self._wait()
        self._pending = self._pool.submit(self._digest.update, chunk)

    def hexdigest(self) -> str:
        self._wait()
        return self._digest.hexdigest()

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def __enter__(self) -> StreamHasher:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)
