"""Helpers for the reliability suite: stores, censuses of file bytes, real `ocr-reconcile` processes,
event waits, and the convergence check every kill is followed by."""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from reconciler.base.errors import ExitCode
from reconciler.base.layout import INDEX_NAME, TEMP_PREFIX, journal_path
from reconciler.demo import EXAMPLE_STORE, build_store, fill
from reconciler.disk.journal import read_journal
from reconciler.disk.records import RunHeader

from ..conftest import BIN, EXAMPLE_MANIFEST

SCRIPT = BIN / "ocr-reconcile"
FORKSERVER = Path(__file__).with_name("forkserver.py")
EXEC_ENV = "OCR_RECONCILE_TEST_EXEC"  # =1: exec the console script for every command (no fork server)
WAIT = 120.0  # seconds: the cap of every wait on an event; reached only when something is broken
RUN_CAP = 600.0  # seconds: the cap of one command, as run_cli's; reached only when something hangs

DEMO_STALE = frozenset({"latest.gguf", "mistral-7b-v0.1.Q2_K.gguf", "old/Llama-3.1-8B-Instruct-Q4_K_M.gguf", "phi-2.Q4_K_M.gguf"})
DEMO_KEPT = frozenset(EXAMPLE_STORE) - DEMO_STALE
# The demo store's names and kinds (a stale symlink, a stale model in a subfolder) with small sizes:
# crash steps are per file, so kilobytes exercise the same code as megabytes, faster.
SMALL_DEMO: dict[str, int | str] = {name: spec if isinstance(spec, str) else max(spec // 256, 1024) for name, spec in EXAMPLE_STORE.items()}


def digest(path: Path) -> str:
    if path.is_symlink():
        return "link:" + os.readlink(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def census(*roots: Path) -> Counter[str]:
    """How many times each content appears under ``roots`` (entries, links not followed).

    Temporary copies (``*.ocr-reconcile-partial``) and index files are not counted: they are never
    mistaken for a backup (recovery deletes partials; restore reads indexes, never partials).
    """
    seen: Counter[str] = Counter()
    for root in roots:
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                if name.startswith(TEMP_PREFIX) or name in (INDEX_NAME, INDEX_NAME + ".tmp"):
                    continue
                seen[digest(Path(dirpath) / name)] += 1
    return seen


def partials(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob(f"{TEMP_PREFIX}*")]


def originals(store: Path) -> dict[str, str]:
    """name -> content digest of every entry in the store (one folder level deep)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(store):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = Path(dirpath) / name
            out[os.path.relpath(path, store)] = digest(path)
    return out


def journal_of(store: Path) -> Path:
    """The journal path the CLI uses: beside the store's resolved path (tmp may sit under a symlink)."""
    return journal_path(os.path.realpath(store))


def in_flight(store: Path) -> set[str]:
    """Names whose cross-filesystem move a kill interrupted between "rename the verified copy into
    place" and "unlink the original": whole in both places until recover compares and unlinks."""
    found = read_journal(journal_of(store))
    if found is None:
        return set()
    header, records = found
    done = {r.key for r in records}  # done or skipped
    moves = header.moves if isinstance(header, RunHeader) else ()
    return {m.name for m in moves if m.key not in done and os.path.lexists(m.src) and os.path.lexists(m.dst)}


def assert_each_exactly_once(before: dict[str, str], store: Path, backup_root: Path, context: str) -> None:
    """Every original file's bytes are found exactly once in the store or the backup.

    The one exception, right after a kill, is the file whose cross-filesystem move was in flight
    (see :func:`in_flight`): found twice, never zero times. Once recovered, exactly once, always.
    """
    seen = census(store, backup_root)
    flying = in_flight(store)
    lost = {n for n, d in before.items() if seen[d] == 0}
    doubled = {n for n, d in before.items() if seen[d] > 1} - flying
    assert not lost and not doubled, f"{context}: lost {sorted(lost)}, duplicated {sorted(doubled)}"
    assert len(flying) <= 1, f"{context}: {sorted(flying)} in flight at once"


def write_manifest(folder: Path, store: Path, backup_root: Path, **extra: object) -> Path:
    doc = yaml.safe_load(EXAMPLE_MANIFEST.read_text())
    doc["store"] = {"backend": "directory", "path": str(store)}
    doc["backup"] = {"dir": str(backup_root), "keep": 5}
    doc["in_progress"] = {"min_age": 0}  # files are written just before each apply
    doc.update(extra)
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def big_store(root: Path, stale: int, size: int, layout: dict[str, int | str] | None = None) -> Path:
    """The demo store (``layout``, default full size) plus ``stale`` more stale files of ``size``
    bytes, every other one in the subfolder ``bulk/``. The extra files are neither declared nor
    whitelisted: after convergence the store holds exactly :data:`DEMO_KEPT`."""
    build_store(root, layout)
    for i in range(stale):
        folder = root / ("bulk" if i % 2 else "")
        folder.mkdir(exist_ok=True)
        (folder / f"stale-{i:03d}.bin").write_bytes(fill(f"stale-{i}", size))
    return root


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll ``condition`` every 5 ms until it returns something true; fail after ``timeout`` s.

    The cap only bounds a broken test: nothing asserted depends on how long the wait took.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(0.005)


def popen(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start the installed console script itself (exec, not the fork server), output captured."""
    return subprocess.Popen(
        [str(SCRIPT), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )


class Cli:
    """Runs ``ocr-reconcile`` commands as real processes, one at a time.

    Through the fork server (``forkserver.py``): each command is a forked child of a process that has
    imported the console script's entry point once, so a command costs its own work instead of an
    interpreter start plus imports; everything else (PID, environment, argv, stdio, exit status, a
    real ``kill -9``) is a real process's. With ``OCR_RECONCILE_TEST_EXEC=1`` every command ``exec``s
    the console script instead, to rule the fork server out.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.exec_only = os.environ.get(EXEC_ENV) == "1"
        self._server: subprocess.Popen[bytes] | None = None
        self._log = workdir / "forkserver.log"
        self._pending = b""
        if not self.exec_only:
            with open(self._log, "wb") as log:
                self._server = subprocess.Popen(
                    [sys.executable, str(FORKSERVER), str(SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, bufsize=0
                )

    def close(self) -> None:
        if self._server is not None:
            assert self._server.stdin is not None
            self._server.stdin.close()
            self._server.wait(timeout=WAIT)
            self._server = None

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = RUN_CAP) -> subprocess.CompletedProcess[str]:
        """Run one command to its end; returncode < 0 means killed by that signal (as ``subprocess``)."""
        full_env = {**os.environ, **(env or {})}
        if self._server is None:
            return subprocess.run(
                [str(SCRIPT), *args], capture_output=True, text=True, env=full_env, timeout=timeout, stdin=subprocess.DEVNULL
            )
        out, err = self.workdir / "stdout", self.workdir / "stderr"
        request = {"argv": list(args), "env": full_env, "cwd": os.getcwd(), "stdout": str(out), "stderr": str(err)}
        assert self._server.stdin is not None
        self._server.stdin.write((json.dumps(request) + "\n").encode())
        deadline = time.monotonic() + timeout
        pid = self._response(deadline)["pid"]
        try:
            code = self._response(deadline)["returncode"]
        except TimeoutError:
            os.kill(pid, 9)
            self._response(time.monotonic() + WAIT)
            raise AssertionError(
                f"ocr-reconcile {' '.join(args)} did not finish in {timeout:g} s:\n{out.read_text()}{err.read_text()}"
            ) from None
        return subprocess.CompletedProcess([str(SCRIPT), *args], code, out.read_text(), err.read_text())

    def _response(self, deadline: float) -> dict[str, Any]:
        assert self._server is not None and self._server.stdout is not None
        fd = self._server.stdout.fileno()
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"the fork server died: {self._log.read_text()}")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        response: dict[str, Any] = json.loads(line)
        return response


def converge(cli: Cli, manifest: Path, store: Path, backup_root: Path, before: dict[str, str], context: str) -> None:
    """What every kill is followed by: nothing lost or doubled right after it; ``recover`` exits 0,
    leaves no journal and no partial copy, and each original file exactly once; ``apply`` exits 0;
    ``apply`` again is a no-op; the store then holds exactly the demo's kept files."""
    assert_each_exactly_once(before, store, backup_root, context + ", after the kill")
    recovered = cli.run("recover", "-m", str(manifest))
    assert recovered.returncode == ExitCode.OK, f"{context}: {recovered.stdout}{recovered.stderr}"
    assert not journal_of(store).exists(), context
    assert not partials(store, backup_root), context
    assert_each_exactly_once(before, store, backup_root, context + ", after recover")
    applied = cli.run("apply", str(manifest), "--yes")
    assert applied.returncode == ExitCode.OK, f"{context}: {applied.stdout}{applied.stderr}"
    again = cli.run("apply", str(manifest), "--yes")
    assert again.returncode == ExitCode.OK and "No changes." in again.stdout, f"{context}: {again.stdout}{again.stderr}"
    assert_each_exactly_once(before, store, backup_root, context + ", converged")
    assert set(originals(store)) == DEMO_KEPT, context


@contextmanager
def second_filesystem() -> Iterator[Path | None]:
    """A folder on another filesystem than /tmp (tmpfs /dev/shm), or None where there is none."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and os.stat(shm).st_dev != os.stat(tempfile.gettempdir()).st_dev:
        folder = Path(tempfile.mkdtemp(prefix="ocr-reconcile-rel-", dir=shm))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    else:
        yield None


@contextmanager
def small_filesystem(size: str = "1m") -> Iterator[Path | None]:
    """A freshly mounted tiny tmpfs (a real full filesystem), or None where mounting is not allowed."""
    folder = Path(tempfile.mkdtemp(prefix="ocr-reconcile-full-"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True).returncode == 0
    try:
        yield folder if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
