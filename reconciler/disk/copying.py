"""A verified copy of one entry across filesystems (used by :func:`~.moves.move_entry` when a rename
cannot be made): to a temporary name the run owns, hashing on the same pass, fsynced, checked against
the source's identity before it is put in place (a rename that never replaces) and before the source
is unlinked. Every failure leaves the original whole; only the tool's own temporary copy is removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from ..base.fsops import open_regular, rename_noreplace, split
from ..base.hashing import CHUNK, StreamHasher
from ..base.progress import Progress
from . import faults
from .records import Move


class Skip(Exception):
    """A move that must not be made (the entry changed or vanished, something is in the way): it is
    recorded as skipped, with this message as the reason, and the run goes on."""


def check_unchanged(move: Move, now: os.stat_result | None) -> None:
    """Raise Skip unless ``now`` (an lstat of the move's source) is still the entry that was planned."""
    if now is None:
        raise Skip("vanished since the plan was made")
    f = move.facts
    kind = "symlink" if stat.S_ISLNK(now.st_mode) else "file" if stat.S_ISREG(now.st_mode) else "other"
    if (kind, now.st_size, now.st_mtime_ns, now.st_ino, now.st_dev) != f.identity:
        raise Skip("changed since the plan was made; left in place")


def copy_verified(move: Move, src_fd: int, dst_fd: int, tmp: str, shown: str, progress: Progress) -> str | None:
    """Copy ``move``'s entry across filesystems: to ``tmp`` (created with O_EXCL), fsync, verify,
    check the source is unchanged, rename into place (never replacing), then unlink the source.

    Returns the verified sha256 of the bytes (None for a symlink). Raises Skip when the source
    changed while it was copied (it stays; the copy is discarded) or changed after the copy was in
    place (both stay), or when a file appeared at the destination (both stay).
    """
    base = split(move.name)[1]
    if move.facts.kind == "symlink":
        target = os.readlink(base, dir_fd=src_fd)
        if target != move.facts.link_target:
            raise Skip("changed since the plan was made; left in place")
        try:
            os.symlink(target, tmp, dir_fd=dst_fd)
        except FileExistsError:
            raise _in_the_way(tmp) from None
        _place(move, src_fd, dst_fd, tmp, shown, None, None)
        return None
    try:
        fin = open_regular(src_fd, base)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EINVAL, errno.ENOENT):
            raise Skip("changed since the plan was made; left in place") from None
        raise
    try:
        before = os.fstat(fin)
        check_unchanged(move, before)
        digest = _write_copy(move, fin, before, dst_fd, tmp, progress)
        if _stamp(os.fstat(fin)) != _stamp(before):
            _discard(dst_fd, tmp)
            raise Skip("changed while it was being copied; left in place, the copy discarded")
        _place(move, src_fd, dst_fd, tmp, shown, fin, before)
        return digest
    finally:
        os.close(fin)


def _write_copy(move: Move, fin: int, before: os.stat_result, dst_fd: int, tmp: str, progress: Progress) -> str:
    """Write the bytes of ``fin`` to the new file ``tmp`` (O_EXCL: never one the tool did not
    create), hashing on the way; fsync and verify. On any failure the temporary copy is removed."""
    try:
        fout = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dst_fd)
    except FileExistsError:
        raise _in_the_way(tmp) from None
    try:
        with StreamHasher() as want:
            offset = _write_hashed(move, fin, before.st_size, fout, want, progress)
            digest = want.hexdigest()  # of the bytes written, in the same pass: no read-back
        if os.fstat(fout).st_size != offset:
            raise OSError(errno.EIO, f"the copy of {move.name} is {os.fstat(fout).st_size} bytes, not the {offset} written")
        if os.geteuid() == 0:  # keep the owner, as a rename would (otherwise the copy is root's)
            with contextlib.suppress(OSError):
                os.fchown(fout, before.st_uid, before.st_gid)
        os.fchmod(fout, stat.S_IMODE(before.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))  # a copy never gains set-id powers
        os.utime(fout, ns=(before.st_atime_ns, before.st_mtime_ns))
        os.fsync(fout)
        if move.facts.sha256 is not None and digest != move.facts.sha256:
            raise OSError(errno.EIO, f"{move.name} does not match the sha256 recorded for it")
    except BaseException:
        os.close(fout)
        _discard(dst_fd, tmp)
        raise
    os.close(fout)
    return digest


def _write_hashed(move: Move, fin: int, size: int, fout: int, want: StreamHasher, progress: Progress) -> int:
    """Copy up to ``size`` bytes of ``fin`` to ``fout`` (a growing file ends there), every byte written
    (a short write is resumed: it is how a full disk first shows), each chunk hashed; bytes copied."""
    offset = 0
    while offset < size and (chunk := os.pread(fin, min(CHUNK, size - offset), offset)):
        want.update(chunk)
        view = memoryview(chunk)
        while view:
            written = os.write(fout, view)
            if written <= 0:
                raise OSError(errno.EIO, f"writing the copy of {move.name} made no progress")
            view = view[written:]
        offset += len(chunk)
        progress.advance(len(chunk))
        faults.event("copy-chunk")
        fault = faults.copy_fault()
        if fault:
            raise fault
    return offset


def _stamp(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _place(move: Move, src_fd: int, dst_fd: int, tmp: str, shown: str, fin: int | None, before: os.stat_result | None) -> None:
    """Rename the verified copy ``tmp`` into place (never replacing: a file that appeared wins, and
    the copy is discarded), then unlink the source if it is still the entry that was copied."""
    base = split(move.name)[1]
    os.fsync(dst_fd)
    faults.step("copy-written")
    try:
        rename_noreplace(dst_fd, tmp, dst_fd, base)
    except FileExistsError:
        _discard(dst_fd, tmp)
        raise Skip(f"a file appeared at {shown}; it was kept, and the original left in place") from None
    except BaseException:
        _discard(dst_fd, tmp)
        raise
    os.fsync(dst_fd)
    faults.step("copy-renamed")
    now = os.stat(base, dir_fd=src_fd, follow_symlinks=False)
    if (
        fin is not None
        and before is not None
        and (_stamp(os.fstat(fin)) != _stamp(before) or (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino))
    ):
        raise Skip(f"changed while it was being moved; the copy at {shown} and the original were both kept")
    os.unlink(base, dir_fd=src_fd)
    faults.step("source-unlinked")


def _in_the_way(tmp: str) -> Skip:
    return Skip(f"a file the tool did not create is at its temporary name {tmp!r}; left in place")


def _discard(dst_fd: int, tmp: str) -> None:
    """Remove the temporary copy this run created (and only it: the name is the run's own)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dst_fd)
