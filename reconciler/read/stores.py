"""Model stores: the Aspose engine and a plain directory, behind one protocol mirroring the engine.

This is the only module that touches ``aspose``. Stores only *read*; nothing here moves files.
Open a store with :func:`open_store`, a context manager whose ``finally`` calls
``free_resources()``; do not construct ``AsposeStore`` outside it, or the engine may never be freed.
"""

from __future__ import annotations

import logging
import os
import pwd
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from ..base.errors import EngineError, StoreError, StoreNotFound

log = logging.getLogger("reconciler")

BACKENDS = ("auto", "aspose", "directory")
# The engine's data folder under LocalApplicationData (measured; see docs/engine.md).
ENGINE_SUBDIR = os.path.join("Aspose.AI.LLM", "models")
# Unlicensed, list_local() keeps only files of this name, compared as .NET's OrdinalIgnoreCase does
# under invariant globalization: ASCII letters only (measured; tests/read/test_engine.py re-checks it).
EVALUATION_MODEL = "Llama-3.2-3B-Instruct-Q4_K_M.gguf"


def evaluation_visible(name: str) -> bool:
    """Whether the unlicensed engine lists a file whose store-relative name is ``name``."""
    base = name.rsplit("/", 1)[-1]
    return base.isascii() and base.lower() == EVALUATION_MODEL.lower()


def rule_listing(root: str, licensed: bool = True) -> list[str]:
    """What ``list_local()`` returns for a folder ``root``, computed by the engine's rules: paths of
    the files :func:`walk_store` yields, only those :func:`evaluation_visible` when not licensed."""
    if not os.path.isdir(root):
        raise StoreNotFound(os.path.abspath(root))
    return [os.path.join(root, name) for name, _ in walk_store(root) if licensed or evaluation_visible(name)]


class ModelStore(Protocol):
    """What the reconciler needs from a store; the names mirror ``aspose.ocr.ai.AsposeAI``.

    ``list_local()`` returns what the engine would: paths joined onto ``get_local_path()``.
    ``licensed`` is None when no engine ran (directory backend), else whether the evaluation
    filter is off. Never use ``list_local()`` to decide what is on disk: see ``scan.py``.
    """

    backend: str
    licensed: bool | None

    def get_local_path(self) -> str: ...

    def list_local(self) -> list[str]: ...

    def free_resources(self) -> None: ...


def walk_store(root: str, unreadable: list[str] | None = None) -> Iterator[tuple[str, str | None]]:
    """Yield ``(name, symlinked_folder)`` for every entry the engine would list, sorted by name.

    The engine's rule (measured): every non-directory entry (regular files, symlinks to files,
    broken symlinks, special files) of the store and of its *immediate* subfolders; a symlink to
    a directory counts as a directory, so its files are listed too. ``symlinked_folder`` names
    that subfolder when a file is reached through one (its bytes live outside the store).
    Unreadable subfolders are skipped; their names are appended to ``unreadable`` when given.
    """
    top = sorted(os.scandir(root), key=lambda e: e.name)
    for entry in top:
        if _is_dir(entry):
            try:
                children = sorted(os.scandir(entry.path), key=lambda e: e.name)
            except OSError:
                if unreadable is not None:
                    unreadable.append(entry.name)
                continue
            via = entry.name if entry.is_symlink() else None
            for child in children:
                if not _is_dir(child):
                    yield f"{entry.name}/{child.name}", via
        else:
            yield entry.name, None


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def engine_default_path() -> str:
    """The engine's ``get_local_path()`` computed without the engine (same rules, measured).

    ``$XDG_DATA_HOME`` when absolute, else ``$HOME/.local/share``; used only if that folder
    exists, else the path is relative (``Aspose.AI.LLM/models``, against the current directory).
    """
    xdg = os.environ.get("XDG_DATA_HOME", "")
    if xdg.startswith("/"):
        base = xdg
    else:
        home = os.environ.get("HOME") or _passwd_home()
        base = os.path.join(home, ".local", "share") if home else ""
    if not base or not os.path.isdir(base):
        base = ""
    return os.path.join(base, ENGINE_SUBDIR)


def _passwd_home() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return ""


class DirectoryStore:
    """Pure-Python store applying the engine's listing rules, without its evaluation filter."""

    backend = "directory"
    licensed: bool | None = None

    def __init__(self, path: Path | None) -> None:
        self._path = os.fspath(path) if path is not None else engine_default_path()

    def get_local_path(self) -> str:
        return self._path

    def list_local(self) -> list[str]:
        return rule_listing(self._path)

    def free_resources(self) -> None:
        """Nothing to free; present so both backends share one protocol."""


class AsposeStore:
    """The real engine, ``aspose.ocr.ai.AsposeAI`` from aspose-ocr-python-net.

    Must be used through :func:`open_store` so that ``free_resources()`` always runs.
    """

    backend = "aspose"
    licensed: bool | None

    def __init__(self, license_file: Path | None = None) -> None:
        # Without this the bundled .NET runtime aborts the process when ICU is missing.
        os.environ.setdefault("DOTNET_SYSTEM_GLOBALIZATION_INVARIANT", "1")
        with _engine_call():
            try:
                import aspose.ocr as ocr
                from aspose.ocr.ai import AsposeAI
            except ImportError as exc:
                raise EngineError(
                    f"the Aspose engine is not installed ({exc}); install ocr-reconcile[aspose] or use store.backend: directory"
                ) from None
            if license_file is not None:
                _probe_license(license_file)
                try:
                    ocr.License().set_license(os.fspath(license_file))
                except Exception as exc:  # the engine raises RuntimeError("Proxy error(...)")
                    raise EngineError(f"cannot apply Aspose license {license_file}: {_one_line(exc)}") from None
            self._ai: Any = AsposeAI()
            self.licensed = bool(ocr.License().is_licensed)
        self._folder: str | None = None

    def set_path(self, path: str) -> None:
        """List ``path`` rather than the engine's own folder, without ever loading a model.

        Only ``set_post_processor`` points the engine elsewhere, and on a host where llama's native
        library loads, that call loads a model and may fetch llama's binaries (docs/engine.md, from
        its CIL). So the engine lists only its own folder; any other is listed by
        :func:`rule_listing`, with the engine's rules and this engine's licence state."""
        if not os.path.isdir(path):
            raise StoreNotFound(os.path.abspath(path))
        if os.path.realpath(path) != os.path.realpath(self.get_local_path()):
            self._folder = path
            log.debug("engine: %s is not the engine's folder; listed by the engine's rules", path)

    def get_local_path(self) -> str:
        if self._folder is not None:
            return self._folder
        with _engine_call():
            return str(self._ai.get_local_path())

    def list_local(self) -> list[str]:
        if self._folder is not None:
            return rule_listing(self._folder, bool(self.licensed))
        try:
            with _engine_call():
                return [str(p) for p in self._ai.list_local()]
        except RuntimeError as exc:
            if "DirectoryNotFound" in str(exc):
                raise StoreNotFound(os.path.abspath(self.get_local_path())) from None
            raise EngineError(f"engine list_local() failed: {_one_line(exc)}") from None

    def free_resources(self) -> None:
        with _engine_call():
            self._ai.free_resources()


# Measured: once the .NET runtime is loaded, a Ctrl-C at the confirmation prompt was ignored. The
# runtime installs its own handlers for these signals, and its threads (which do not block them)
# receive the signal instead of the main thread, so Python never wakes up.
_PYTHON_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)


@contextmanager
def _engine_call() -> Iterator[None]:
    """Run engine code with our signals blocked, then put Python's handlers back.

    Threads the runtime starts meanwhile inherit the blocked mask, so these signals only ever
    reach the main thread; a signal arriving during the call is delivered when it returns.
    """
    saved = {sig: signal.getsignal(sig) for sig in _PYTHON_SIGNALS}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _PYTHON_SIGNALS)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


_LICENSE_PROBE = """
import os, sys
os.environ.setdefault("DOTNET_SYSTEM_GLOBALIZATION_INVARIANT", "1")
import aspose.ocr as ocr
ocr.License().set_license(sys.argv[1])
"""


def _probe_license(license_file: Path) -> None:
    """Apply the license once in a child process first: the engine can abort the whole process.

    Measured: the bundled .NET Core 3.1 needs OpenSSL 1.x to verify a license; on a host with only
    OpenSSL 3 it prints "No usable version of libssl was found" and aborts (SIGABRT), which no
    ``except`` can catch. The child takes that crash instead, and we report it in one line.
    """
    import subprocess
    import sys

    if not os.path.isfile(license_file):
        raise EngineError(f"license file {license_file} does not exist")
    probe = subprocess.run([sys.executable, "-c", _LICENSE_PROBE, os.fspath(license_file)], capture_output=True, text=True)
    if probe.returncode < 0:
        said = _one_line(Exception(probe.stderr.strip().splitlines()[0] if probe.stderr.strip() else ""))
        raise EngineError(
            f"the engine crashed (signal {-probe.returncode}) while verifying license {license_file}: {said or 'no message'}"
            + ("; it needs OpenSSL 1.x (libssl1.1), which this host lacks" if "libssl" in said else "")
        )


def engine_available() -> bool:
    """Whether aspose-ocr-python-net is installed, found without importing (and starting) it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("aspose")
    except (ImportError, ValueError):
        return False
    locations = list(spec.submodule_search_locations or []) if spec else []
    return any(Path(loc, "ocr").is_dir() or any(Path(loc).glob("ocr.*.so")) for loc in locations)


@contextmanager
def open_store(backend: str, path: Path | None, license_file: Path | None = None) -> Iterator[ModelStore]:
    """Open the store for ``backend`` (auto|aspose|directory) and always free it on exit.

    The ``finally`` here is the one place engine resources are released, on success, on error
    and on Ctrl-C alike.
    """
    if backend not in BACKENDS:
        raise StoreError(f"unknown store backend {backend!r} (expected one of {', '.join(BACKENDS)})")
    if backend == "auto":
        backend = "aspose" if engine_available() else "directory"
    if backend == "directory":
        if license_file is not None:
            raise StoreError("a license file needs the aspose backend; this store is read as a plain directory")
        yield DirectoryStore(path)
        return
    store = AsposeStore(license_file)
    try:
        if path is not None:
            store.set_path(os.fspath(path))
        log.info("engine: opened (licensed=%s, path=%s)", store.licensed, store.get_local_path())
        yield store
    finally:
        store.free_resources()
        log.info("engine: free_resources() done")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
