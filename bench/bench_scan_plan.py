"""Benchmark: scan+plan and apply against plain-Python baselines measured in the same run.

Prints ratios (ours / baseline), never asserts times: machines here are shared and noisy.
Run: ``make bench`` (or ``.venv/bin/python bench/bench_scan_plan.py [FILES]``).
Baselines: for scan+plan, ``os.scandir`` of the store and its subfolders plus one ``lstat`` per
file (the least any correct scan must do); for apply, a bare ``os.rename`` loop over the same
files (the least any move must do). Both run on the same machine in the same process, so the ratios hold across machines.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from reconciler import open_session
from reconciler.manifest import parse_manifest
from reconciler.plan import make_plan
from reconciler.scan import scan_store
from reconciler.stores import DirectoryStore


def build(root: Path, files: int) -> None:
    for i in range(files):
        folder = root / f"group{i % 20}" if i % 2 else root
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"model-{i}.gguf").write_bytes(b"x" * 64)


def baseline_scan(root: Path) -> int:
    count = 0
    for entry in os.scandir(root):
        if entry.is_dir():
            for child in os.scandir(entry.path):
                os.lstat(child.path)
                count += 1
        else:
            os.lstat(entry.path)
            count += 1
    return count


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    files = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "models"
        build(root, files)
        keep = [f"model-{i}.gguf" if i % 2 == 0 else f"group{i % 20}/model-{i}.gguf" for i in range(0, files, 3)]
        doc = {
            "apiVersion": "ocr-reconcile/v1",
            "kind": "ModelState",
            "metadata": {"name": "bench"},
            "models": [{"name": n} for n in keep],
            "in_progress": {"min_age": 0},  # the files were just written: no recency protection here
        }
        manifest = parse_manifest(yaml.safe_dump(doc).encode(), "bench.yaml")
        store = DirectoryStore(root)

        def ours() -> object:
            return make_plan(manifest, scan_store(store))

        base = best_of(lambda: baseline_scan(root))
        mine = best_of(ours)
        plan = make_plan(manifest, scan_store(store))
        print(f"scan+plan, {files} files: baseline {base * 1e3:.1f} ms, ocr-reconcile {mine * 1e3:.1f} ms, ratio {mine / base:.2f}x")

        # apply: our journaled, group-committed move vs a bare rename loop over the same names
        names = [c.name for c in plan.to_delete]
        bare_dst = Path(tmp) / "bare"
        start = time.perf_counter()
        for name in names:
            (bare_dst / name).parent.mkdir(parents=True, exist_ok=True)
            os.rename(root / name, bare_dst / name)
        bare = time.perf_counter() - start
        for name in names:  # put them back, same inodes: the plan still matches
            os.rename(bare_dst / name, root / name)
        with open_session(manifest, root, "directory", backup_dir=Path(tmp) / "backups") as session, session.lock() as held:
            start = time.perf_counter()
            result = session.apply(plan, held)
            applied = time.perf_counter() - start
        assert len(result.moved) == len(names)
        ratio = applied / bare
        print(f"apply, {len(names)} moves: bare os.rename {bare * 1e3:.1f} ms, ocr-reconcile {applied * 1e3:.1f} ms, ratio {ratio:.1f}x")
        print(
            f"  per move: {applied / len(names) * 1e6:.0f} us (a rename and an lstat; per group of 256: one journal fsync, one per folder)"
        )
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
