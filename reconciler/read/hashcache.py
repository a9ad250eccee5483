"""The hash cache: sha256s of a store's files, kept beside the store, so that a pinned model that did
not change is not read again on every plan and check.

An entry is used only when the file's device, inode, size, mtime_ns and ctime_ns all match what was
recorded (ctime cannot be set by a user: a write moves it), and only for a file that no other user can
change: owned by this user and not writable by group or others. (A process that keeps a file mapped
writable can change its bytes before the kernel moves its times; only the file's owner can, and
``--no-cache`` re-reads everything.) The key recorded is the ``fstat`` of the descriptor the bytes were
read from, before and after the read, so a path swapped meanwhile cannot pair one file's hash with
another file's identity. The cache file is trusted only
when this user wrote it: a regular file, owned by the effective user, one link, writable by no one
else; anything else (another user's file planted in the store's writable parent, a link, garbage) is
discarded, never trusted, and replaced. Saving it is best effort (a read-only parent means no cache).
Hashing of the files not in the cache runs on several threads (hashlib releases the GIL).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from ..base.fsops import written_by_me
from ..base.hashing import fd_sha256
from ..base.layout import hash_cache_path
from ..base.progress import Progress, Silent

log = logging.getLogger("reconciler")
FORMAT = 1
MAX_BYTES = 64 * 1024 * 1024
Key = tuple[int, int, int, int, int]


def _key(st: os.stat_result) -> Key:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _cacheable(st: os.stat_result) -> bool:
    """Only a file that no other user can change is worth a cache entry (see the module's docstring)."""
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _hash_held(path: str, advance: Callable[[int], None]) -> tuple[str | None, Key | None]:
    """The sha256 of the file at ``path`` (following a link, like the engine), read through one
    descriptor, and that descriptor's key if the file was unchanged while read and may be cached."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None, None
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):  # a FIFO or a device is never read
            return None, None
        os.set_blocking(fd, True)
        digest = fd_sha256(fd, advance)
        after = os.fstat(fd)
    except OSError:
        return None, None
    finally:
        os.close(fd)
    return digest, (_key(before) if _key(after) == _key(before) and _cacheable(before) else None)


class HashCache:
    """The cache of one store. :meth:`hash_files` is the only way in; :meth:`save` writes it back."""

    def __init__(self, store_root: str, enabled: bool = True, writable: bool = True) -> None:
        self.path = hash_cache_path(store_root)
        self.enabled, self.writable = enabled, writable  # not writable: used, never saved (a check that must change nothing)
        self._entries: dict[str, tuple[Key, str]] = self._load() if enabled else {}
        self._dirty = False
        self.hits = 0
        self.misses = 0

    def _load(self) -> dict[str, tuple[Key, str]]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return {}
        try:
            st = os.fstat(fd)
            mine = written_by_me(st) and not st.st_mode & 0o022
            if not mine or st.st_size > MAX_BYTES:
                log.info("hash cache %s is not this user's own file; it is not trusted", self.path)
                return {}
            with os.fdopen(fd, "rb", closefd=False) as fh:
                doc = json.loads(fh.read())
            if doc.get("format") != FORMAT:
                return {}
            out = {}
            for name, item in doc["files"].items():
                key = tuple(int(v) for v in item["key"])
                digest = str(item["sha256"])
                if len(key) == 5 and len(digest) == 64:
                    out[str(name)] = ((key[0], key[1], key[2], key[3], key[4]), digest)
            return out
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            log.info("hash cache %s is damaged; it is discarded", self.path)
            self._dirty = True
            return {}
        finally:
            os.close(fd)

    def hash_files(self, root: str, names: Iterable[str], progress: Progress | None = None) -> dict[str, str | None]:
        """sha256 of each ``name`` (relative to ``root``, following a symlink like the engine): from
        the cache when the file's identity matches, else read (on several threads) and recorded."""
        out: dict[str, str | None] = {}
        todo: list[tuple[str, Key]] = []
        for name in names:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                out[name] = None
                continue
            if not stat.S_ISREG(st.st_mode):
                out[name] = None
                continue
            cached = self._entries.get(name) if _cacheable(st) else None
            if cached is not None and cached[0] == _key(st):
                out[name] = cached[1]
                self.hits += 1
            else:
                todo.append((name, _key(st)))
        if todo:
            shown = progress or Silent()
            shown.begin(f"hashing {len(todo)} file{'s' if len(todo) != 1 else ''}", sum(key[2] for _, key in todo))
            workers = max(1, min(4, os.cpu_count() or 1, len(todo)))
            told = threading.Lock()

            def advance(done: int) -> None:  # chunk by chunk, from the hashing threads
                with told:
                    shown.advance(done)

            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(_hash_held, os.path.join(root, name), advance) for name, _ in todo]
                results = [future.result() for future in futures]
            shown.end()
            for (name, _), (digest, read_key) in zip(todo, results, strict=True):
                out[name] = digest
                self.misses += 1
                if digest is not None and read_key is not None:  # unchanged while it was read: worth remembering
                    self._entries[name] = (read_key, digest)
                    self._dirty = True
        return out

    def save(self) -> None:
        """Write the cache back if anything changed (temp file, fsync, rename); errors are ignored."""
        if not self.enabled or not self.writable or not self._dirty:
            return
        doc = {"format": FORMAT, "files": {n: {"key": list(k), "sha256": d} for n, (k, d) in sorted(self._entries.items())}}
        tmp = self.path.with_name(f"{self.path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, json.dumps(doc).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            self._dirty = False
        except OSError as exc:
            log.info("hash cache %s not saved: %s", self.path, exc.strerror or exc)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
