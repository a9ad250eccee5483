"""Helpers for the reliability suite: stores, censuses of file bytes, real subprocess runs."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from reconciler.apply import PARTIAL
from reconciler.demo import build_store, fill
from reconciler.journal import journal_path, read_journal

from ..conftest import BIN, EXAMPLE_MANIFEST

DEMO_STALE = {"latest.gguf", "mistral-7b-v0.1.Q2_K.gguf", "old/Llama-3.1-8B-Instruct-Q4_K_M.gguf", "phi-2.Q4_K_M.gguf"}


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
                if name.endswith(PARTIAL) or name in ("index.json", "index.json.tmp"):
                    continue
                seen[digest(Path(dirpath) / name)] += 1
    return seen


def partials(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob(f"*{PARTIAL}")]


def originals(store: Path) -> dict[str, str]:
    """name -> content digest of every entry in the store (one folder level deep)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(store):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = Path(dirpath) / name
            out[os.path.relpath(path, store)] = digest(path)
    return out


def in_flight(store: Path) -> set[str]:
    """Names whose cross-filesystem move a kill interrupted between "rename the verified copy into
    place" and "unlink the original": whole in both places until recover compares and unlinks."""
    found = read_journal(journal_path(str(store)))
    if found is None:
        return set()
    header, records = found
    done = {r["key"] for r in records if r.get("type") in ("done", "skip")}
    return {
        m["facts"]["name"]
        for m in header.get("moves", [])
        if f"{m['role']}:{m['facts']['name']}" not in done and os.path.lexists(m["src"]) and os.path.lexists(m["dst"])
    }


def assert_each_exactly_once(before: dict[str, str], store: Path, backup_root: Path, context: str) -> None:
    """Every original file's bytes are found exactly once in the store or the backup.

    The one exception, right after a kill, is the file whose cross-filesystem move was in flight
    (see :func:`in_flight`): found twice, never zero times. Once recovered, exactly once, always.
    """
    seen = census(store, backup_root)
    lost = {n for n, d in before.items() if seen[d] == 0}
    doubled = {n for n, d in before.items() if seen[d] > 1} - in_flight(store)
    assert not lost and not doubled, f"{context}: lost {sorted(lost)}, duplicated {sorted(doubled)}"
    assert len(in_flight(store)) <= 1, context


def write_manifest(folder: Path, store: Path, backup_root: Path, **extra: object) -> Path:
    doc = yaml.safe_load(EXAMPLE_MANIFEST.read_text())
    doc["store"] = {"backend": "directory", "path": str(store)}
    doc["backup"] = {"dir": str(backup_root), "keep": 5}
    doc.update(extra)
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def big_store(root: Path, stale: int, size: int) -> Path:
    """The demo store plus ``stale`` more stale files of ``size`` bytes (wider windows for random kills)."""
    build_store(root)
    for i in range(stale):
        folder = root / ("bulk" if i % 2 else "")
        folder.mkdir(exist_ok=True)
        (folder / f"stale-{i:03d}.bin").write_bytes(fill(f"stale-{i}", size))
    return root


def ocr_reconcile(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "ocr-reconcile"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


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
