"""Benchmark 1: scan + plan at 10, 1,000, 10,000 and 100,000 files (issue 10).

For each size: the whole command ``ocr-reconcile plan --json`` (start-up, manifest, scan, plan, streamed
JSON) in µs per file, its peak memory, and the scan + plan alone (in process); against ``find -printf``
(one lstat per file) and ``rsync -an --delete`` (a dry-run mirror), when installed.
Run: ``make bench`` or ``.venv/bin/python bench/bench_scan_plan.py [SIZES...]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import TOOL, have, median_call, median_child, precompile, scratch, write_manifest

from reconciler import open_session

SIZES = (10, 1_000, 10_000, 100_000)


def build(root: Path, files: int) -> list[str]:
    """Half the files at the top, half in 20 subfolders; returns the names of every 30th (declared)."""
    names = []
    for i in range(files):
        name = f"group{i % 20}/model-{i}.gguf" if i % 2 else f"model-{i}.gguf"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 64)
        names.append(name)
    return names[::30]


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or SIZES
    precompile()
    print("1. scan + plan (µs per file; ratios against the baseline in brackets)")
    for files in sizes:
        with scratch() as tmp:
            store = tmp / "models"
            declared = build(store, files)
            manifest = write_manifest(tmp, store, models=[{"name": n} for n in declared], whitelist=["group1/*"])
            repeat = 3 if files >= 100_000 else 5
            whole, peak = median_child([TOOL, "plan", "--json", str(manifest)], repeat)
            with open_session(manifest) as session:
                session.plan()  # warm the caches once, as the repeated runs below are
                inner = median_call(session.plan, repeat)
            find, _ = median_child(["find", str(store), "-printf", "%s %T@ %p\n"], repeat)
            line = f"   {files:>7,} files: plan --json {whole / files * 1e6:6.1f} µs/file (peak {peak / 1024:5.1f} MiB)"
            line += f", scan+plan in process {inner / files * 1e6:5.1f} µs/file; find -printf {find / files * 1e6:5.1f} µs/file"
            line += f" [{whole / find:.1f}x]"
            if have("rsync"):
                (tmp / "mirror").mkdir()
                rsync, _ = median_child(["rsync", "-an", "--delete", f"{store}/", f"{tmp / 'mirror'}/"], repeat)
                line += f"; rsync -an --delete {rsync / files * 1e6:5.1f} µs/file [{whole / rsync:.1f}x]"
            else:
                line += "; rsync: not installed"
            print(line, flush=True)


if __name__ == "__main__":
    main()
