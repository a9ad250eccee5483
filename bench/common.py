"""What the benchmarks share: timing children (with their peak memory), stores and manifests.

Every benchmark prints a ratio against a baseline measured in the same run, on the same machine, and
never asserts a time: these machines are shared and noisy. Figures are medians of a few runs.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

BIN = Path(sys.executable).parent
TOOL = str(BIN / "ocr-reconcile")
REPO = Path(__file__).resolve().parents[1]
CHUNK = os.urandom(1024 * 1024)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of an installed tool: bytecode may be written and read (a session that sets
    PYTHONDONTWRITEBYTECODE would otherwise time the compiler, not ocr-reconcile)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **extra}


def precompile() -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "reconciler")], env=child_env(), check=True, capture_output=True)


def run_child(cmd: list[str], env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)) -> tuple[float, int]:
    """(seconds, peak resident KiB) of one run of ``cmd``, its output discarded."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env or child_env())
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {err.decode(errors='replace')[-500:]}")
    return took, usage.ru_maxrss


def median_child(cmd: list[str], repeat: int = 5, **kwargs: Any) -> tuple[float, int]:
    runs = [run_child(cmd, **kwargs) for _ in range(repeat)]
    return statistics.median(t for t, _ in runs), max(m for _, m in runs)


def median_call(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_real(path: Path, size: int) -> None:
    """``size`` bytes of random data (not sparse, not zeros), fsynced."""
    with open(path, "wb") as fh:
        for _ in range(size // len(CHUNK)):
            fh.write(CHUNK)
        fh.write(CHUNK[: size % len(CHUNK)])
        fh.flush()
        os.fsync(fh.fileno())


def write_manifest(folder: Path, store: Path, **fields: Any) -> Path:
    doc = {
        "apiVersion": "ocr-reconcile/v1",
        "kind": "ModelState",
        "metadata": {"name": "bench"},
        "models": [],
        "store": {"backend": "directory", "path": str(store)},
        "backup": {"keep": None},
        "in_progress": {"min_age": 0},  # the files were just written: no recency protection here
        **fields,
    }
    path = folder / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@contextmanager
def scratch() -> Iterator[Path]:
    """A temporary folder (under $BENCH_DIR when set), removed afterwards."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR"), prefix="ocr-bench-") as tmp:
        yield Path(tmp)


@contextmanager
def other_filesystem(room: int) -> Iterator[Path | None]:
    """A folder on /dev/shm (tmpfs, another filesystem) with ``room`` bytes free, or None."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shutil.disk_usage(shm).free < room or os.stat(shm).st_dev == os.stat(tempfile.gettempdir()).st_dev:
        yield None
        return
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="ocr-bench-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def mib(size: int) -> str:
    return f"{size / (1 << 20):,.0f} MiB"
