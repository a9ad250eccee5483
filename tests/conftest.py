"""Shared fixtures: example stores on tmp_path, manifest writer, CLI runner."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

from reconciler.demo import build_store

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EXAMPLE_MANIFEST = ROOT / "manifests" / "example.yaml"
LLAMA = "Llama-3.2-3B-Instruct-Q4_K_M.gguf"


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (recursively, links not followed) -> sha256 of bytes or 'link:target'."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                out[rel] = "link:" + os.readlink(path)
            else:
                out[rel] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return out


def manifest_doc(**overrides: Any) -> dict[str, Any]:
    """The example manifest as a dict, with top-level fields replaced by ``overrides``."""
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE_MANIFEST.read_text())
    doc["in_progress"] = {"min_age": 0}  # tests write files and plan at once: no recency protection unless asked
    doc.update(overrides)
    return doc


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A fresh copy of the demo store: 4 to keep, 4 stale (one a symlink, one in a subfolder)."""
    return build_store(tmp_path / "models")


@pytest.fixture
def write_manifest(tmp_path: Path) -> Callable[..., Path]:
    """Write a manifest (example.yaml plus overrides) pointing at tmp_path/models; return its path."""

    def write(name: str = "manifest.yaml", **overrides: Any) -> Path:
        doc = manifest_doc(**overrides)
        doc.setdefault("store", {})
        if "store" not in overrides:
            doc["store"] = {"backend": "directory", "path": str(tmp_path / "models")}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    return write


@pytest.fixture(autouse=True, scope="session")
def _typer_adapted() -> None:
    """In-process CLI tests drive the app as its entry point does: with Typer adapted (cli/adapt.py)."""
    from reconciler.cli import adapt

    adapt.install()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``ocr-reconcile`` console script as a real subprocess."""
    exe = shutil.which("ocr-reconcile", path=str(BIN)) or str(BIN / "ocr-reconcile")
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([exe, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)


# Hypothesis: the same examples on every run and every machine, and no memory of earlier runs (no
# example database), so that a failure reproduces exactly and a pass does not depend on history.
# Timing-based checks (deadline, too_slow) are off: a loaded machine must not fail a correct test.
# HYPOTHESIS_PROFILE=explore draws fresh random examples (still no database) to hunt for new bugs.
settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("explore", derandomize=False, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def other_fs() -> Iterator[Path]:
    """A folder on another filesystem than the tests' (tmpfs ``/dev/shm``); skips where there is none."""
    from .reliability.common import second_filesystem  # imported here: common imports this module

    with second_filesystem() as folder:
        if folder is None:
            pytest.skip("no second filesystem (/dev/shm tmpfs) on this machine")
        yield folder


def run_with_stderr_on_a_terminal(args: list[str], stdout: Any = subprocess.PIPE) -> tuple[subprocess.CompletedProcess[bytes], bytes]:
    """Run ``ocr-reconcile ARGS`` with stderr on a pseudo-terminal and its progress shown at once
    (``SHOW_AFTER_S = 0``); the process and everything drawn on the terminal."""
    import pty
    import threading

    master, slave = pty.openpty()
    shown: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    code = "from reconciler.cli import progress as cli_progress; cli_progress.SHOW_AFTER_S = 0.0; from reconciler.cli import main; main()"
    try:
        done = subprocess.run([sys.executable, "-c", code, *args], stdout=stdout, stderr=slave, stdin=subprocess.DEVNULL, timeout=300)
    finally:
        os.close(slave)
    reader.join(timeout=60)
    os.close(master)
    return done, b"".join(shown)
