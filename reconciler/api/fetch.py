"""Downloads of declared models into the tool's own downloads folder beside the store, verified before
anything can reach the store (``install.py`` moves them in, journaled).

Each model is fetched to ``<sha256>.part`` in that folder, hashed as it streams, and resumed after a
dropped connection, a Ctrl-C or a kill -9 (HTTP ``Range`` with ``If-Range`` and the ETag kept in
``<sha256>.json``; a ``file://`` source is read from the same offset). When the size and sha256 match the
pin, the file is fsynced and renamed to ``verified/<name>``; otherwise it is deleted and the error names
the model. Transient failures (a dropped connection, a timeout per read, HTTP 5xx, 408, 429) are retried
with backoff; a 404, an HTML page or a wrong checksum is not. HTTP is ``requests`` (proxies and
``~/.netrc`` from the environment); ``hf://`` is the Hub's resolve URL (``HF_ENDPOINT``), with ``HF_TOKEN``
sent as a bearer token to the Hub only (``requests`` drops it on a redirect to another host). No token,
password or query string is ever printed or logged.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..base.errors import InstallError
from ..base.fsops import Tree, split
from ..base.hashing import CHUNK, StreamHasher, fd_sha256
from ..read.sources import SourceSettings, hf_download_url, local_path, shown

log = logging.getLogger("reconciler")
VERIFIED = "verified"  # the downloads folder's sub-folder of verified files, named as in the store
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Wanted:
    """One model to fetch: its store name, source, pin and expected size (None: unknown)."""

    name: str
    source: str
    sha256: str
    size: int | None


class Budget:
    """Bytes still allowed by ``limits.max_install_bytes`` and free on the folder's filesystem, shared
    by parallel downloads: each claims its bytes before its first byte is fetched."""

    def __init__(self, limit: int | None, folder_fd: int) -> None:
        self.limit, self.folder_fd, self.claimed = limit, folder_fd, 0
        self._lock = threading.Lock()

    def claim(self, want: Wanted, size: int) -> None:
        with self._lock:
            if self.limit is not None and self.claimed + size > self.limit:
                raise InstallError(want.name, f"{self.claimed + size} bytes would be downloaded, over max_install_bytes {self.limit}")
            st = os.fstatvfs(self.folder_fd)
            if size > st.f_bavail * st.f_frsize:
                raise InstallError(want.name, f"needs {size} bytes, but {st.f_bavail * st.f_frsize} are free beside the store")
            self.claimed += size


class Transient(Exception):
    """A failure worth retrying from where the download stopped."""


def fetch(want: Wanted, downloads: Tree, settings: SourceSettings, budget: Budget, advance: Callable[[int], object]) -> None:
    """Leave the verified bytes of ``want`` at ``verified/<name>`` in ``downloads`` (a verified file left
    there by an interrupted run is checked and kept). Raises InstallError; the store is never touched."""
    downloads.dir(VERIFIED, create=True)
    verified = downloads.child(VERIFIED)
    try:
        if _already_verified(verified, want):
            return
        part = partial_name(want)
        for attempt in range(settings.retries + 1):
            advance(0)  # lets an interrupted apply stop between attempts (the callback raises then)
            try:
                digest = _download(want, downloads, part, settings, budget, advance)
                break
            except InstallError:
                _forget_if_empty(downloads, part)
                raise
            except Transient as exc:
                if attempt == settings.retries:
                    _forget_if_empty(downloads, part)
                    raise InstallError(want.name, f"{exc}; gave up after {attempt + 1} attempts (the partial download is kept)") from None
                log.info("install %s: %s; retrying", want.name, exc)
                time.sleep(min(30.0, 0.2 * 2**attempt))
        _verify_and_keep(want, downloads, part, verified, digest)
    finally:
        verified.close()


def partial_name(want: Wanted) -> str:
    """The partial file of one model: its own (two models with one pin never share one), ``.part``."""
    return f"{want.sha256[:32]}-{hashlib.sha256(want.name.encode()).hexdigest()[:16]}.part"


def _forget_if_empty(downloads: Tree, part: str) -> None:
    """After a failure, an empty partial file (and its notes) is not worth keeping."""
    with contextlib.suppress(OSError):
        if os.stat(part, dir_fd=downloads.fd, follow_symlinks=False).st_size == 0:
            os.unlink(part, dir_fd=downloads.fd)
            os.unlink(part.removesuffix(".part") + ".json", dir_fd=downloads.fd)


def _already_verified(verified: Tree, want: Wanted) -> bool:
    """A file at ``verified/<name>`` from an interrupted run: kept if it matches the pin, else removed."""
    parent, base = split(want.name)
    try:
        fd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=verified.dir(parent))
    except OSError:
        return False
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode) and fd_sha256(fd) == want.sha256:
            return True
    finally:
        os.close(fd)
    os.unlink(base, dir_fd=verified.dir(parent))
    return False


def _download(want: Wanted, downloads: Tree, part: str, settings: SourceSettings, budget: Budget, advance: Callable[[int], object]) -> str:
    """Append to ``part`` from where it stops until the source is exhausted, hashing as it streams (the
    part already there is read once first); its sha256. Transient on a retryable failure."""
    fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=downloads.fd)  # the umask decides
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InstallError(want.name, f"{part} in the downloads folder is not a regular file")
        with StreamHasher() as hasher:
            stream = Stream(fd, hasher, advance)
            if want.source.startswith("file://"):
                _copy_file(want, stream, budget)
            else:
                _get(want, downloads, part, stream, settings, budget)
            os.fsync(fd)
            return stream.digest()
    finally:
        os.close(fd)


class Stream:
    """The partial file being appended to, with the hash of every byte in it, and a limit on its size
    (the model's size, or the length the server announced): a server sending more is cut off."""

    def __init__(self, fd: int, hasher: StreamHasher, advance: Callable[[int], object]) -> None:
        self.fd, self.hasher, self.advance = fd, hasher, advance
        self.offset = os.fstat(fd).st_size
        self.limit: int | None = None
        self._hashed = 0
        self._pending = bytearray()  # written, not yet hashed: hashed a MiB at a time

    def restart(self) -> None:
        """Drop what is there: the source will be read from its start (only before any new byte)."""
        if self._hashed or self._pending:
            raise Transient("the source changed under a resumed download; starting again")
        os.ftruncate(self.fd, 0)
        self.offset = 0

    def write(self, chunk: bytes, want: Wanted) -> None:
        if self.limit is not None and self.offset + len(chunk) > self.limit:
            raise InstallError(want.name, f"{shown(want.source)} sent more than the {self.limit} bytes expected; nothing entered the store")
        self._catch_up()
        _write_all(self.fd, chunk, self.offset)
        self.offset += len(chunk)
        self._pending += chunk
        if len(self._pending) >= CHUNK:
            self._hash_pending()
        self.advance(len(chunk))

    def _hash_pending(self) -> None:
        self.hasher.update(bytes(self._pending))
        self._hashed += len(self._pending)
        self._pending.clear()

    def _catch_up(self) -> None:
        """Hash the bytes an earlier attempt or run left in the part, once, before the first new chunk."""
        while not self._pending and self._hashed < self.offset:  # once a new chunk is pending, the prefix is hashed
            chunk = os.pread(self.fd, min(CHUNK, self.offset - self._hashed), self._hashed)
            if not chunk:
                raise Transient("the partial download shrank")
            self.hasher.update(chunk)
            self._hashed += len(chunk)

    def digest(self) -> str:
        self._catch_up()
        self._hash_pending()
        return self.hasher.hexdigest()


def _copy_file(want: Wanted, stream: Stream, budget: Budget) -> None:
    path = local_path(want.source)
    try:
        src = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InstallError(want.name, f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(src)
        if not stat.S_ISREG(st.st_mode):
            raise InstallError(want.name, f"{path} is not a regular file")
        os.set_blocking(src, True)
        if stream.offset > st.st_size:
            stream.restart()
        budget.claim(want, st.st_size - stream.offset)
        stream.limit = st.st_size
        while chunk := os.pread(src, CHUNK, stream.offset):
            stream.write(chunk, want)
    finally:
        os.close(src)


NET_CHUNK = 64 * 1024  # read from the network in these: a drop keeps what arrived (hashing still goes a MiB at a time)


def _get(want: Wanted, downloads: Tree, part: str, stream: Stream, settings: SourceSettings, budget: Budget) -> None:
    import requests
    import urllib3

    url, headers = _request_for(want.source)
    headers["Accept-Encoding"] = "identity"  # the bytes of the file itself: never a compressed body to inflate
    meta_name = part.removesuffix(".part") + ".json"
    meta = _read_meta(downloads, meta_name)
    stale = meta.get("source") not in (None, shown(want.source)) or (want.size is not None and stream.offset > want.size)
    if stream.offset and meta.get("etag") and not stale:
        headers |= {"Range": f"bytes={stream.offset}-", "If-Range": meta["etag"]}
    elif stream.offset:
        stream.restart()  # no way to resume what is there (another source, no ETag, or too long): start over
    offset = stream.offset
    try:
        with requests.get(url, headers=headers, stream=True, timeout=(settings.timeout_s, settings.timeout_s)) as reply:
            status = reply.status_code
            if status in _TRANSIENT_STATUS:
                raise Transient(f"HTTP {status} from {shown(want.source)}")
            if status == 416 and offset:  # the part is no prefix of what the server has: start over next attempt
                _write_meta(downloads, meta_name, {"etag": None, "source": shown(want.source)})
                raise Transient(f"HTTP 416 for a resumed download from {shown(want.source)}; starting again")
            if status not in (200, 206):
                said = f"HTTP {status} {reply.reason or ''}".strip()
                raise InstallError(want.name, f"{said} from {shown(want.source)}; nothing entered the store")
            if reply.headers.get("Content-Type", "").lower().startswith("text/html"):
                raise InstallError(want.name, f"{shown(want.source)} answered with an HTML page, not the file; nothing entered the store")
            encoding = reply.headers.get("Content-Encoding", "identity").lower()
            if encoding not in ("identity", ""):
                raise InstallError(want.name, f"{shown(want.source)} sent the file encoded ({encoding}) though asked not to")
            if status == 200 and offset:  # the server ignored the range, or the file changed (If-Range): start over
                stream.restart()
                offset = 0
            length = reply.headers.get("Content-Length", "")
            total = offset + int(length) if length.isascii() and length.isdigit() else None
            if total is not None and want.size is not None and total != want.size:
                raise InstallError(want.name, f"{shown(want.source)} has {total} bytes, not the {want.size} the manifest gives")
            stream.limit = total if total is not None else want.size
            known = total if total is not None else want.size
            budget.claim(want, known - offset if known is not None else 0)
            _write_meta(downloads, meta_name, {"etag": reply.headers.get("ETag"), "source": shown(want.source)})
            for chunk in reply.raw.stream(NET_CHUNK, decode_content=False):
                if known is None:  # no length announced: every chunk counts against the limits as it comes
                    budget.claim(want, len(chunk))
                stream.write(chunk, want)
            if total is not None and stream.offset < total:
                raise Transient(f"the connection closed after {stream.offset} of {total} bytes")
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError, urllib3.exceptions.HTTPError) as exc:
        raise Transient(f"{_in_words(exc)} from {shown(want.source)}") from None
    except requests.RequestException as exc:
        raise InstallError(want.name, f"{_in_words(exc)} from {shown(want.source)}") from None


def _in_words(exc: Exception) -> str:
    """What went wrong, without the URL (which may carry a query string) or a class name to decode."""
    name = type(exc).__name__
    if "Timeout" in name:
        return "no answer within the timeout"
    if name in ("ProtocolError", "IncompleteRead", "ChunkedEncodingError"):
        return "the connection broke off mid-file"
    if name in ("ConnectionError", "NewConnectionError", "MaxRetryError"):
        return "could not connect"
    if name == "TooManyRedirects":
        return "too many redirects"
    if "SSL" in name:
        return "the TLS handshake failed"
    return f"the request failed ({name})"


def _request_for(source: str) -> tuple[str, dict[str, str]]:
    """The URL to GET and its headers (the Hub's token only for the Hub's own host)."""
    if not source.startswith("hf://"):
        return source, {}
    url = hf_download_url(source, os.environ.get("HF_ENDPOINT"))
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    return url, ({"Authorization": f"Bearer {token}"} if token else {})


def _write_all(fd: int, chunk: bytes, offset: int) -> None:
    view = memoryview(chunk)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.EIO, "a write made no progress")
        view, offset = view[written:], offset + written


def _verify_and_keep(want: Wanted, downloads: Tree, part: str, verified: Tree, digest: str) -> None:
    """Rename the finished ``part`` to ``verified/<name>`` if its size and ``digest`` match, else delete it."""
    size = os.stat(part, dir_fd=downloads.fd, follow_symlinks=False).st_size
    wrong = ""
    if want.size is not None and size != want.size:
        wrong = f"{size} bytes arrived, not the {want.size} the manifest gives"
    elif digest != want.sha256:
        wrong = f"its sha256 {digest[:12]}… differs from the pin {want.sha256[:12]}…"
    if wrong:
        for name in (part, part.removesuffix(".part") + ".json"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=downloads.fd)
        raise InstallError(
            want.name, f"the download from {shown(want.source)} is wrong: {wrong}; it was deleted, nothing entered the store"
        )
    parent, base = split(want.name)
    os.rename(part, base, src_dir_fd=downloads.fd, dst_dir_fd=verified.dir(parent, create=True))
    os.fsync(verified.dir(parent))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(part.removesuffix(".part") + ".json", dir_fd=downloads.fd)


def _read_meta(downloads: Tree, name: str) -> dict[str, Any]:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=downloads.fd)
    except OSError:
        return {}
    try:
        data = json.loads(os.read(fd, 65536))
        return data if isinstance(data, dict) else {}
    except ValueError:
        return {}
    finally:
        os.close(fd)


def _write_meta(downloads: Tree, name: str, meta: dict[str, Any]) -> None:
    tmp = f"{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=downloads.fd)
    try:
        os.write(fd, json.dumps(meta).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, name, src_dir_fd=downloads.fd, dst_dir_fd=downloads.fd)
