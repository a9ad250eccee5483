"""kill -9 at every journal step, and at random times, of a real `ocr-reconcile apply` process."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconciler.cli import app
from reconciler.demo import build_store
from reconciler.journal import journal_path

from ..conftest import BIN
from .common import (
    DEMO_STALE,
    assert_each_exactly_once,
    big_store,
    ocr_reconcile,
    originals,
    partials,
    second_filesystem,
    write_manifest,
)

KILLED = -signal.SIGKILL


def _converge(manifest: Path, store: Path, backup_root: Path, before: dict[str, str], context: str) -> None:
    """After a kill: recover, apply, apply again; nothing lost or doubled at each stage."""
    assert_each_exactly_once(before, store, backup_root, context + ", after the kill")
    recovered = ocr_reconcile("recover", "-m", str(manifest))
    assert recovered.returncode == 0, recovered.stderr
    assert not journal_path(str(store)).exists()
    assert not partials(store, backup_root), context
    assert_each_exactly_once(before, store, backup_root, context + ", after recover")
    applied = ocr_reconcile("apply", str(manifest), "--yes")
    assert applied.returncode == 0, f"{context}: {applied.stdout}{applied.stderr}"
    again = ocr_reconcile("apply", str(manifest), "--yes")
    assert again.returncode == 0 and "No changes." in again.stdout, context
    assert_each_exactly_once(before, store, backup_root, context + ", converged")
    assert set(originals(store)) == set(before) - DEMO_STALE, context


def _kill_at_every_step(tmp_path: Path, backup_base: Path, label: str) -> int:
    step = 1
    while True:
        case = tmp_path / f"{label}-{step}"
        store = build_store(case / "models")
        backup_root = backup_base / f"{label}-{step}"
        manifest = write_manifest(case, store, backup_root)
        before = originals(store)
        result = ocr_reconcile("apply", str(manifest), "--yes", env={"OCR_RECONCILE_CRASH_AT": str(step)})
        if result.returncode != KILLED:
            assert result.returncode == 0, result.stderr
            assert_each_exactly_once(before, store, backup_root, f"{label}: ran to the end")
            return step - 1
        assert f"SIGKILL at step {step}" in result.stderr
        _converge(manifest, store, backup_root, before, f"{label}: killed at step {step}")
        step += 1


def test_kill_at_every_step_same_filesystem(tmp_path: Path) -> None:
    steps = _kill_at_every_step(tmp_path, tmp_path / "backups", "same-fs")
    # journal, index, 4 x (rename, record), index, prune, journal removal
    assert steps == 2 + 4 * 2 + 3


def test_kill_at_every_step_cross_filesystem(tmp_path: Path) -> None:
    with second_filesystem() as other:
        if other is None:
            pytest.skip("no second filesystem (/dev/shm tmpfs) on this machine: cross-filesystem kills cannot run")
        steps = _kill_at_every_step(tmp_path, other, "cross-fs")
    # journal, index, 4 x (copy written, copy renamed, source unlinked, record), index, prune, journal removal
    assert steps == 2 + 4 * 4 + 3


def test_kill_recovery_itself_at_every_step(tmp_path: Path) -> None:
    """A crash during apply, then a crash during recover, at each of recover's own steps."""
    with second_filesystem() as other:
        base = other or tmp_path / "backups"
        step = 1
        while True:
            case = tmp_path / f"r{step}"
            store = build_store(case / "models")
            backup_root = base / f"r{step}"
            manifest = write_manifest(case, store, backup_root)
            before = originals(store)
            first = ocr_reconcile("apply", str(manifest), "--yes", env={"OCR_RECONCILE_CRASH_AT": "9"})  # mid-run
            assert first.returncode == KILLED
            second = ocr_reconcile("recover", "-m", str(manifest), env={"OCR_RECONCILE_CRASH_AT": str(step)})
            if second.returncode != KILLED:
                assert second.returncode == 0, second.stderr
                break
            _converge(manifest, store, backup_root, before, f"recover killed at step {step}")
            step += 1
        assert step > 3


RANDOM_KILLS = 120
STALE, SIZE = 40, 192 * 1024


def _start(manifest: Path) -> subprocess.Popen[bytes]:
    argv = [str(BIN / "ocr-reconcile"), "apply", str(manifest), "--yes"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


def _calibrate(tmp_path: Path, base: Path) -> tuple[float, float]:
    """When, after starting, a run's journal appears and when the run ends (this machine, now)."""
    starts, ends = [], []
    for i in range(3):
        case = tmp_path / f"calibrate{i}"
        store = big_store(case / "models", stale=STALE, size=SIZE)
        manifest = write_manifest(case, store, base / f"calibrate{i}")
        t0 = time.monotonic()
        proc = _start(manifest)
        seen = None
        while proc.poll() is None:
            if seen is None and journal_path(str(store)).exists():
                seen = time.monotonic() - t0
            time.sleep(0.001)
        starts.append(seen if seen is not None else 0.0)
        ends.append(time.monotonic() - t0)
    return sorted(starts)[1], sorted(ends)[1]


def test_kill_at_random_times(tmp_path: Path) -> None:
    """Real SIGKILLs at random moments of runs moving 44 files across filesystems."""
    rng = random.Random(20261124)
    runner = CliRunner()
    mid_run = 0
    with second_filesystem() as other:
        base = other or tmp_path / "backups"
        begin, end = _calibrate(tmp_path, base)
        for trial in range(RANDOM_KILLS):
            case = tmp_path / f"t{trial}"
            store = big_store(case / "models", stale=STALE, size=SIZE)
            backup_root = base / f"t{trial}"
            manifest = write_manifest(case, store, backup_root)
            before = originals(store)
            proc = _start(manifest)
            time.sleep(rng.uniform(begin * 0.8, end * 1.1))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            mid_run += journal_path(str(store)).exists()
            assert_each_exactly_once(before, store, backup_root, f"trial {trial}, after the kill")
            recovered = runner.invoke(app, ["recover", "-m", str(manifest)])
            assert recovered.exit_code == 0, recovered.output
            assert not partials(store, backup_root)
            applied = runner.invoke(app, ["apply", str(manifest), "--yes"])
            assert applied.exit_code == 0, applied.output
            assert_each_exactly_once(before, store, backup_root, f"trial {trial}, converged")
            assert set(originals(store)) == {n for n in before if not n.startswith(("stale-", "bulk/"))} - DEMO_STALE
    print(f"\nrandom kills: {RANDOM_KILLS} trials, {mid_run} landed mid-run (journal left behind), window {begin:.2f}-{end:.2f} s")
    assert mid_run >= RANDOM_KILLS // 3, f"only {mid_run} of {RANDOM_KILLS} kills landed mid-run"
