"""Benchmark: what a move costs as the file grows, across filesystems, and at start-up (issue 10).

Prints ratios against baselines measured in the same run, never asserts times (machines here are
shared and noisy). Run: ``make bench`` (or ``.venv/bin/python bench/bench_moves.py [BIG_MiB]``).

1. apply of one big file (default 4096 MiB of real, non-zero data) vs one 4 KiB file, same filesystem:
   a rename must not read the file, so the ratio should stay near 1.
2. the same big file applied to a backup on another filesystem (``/dev/shm``, when it has room) vs
   ``cp`` + ``sync`` of the same file: one verified pass should cost about one copy.
3. start-up of ``--version``, ``--help`` and ``validate`` vs ``python -c pass``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from reconciler import open_session

BIN = Path(sys.executable).parent
CHUNK = os.urandom(1024 * 1024)


def write(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        for _ in range(size // len(CHUNK)):
            fh.write(CHUNK)
        fh.write(CHUNK[: size % len(CHUNK)])
        fh.flush()
        os.fsync(fh.fileno())


def manifest(folder: Path, store: Path, backup: Path) -> Path:
    doc = {
        "apiVersion": "ocr-reconcile/v1",
        "kind": "ModelState",
        "metadata": {"name": "bench"},
        "models": [],
        "store": {"backend": "directory", "path": str(store)},
        "backup": {"dir": str(backup), "keep": None},
        "in_progress": {"min_age": 0},
    }
    path = folder / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def timed_apply(folder: Path, size: int, backup: Path) -> float:
    """Seconds for one apply that moves one file of ``size`` bytes (plan made first, not timed)."""
    store = folder / "models"
    store.mkdir(parents=True)
    (store / "keep-me.bin").write_bytes(b"k")
    write(store / "stale.gguf", size)
    path = manifest(folder, store, backup)
    with open_session(path) as session, session.lock() as held:
        plan = session.plan(allow_empty=True)
        start = time.perf_counter()
        session.apply(plan, held)
        return time.perf_counter() - start


def timed(cmd: list[str], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    big = int(sys.argv[1]) * 1024 * 1024 if len(sys.argv) > 1 else 4096 * 1024 * 1024
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        base = Path(tmp)
        small_s = timed_apply(base / "small", 4096, base / "small-backups")
        big_s = timed_apply(base / "big", big, base / "big-backups")
        sizes = f"{big >> 20} MiB {big_s * 1e3:.1f} ms vs 4 KiB {small_s * 1e3:.1f} ms"
        print(f"1. apply, one file, same filesystem: {sizes}: ratio {big_s / small_s:.2f}x")
        shutil.rmtree(base / "big")
        shutil.rmtree(base / "big-backups")

        shm = Path("/dev/shm")
        if shm.is_dir() and shutil.disk_usage(shm).free > big * 2 + (64 << 20):
            other = Path(tempfile.mkdtemp(dir=shm, prefix="ocr-bench-"))
            try:
                source = base / "cp-source"
                write(source, big)
                start = time.perf_counter()
                subprocess.run(["cp", str(source), str(other / "copy")], check=True)
                subprocess.run(["sync"], check=True)
                cp_s = time.perf_counter() - start
                os.unlink(other / "copy")
                os.unlink(source)
                ours = timed_apply(base / "cross", big, other / "backups")
                print(f"2. apply across filesystems, {big >> 20} MiB: {ours:.2f} s vs cp + sync {cp_s:.2f} s: ratio {ours / cp_s:.2f}x")
            finally:
                shutil.rmtree(other, ignore_errors=True)
        else:
            print("2. apply across filesystems: skipped (no /dev/shm with room for two copies)")

    exe = str(BIN / "ocr-reconcile")
    floor = timed([sys.executable, "-c", "pass"])
    example = str(Path(__file__).resolve().parents[1] / "manifests" / "example.yaml")
    for label, cmd in (("--version", [exe, "--version"]), ("--help", [exe, "--help"]), ("validate", [exe, "validate", example])):
        took = timed(cmd)
        print(f"3. start-up, {label}: {took * 1e3:.0f} ms vs python -c pass {floor * 1e3:.0f} ms: ratio {took / floor:.1f}x")


if __name__ == "__main__":
    main()
