"""Benchmarks 2, 3 and 5: what apply costs as a file grows, across filesystems, and for many small files.

2. apply of one 4 GiB file of real data vs one 4 KiB file, same filesystem: a rename reads nothing, so
   the ratio should stay near 1 (target ≤ 1.1x). Medians of 7 applies of the same file.
3. apply of a 2 GiB file to a backup folder on another filesystem (/dev/shm) vs ``cp`` of the same file
   then ``sync`` of the copy (target ≤ 1.2x), and vs ``mv`` + ``sync``, which also deletes the original as
   apply does. On tmpfs the copy runs at memory speed, so SHA-256 (~2 GB/s here) sets apply's pace.
5. 1,000 small moves: the apply itself and the whole ``ocr-reconcile apply --yes`` command, vs ``mv`` +
   ``sync`` and vs ``rsync --remove-source-files`` moving the same files.
Sizes: ``BENCH_BIG_MIB`` (4096) and ``BENCH_CROSS_MIB`` (2048). Run: ``make bench``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from common import TOOL, have, mib, other_filesystem, precompile, run_child, scratch, write_manifest, write_real

from reconciler import open_session


def timed_apply(folder: Path, size: int, backup: Path, repeat: int = 7) -> float:
    """Median seconds of an apply that moves one file of ``size`` bytes (each plan made first, not timed);
    between runs the file is renamed back, keeping its identity, so every run moves the same file."""
    store = folder / "models"
    store.mkdir(parents=True)
    (store / "keep-me.bin").write_bytes(b"k")
    write_real(store / "stale.gguf", size)
    manifest = write_manifest(folder, store, models=[{"name": "keep-me.bin"}], backup={"dir": str(backup), "keep": None})
    times = []
    for _ in range(repeat):
        with open_session(manifest) as session, session.lock() as held:
            plan = session.plan()
            start = time.perf_counter()
            result = session.apply(plan, held)
            times.append(time.perf_counter() - start)
        assert result.run_dir is not None
        os.rename(result.run_dir / "stale.gguf", store / "stale.gguf")
        shutil.rmtree(result.run_dir)
    return statistics.median(times)


def cross_trial(folder: Path, size: int, other: Path) -> tuple[float, float, float]:
    """(apply, cp + sync, mv + sync) seconds for one file each, all read from the page cache alike:
    ``cp`` copies; ``mv`` across filesystems also deletes the original, as apply does."""
    store = folder / "models"
    store.mkdir(parents=True)
    (store / "keep-me.bin").write_bytes(b"k")
    write_real(store / "stale.gguf", size)
    write_real(folder / "for-mv.gguf", size)
    baselines = []
    for command in (["cp", str(store / "stale.gguf")], ["mv", str(folder / "for-mv.gguf")]):
        start = time.perf_counter()
        subprocess.run([*command, str(other / "copy")], check=True)
        subprocess.run(["sync", str(other / "copy")], check=True)  # fsync the copy only, as apply does
        baselines.append(time.perf_counter() - start)
        os.unlink(other / "copy")
    manifest = write_manifest(folder, store, models=[{"name": "keep-me.bin"}], backup={"dir": str(other / "backups"), "keep": None})
    with open_session(manifest) as session, session.lock() as held:
        plan = session.plan()
        start = time.perf_counter()
        session.apply(plan, held)
        ours = time.perf_counter() - start
    shutil.rmtree(other / "backups")
    shutil.rmtree(folder)
    return ours, baselines[0], baselines[1]


def small_store(folder: Path, files: int) -> Path:
    store = folder / "models"
    store.mkdir(parents=True)
    (store / "keep-me.bin").write_bytes(b"k")
    for i in range(files):
        (store / f"stale-{i}.bin").write_bytes(b"x" * 4096)
    os.sync()
    return store


def main() -> None:
    big = int(os.environ.get("BENCH_BIG_MIB", "4096")) << 20
    cross = int(os.environ.get("BENCH_CROSS_MIB", "2048")) << 20
    precompile()
    with scratch() as tmp:
        small_s = timed_apply(tmp / "small", 4096, tmp / "small-backups")
        big_s = timed_apply(tmp / "big", big, tmp / "big-backups")
        sizes = f"{mib(big)} {big_s * 1e3:.1f} ms vs 4 KiB {small_s * 1e3:.1f} ms"
        print(f"2. apply, one file, same filesystem: {sizes}: ratio {big_s / small_s:.2f}x")
        shutil.rmtree(tmp / "big")
        shutil.rmtree(tmp / "big-backups")

        with other_filesystem(cross * 2 + (64 << 20)) as other:
            if other is None:
                print("3. apply across filesystems: skipped (no /dev/shm on another filesystem with room for two copies)")
            else:
                trials = [cross_trial(tmp / f"cross-{i}", cross, other) for i in range(3)]
                ours, cp_s, mv_s = (statistics.median(t[i] for t in trials) for i in range(3))
                times = (
                    f"{ours:.2f} s vs cp + sync {cp_s:.2f} s [{ours / cp_s:.2f}x], vs mv + sync {mv_s:.2f} s [{mv_s and ours / mv_s:.2f}x]"
                )
                print(f"3. apply across filesystems, {mib(cross)} (medians of 3): {times}")

        files = 1000
        store = small_store(tmp / "mv", files)
        (tmp / "mv-dst").mkdir()
        start = time.perf_counter()
        subprocess.run(["mv", *(str(store / f"stale-{i}.bin") for i in range(files)), str(tmp / "mv-dst")], check=True)
        subprocess.run(["sync", str(tmp / "mv-dst"), str(store)], check=True)  # both folders, as apply fsyncs them
        mv_s = time.perf_counter() - start
        rsync_s = None
        if have("rsync"):
            store = small_store(tmp / "rsync", files)
            start = time.perf_counter()
            command = ["rsync", "-a", "--remove-source-files", "--exclude", "keep-me.bin", f"{store}/", f"{tmp / 'rsync-dst'}/"]
            subprocess.run(command, check=True)
            rsync_s = time.perf_counter() - start
        store = small_store(tmp / "ours", files)
        manifest = write_manifest(tmp / "ours", store, models=[{"name": "keep-me.bin"}], limits={"max_delete": None})
        with open_session(manifest) as session, session.lock() as held:
            plan = session.plan()
            start = time.perf_counter()
            session.apply(plan, held)
            apply_s = time.perf_counter() - start
        store = small_store(tmp / "cli", files)
        manifest = write_manifest(tmp / "cli", store, models=[{"name": "keep-me.bin"}], limits={"max_delete": None})
        command_s, _ = run_child([TOOL, "--quiet", "apply", "--yes", str(manifest)])
        per = f"apply {apply_s / files * 1e6:.0f} µs/move, the whole apply command {command_s / files * 1e6:.0f} µs/move"
        print(f"5. {files:,} small moves: {per}")
        rsync = f", rsync --remove-source-files {rsync_s / files * 1e6:.0f} µs/move" if rsync_s else ", rsync: not installed"
        print(f"   baselines: mv + sync {mv_s / files * 1e6:.0f} µs/move{rsync}")
        print(f"   ratios: apply / (mv + sync) {apply_s / mv_s:.1f}x, command / (mv + sync) {command_s / mv_s:.1f}x", end="")
        print(f", apply / rsync {apply_s / rsync_s:.2f}x, command / rsync {command_s / rsync_s:.2f}x" if rsync_s else "")


if __name__ == "__main__":
    main()
