"""Build the small example store that ``make demo`` reconciles: ``python -m reconciler.demo DIR``.

Creates ``DIR/models`` with the two models ``manifests/example.yaml`` declares, two whitelisted
files, and some stale ones (a stale model in a subfolder and a stale symlink among them).
For demos and tests only; never point it at a real store.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

# name -> size in bytes; "->" marks a symlink and its target.
EXAMPLE_STORE: dict[str, int | str] = {
    "Llama-3.2-3B-Instruct-Q4_K_M.gguf": 3 * 1024 * 1024,
    "qwen/Qwen2.5-1.5B-Instruct-Q4_K_M.gguf": 2 * 1024 * 1024,
    "qwen/tokenizer.json": 4096,
    "custom_invoices.bin": 64 * 1024,
    "phi-2.Q4_K_M.gguf": 1536 * 1024,
    "mistral-7b-v0.1.Q2_K.gguf": 2560 * 1024,
    "old/Llama-3.1-8B-Instruct-Q4_K_M.gguf": 1024 * 1024,
    "latest.gguf": "->phi-2.Q4_K_M.gguf",
}


def fill(name: str, size: int) -> bytes:
    """Deterministic, name-dependent bytes so that every file has its own hash."""
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


DEMO_MTIME_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z


def build_store(root: Path, layout: dict[str, int | str] | None = None) -> Path:
    """Create the files of ``layout`` (default: EXAMPLE_STORE) under ``root``; return ``root``."""
    for name, spec in (layout or EXAMPLE_STORE).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(spec, str) and spec.startswith("->"):
            os.symlink(spec[2:], path)
        else:
            path.write_bytes(fill(name, int(spec)))
        os.utime(path, ns=(DEMO_MTIME_NS, DEMO_MTIME_NS), follow_symlinks=False)  # old files, as in a real store
    root.mkdir(parents=True, exist_ok=True)
    return root


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "build/demo") / "models"
    if target.exists():
        sys.exit(f"{target} exists; remove it first")
    build_store(target)
    print(f"Built example store {target} ({len(EXAMPLE_STORE)} entries).")


if __name__ == "__main__":
    main()
