"""Issue 11: an install run (verified downloads moved into the store) killed with SIGKILL at every one
of its durable steps, and at every step of the recovery that finishes it. After each kill: the store
holds each model whole or not at all (never a partial file), ``recover`` and ``apply`` converge, and
the downloads folder keeps nothing."""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

import yaml

from reconciler.base.errors import ExitCode
from reconciler.base.layout import downloads_path

from .common import Cli, journal_of

KILLED = -signal.SIGKILL
CRASH_AT = "OCR_RECONCILE_CRASH_AT"
LLAMA = "Llama-3.2-3B-Instruct-Q4_K_M.gguf"
MODELS = {"qwen/q.gguf": b"q" * 300_000, "phi.gguf": b"p" * 200_000}
# journal begun; one rename per model; one group commit recording both; journal removed
INSTALL_STEPS = 1 + len(MODELS) + 1 + 1


def _case(folder: Path) -> tuple[Path, Path]:
    store, mirror = folder / "models", folder / "mirror"
    store.mkdir(parents=True)
    (store / LLAMA).write_bytes(b"here already")
    for name, data in MODELS.items():
        (mirror / name).parent.mkdir(parents=True, exist_ok=True)
        (mirror / name).write_bytes(data)
    doc = {
        "apiVersion": "ocr-reconcile/v1",
        "kind": "ModelState",
        "metadata": {"name": "install-kills"},
        "store": {"backend": "directory", "path": str(store)},
        "models": [{"name": LLAMA}, *({"name": n, "sha256": hashlib.sha256(d).hexdigest()} for n, d in MODELS.items())],
        "sources": {"mirror": str(mirror)},
        "in_progress": {"min_age": 0},
    }
    manifest = folder / "m.yaml"
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    return manifest, store


def _whole_or_absent(store: Path, context: str) -> None:
    for name, data in MODELS.items():
        if (store / name).exists():
            assert (store / name).read_bytes() == data, f"{context}: {name} is in the store but not whole"


def _converge(cli: Cli, manifest: Path, store: Path, context: str) -> None:
    _whole_or_absent(store, context)
    recovered = cli.run("recover", "-m", str(manifest))
    assert recovered.returncode == ExitCode.OK, f"{context}: {recovered.stdout}{recovered.stderr}"
    assert not journal_of(store).exists(), context
    _whole_or_absent(store, context + ", after recover")
    applied = cli.run("apply", "--yes", str(manifest))
    assert applied.returncode == ExitCode.OK, f"{context}: {applied.stdout}{applied.stderr}"
    again = cli.run("apply", "--yes", str(manifest))
    assert again.returncode == ExitCode.OK and "No changes." in again.stdout, context
    assert all((store / n).read_bytes() == d for n, d in MODELS.items()), context
    assert not [p for p in downloads_path(str(store)).rglob("*") if p.is_file()], f"{context}: downloads left behind"


def test_kill_an_install_at_every_step(cli: Cli, tmp_path: Path) -> None:
    step = 1
    while True:
        manifest, store = _case(tmp_path / f"step-{step}")
        result = cli.run("apply", "--yes", str(manifest), env={CRASH_AT: str(step)})
        if result.returncode != KILLED:
            assert result.returncode == ExitCode.OK, result.stderr
            break
        assert f"SIGKILL at step {step} " in result.stderr, result.stderr
        _converge(cli, manifest, store, f"install killed at step {step}")
        step += 1
    print(f"\nkill an install at every step: {step - 1} steps")
    assert step - 1 == INSTALL_STEPS


def test_kill_the_recovery_of_an_install_at_every_step(cli: Cli, tmp_path: Path) -> None:
    """Killed after its first rename (nothing recorded yet); recover records it from the disk, renames
    the second, commits, removes the journal: 3 steps, each killed in turn."""
    step = 1
    while True:
        manifest, store = _case(tmp_path / f"recover-{step}")
        assert cli.run("apply", "--yes", str(manifest), env={CRASH_AT: "2"}).returncode == KILLED
        second = cli.run("recover", "-m", str(manifest), env={CRASH_AT: str(step)})
        if second.returncode != KILLED:
            assert second.returncode == ExitCode.OK, second.stderr
            break
        _converge(cli, manifest, store, f"recovery killed at step {step}")
        step += 1
    print(f"\nkill the recovery of an install at every step: {step - 1} steps")
    assert step - 1 == 3
