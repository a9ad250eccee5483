"""Benchmark 6: start-up of ``--version``, ``--help``, ``validate`` and ``plan`` (directory and aspose
backends) against ``python -c pass``, and what the engine adds against its own import.

Targets (issue 10): ``--version`` ≤ 3x ``python -c pass``; ``validate`` and ``plan`` ≤ 0.15 s; the aspose
backend ≤ the engine's own import + 0.1 s. Children run as an installed tool does (bytecode written).
Run: ``make bench`` or ``.venv/bin/python bench/bench_startup.py``.
"""

from __future__ import annotations

import subprocess
import sys

from common import REPO, TOOL, child_env, median_child, precompile, scratch

from reconciler.read.stores import engine_available


def main() -> None:
    precompile()
    example = str(REPO / "manifests" / "example.yaml")
    with scratch() as tmp:
        subprocess.run([sys.executable, "-m", "reconciler.demo", str(tmp / "demo")], check=True, capture_output=True)
        store = str(tmp / "demo" / "models")
        floor, _ = median_child([sys.executable, "-c", "pass"], 9)
        print(f"6. start-up, median of 9 (python -c pass: {floor * 1e3:.0f} ms)")
        commands = {
            "--version": [TOOL, "--version"],
            "--help": [TOOL, "--help"],
            "validate": [TOOL, "validate", example],
            "plan (directory)": [TOOL, "plan", example, "--store", store, "--backend", "directory"],
        }
        taken = {}
        for label, cmd in commands.items():
            taken[label], _ = median_child(cmd, 9)
            print(f"   {label:<17} {taken[label] * 1e3:4.0f} ms  [{taken[label] / floor:4.1f}x python -c pass]")
        if not engine_available():
            print("   plan (aspose): skipped (aspose-ocr-python-net is not installed)")
            return
        engine_env = child_env(DOTNET_SYSTEM_GLOBALIZATION_INVARIANT="1")
        engine, _ = median_child([sys.executable, "-c", "import aspose.ocr.ai; aspose.ocr.ai.AsposeAI()"], 9, env=engine_env)
        aspose, _ = median_child([TOOL, "plan", example, "--store", store, "--backend", "aspose"], 9)
        added = aspose - taken["plan (directory)"]
        own = engine - floor
        print(f"   plan (aspose)     {aspose * 1e3:4.0f} ms  [{aspose / floor:4.1f}x python -c pass]")
        print(f"   the engine adds {added * 1e3:.0f} ms to plan; its own import and AsposeAI() take {own * 1e3:.0f} ms", end="")
        print(f": +{(added - own) * 1e3:.0f} ms beyond them")


if __name__ == "__main__":
    main()
