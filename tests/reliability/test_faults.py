"""Errors on the way (a really full filesystem, EIO, permission denied) and concurrent applies."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import EXIT_ERROR, EXIT_LOCKED, EXIT_OK
from reconciler.demo import build_store
from reconciler.journal import journal_path

from ..conftest import BIN
from .common import DEMO_STALE, assert_each_exactly_once, census, ocr_reconcile, originals, partials, small_filesystem, write_manifest


def _index(backup_root: Path) -> dict[str, Any]:
    [run] = [p for p in backup_root.iterdir() if p.is_dir()]
    data: dict[str, Any] = json.loads((run / "index.json").read_text())
    return data


def _stops_whole(tmp_path: Path, backup_root: Path, env: dict[str, str] | None) -> None:
    """A copy failure stops the run: exact report, nothing lost, no partial left, no journal left."""
    store = build_store(tmp_path / "models")
    manifest = write_manifest(tmp_path, store, backup_root)
    before = originals(store)
    result = ocr_reconcile("apply", str(manifest), "--yes", env=env)
    assert result.returncode == EXIT_ERROR, result.stdout + result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    assert "moving mistral-7b-v0.1.Q2_K.gguf failed" in line and "Moved before the failure: latest.gguf" in line, line
    assert_each_exactly_once(before, store, backup_root, "after the failed copy")
    assert not partials(store, backup_root) and not journal_path(str(store)).exists()
    index = _index(backup_root)
    assert index["status"] == "failed" and [e["name"] for e in index["entries"]] == ["latest.gguf"]
    assert (store / "mistral-7b-v0.1.Q2_K.gguf").exists() and not (store / "latest.gguf").exists()


def test_enospc_on_a_really_full_filesystem(tmp_path: Path) -> None:
    with small_filesystem("1m") as full:
        if full is None:
            pytest.skip("mounting a small tmpfs is not permitted here; see test_enospc_injected")
        _stops_whole(tmp_path, full / "backups", None)


def test_enospc_injected(tmp_path: Path) -> None:
    with small_filesystem("64m") as other:
        if other is None:
            pytest.skip("no second filesystem could be mounted")
        _stops_whole(tmp_path, other / "backups", {"OCR_RECONCILE_FAULT": "enospc-on-copy"})


def test_eio_injected_into_the_copy(tmp_path: Path) -> None:
    with small_filesystem("64m") as other:
        if other is None:
            pytest.skip("no second filesystem could be mounted")
        _stops_whole(tmp_path, other / "backups", {"OCR_RECONCILE_FAULT": "eio-on-copy"})


def test_permission_denied_on_one_file_is_skipped(tmp_path: Path) -> None:
    store = build_store(tmp_path / "models")
    manifest = write_manifest(tmp_path, store, tmp_path / "backups")
    before = originals(store)
    locked = store / "phi-2.Q4_K_M.gguf"
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not permitted here: cannot make one file immovable")
    try:
        result = ocr_reconcile("apply", str(manifest), "--yes")
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    assert result.returncode == 2, result.stderr  # changes still pending
    assert "skipped phi-2.Q4_K_M.gguf: Operation not permitted (left in place)" in result.stdout
    assert_each_exactly_once(before, store, tmp_path / "backups", "after EPERM")
    assert locked.exists() and set(before) - set(originals(store)) == DEMO_STALE - {"phi-2.Q4_K_M.gguf"}
    assert ocr_reconcile("apply", str(manifest), "--yes").returncode == EXIT_OK  # now it can move


def test_eight_concurrent_applies_one_wins(tmp_path: Path) -> None:
    store = build_store(tmp_path / "models")
    manifest = write_manifest(tmp_path, store, tmp_path / "backups")
    before = originals(store)
    env = {"OCR_RECONCILE_PAUSE_AFTER_LOCK": "3"}
    procs = [
        subprocess.Popen(
            [str(BIN / "ocr-reconcile"), "apply", str(manifest), "--yes"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **env},
        )
        for _ in range(8)
    ]
    results = [(p.wait(timeout=60), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [EXIT_OK] + [EXIT_LOCKED] * 7, results
    winner = [pid for (code, out, _), pid in zip(results, [p.pid for p in procs], strict=True) if code == EXIT_OK]
    for code, _, err in results:
        if code == EXIT_LOCKED:
            assert f"locked by PID {winner[0]} (apply) since " in err, err
    assert_each_exactly_once(before, store, tmp_path / "backups", "after 8 concurrent applies")
    assert len([p for p in (tmp_path / "backups").iterdir()]) == 1


def test_lock_timeout_waits_for_the_holder(tmp_path: Path) -> None:
    store = build_store(tmp_path / "models")
    manifest = write_manifest(tmp_path, store, tmp_path / "backups")
    holder = subprocess.Popen(
        [str(BIN / "ocr-reconcile"), "apply", str(manifest), "--yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OCR_RECONCILE_PAUSE_AFTER_LOCK": "1.5"},
    )
    time.sleep(0.8)
    waiter = ocr_reconcile("apply", str(manifest), "--yes", "--lock-timeout", "30")
    assert holder.wait(timeout=60) == EXIT_OK
    assert waiter.returncode == EXIT_OK and "No changes." in waiter.stdout, waiter.stderr
    assert census(store)  # the store still holds the kept files


def test_interrupted_run_is_reported_then_recovered_by_apply(tmp_path: Path) -> None:
    store = build_store(tmp_path / "models")
    manifest = write_manifest(tmp_path, store, tmp_path / "backups")
    before = originals(store)
    killed = ocr_reconcile("apply", str(manifest), "--yes", env={"OCR_RECONCILE_CRASH_AT": "5"})
    assert killed.returncode == -9
    for command in (["plan", str(manifest)], ["list", str(manifest)], ["check", str(manifest)], ["backups", "-m", str(manifest)]):
        result = ocr_reconcile(*command)
        assert "warning: an interrupted apply (" in result.stderr and "ocr-reconcile recover" in result.stderr, (command, result.stderr)
    applied = ocr_reconcile("apply", str(manifest), "--yes")
    assert applied.returncode == EXIT_OK, applied.stderr
    assert "Recovered interrupted apply run" in applied.stderr and "2 moves had completed" in applied.stderr
    assert "No changes." in applied.stdout  # recovery finished the run; the re-plan has nothing left
    assert_each_exactly_once(before, store, tmp_path / "backups", "after automatic recovery")
    assert not journal_path(str(store)).exists()
    nothing = ocr_reconcile("recover", "-m", str(manifest))
    assert nothing.returncode == 0 and "Nothing to recover" in nothing.stdout
