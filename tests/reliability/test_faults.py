"""Errors on the way (a really full filesystem, injected ENOSPC and EIO, permission denied), concurrent
runs on one store (staged on events through the hold-lock hook, never on sleeps), and an interrupted
run as every other command sees it."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from reconciler.base.errors import ExitCode
from reconciler.base.layout import INDEX_NAME, lock_path
from reconciler.demo import build_store
from reconciler.disk.faults import FAULT_ENV, HOLD_LOCK_ENV, LOCKED_PREFIX, RELEASE_NAME

from .common import (
    DEMO_KEPT,
    DEMO_STALE,
    SMALL_DEMO,
    WAIT,
    Cli,
    assert_each_exactly_once,
    journal_of,
    originals,
    partials,
    popen,
    second_filesystem,
    small_filesystem,
    wait_for,
    write_manifest,
)

HOLD_LOCK = HOLD_LOCK_ENV


def _index(backup_root: Path) -> dict[str, Any]:
    [run] = [p for p in backup_root.iterdir() if p.is_dir()]
    data: dict[str, Any] = json.loads((run / INDEX_NAME).read_text())
    return data


def _stops_whole(cli: Cli, tmp_path: Path, backup_root: Path, env: dict[str, str] | None) -> None:
    """A copy failure stops the run: exact report, nothing lost, no partial left, no journal left."""
    store = build_store(tmp_path / "models")
    manifest = write_manifest(tmp_path, store, backup_root)
    before = originals(store)
    result = cli.run("apply", str(manifest), "--yes", env=env)
    assert result.returncode == ExitCode.ERROR, result.stdout + result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    assert "moving mistral-7b-v0.1.Q2_K.gguf failed" in line and "Moved before the failure: latest.gguf" in line, line
    assert_each_exactly_once(before, store, backup_root, "after the failed copy")
    assert not partials(store, backup_root) and not journal_of(store).exists()
    index = _index(backup_root)
    assert index["status"] == "failed" and [e["name"] for e in index["entries"]] == ["latest.gguf"]
    assert (store / "mistral-7b-v0.1.Q2_K.gguf").exists() and not (store / "latest.gguf").exists()


def test_enospc_on_a_really_full_filesystem(cli: Cli, tmp_path: Path) -> None:
    """A backup on a 1 MiB tmpfs (mounted by the test) runs out of space copying a 2.5 MiB model."""
    with small_filesystem("1m") as full:
        if full is None:
            pytest.skip("mounting a small tmpfs is not permitted here; see test_enospc_injected")
        _stops_whole(cli, tmp_path, full / "backups", None)


def test_a_backup_filesystem_full_only_for_the_index_is_one_error_and_recover_finishes(cli: Cli, tmp_path: Path) -> None:
    """From a hostile pass: the copy fits, the run's final index does not. One clear error (it was an
    internal error), the file whole in the backup, the journal kept; with room again, recover finishes."""
    with small_filesystem("1m") as full:
        if full is None:
            pytest.skip("mounting a small tmpfs is not permitted here")
        store = tmp_path / "models"
        store.mkdir()
        (store / "Llama-3.2-3B-Instruct-Q4_K_M.gguf").write_bytes(b"declared")
        stale = os.urandom(1_044_480)  # 1 MiB less 4 KiB: the copy fits, nothing more does
        (store / "stale.bin").write_bytes(stale)
        manifest = write_manifest(tmp_path, store, full / "backups", models=[{"name": "Llama-3.2-3B-Instruct-Q4_K_M.gguf"}], whitelist=[])
        result = cli.run("apply", str(manifest), "--yes")
        assert result.returncode == ExitCode.ERROR and "internal error" not in result.stderr, result.stderr
        assert "cannot write the index of backup run" in result.stderr and "No space left on device" in result.stderr
        [copy] = [p for p in (full / "backups").rglob("stale.bin")]
        assert copy.read_bytes() == stale and not (store / "stale.bin").exists() and journal_of(store).exists()
        assert not list((full / "backups").rglob(INDEX_NAME + ".tmp"))
        subprocess.run(["mount", "-o", "remount,size=4m", str(full)], check=True, capture_output=True)
        recovered = cli.run("recover", "--manifest", str(manifest))
        assert recovered.returncode == ExitCode.OK, recovered.stderr
        assert not journal_of(store).exists() and _index(full / "backups")["entries"][0]["name"] == "stale.bin"


@pytest.mark.parametrize("fault", ["enospc-on-copy", "eio-on-copy"])
def test_fault_injected_into_the_copy(cli: Cli, tmp_path: Path, fault: str) -> None:
    """ENOSPC or EIO injected after the first chunk of a cross-filesystem copy (no mount needed)."""
    with second_filesystem() as other:
        if other is None:
            pytest.skip("no second filesystem (/dev/shm tmpfs) on this machine")
        _stops_whole(cli, tmp_path, other / "backups", {FAULT_ENV: fault})


def test_permission_denied_on_one_file_is_skipped(cli: Cli, tmp_path: Path) -> None:
    """EPERM on one file (chattr +i): that file is skipped and left in place, the rest moved, exit 2;
    once the file is movable again, the next apply moves it."""
    store = build_store(tmp_path / "models", SMALL_DEMO)
    manifest = write_manifest(tmp_path, store, tmp_path / "backups")
    before = originals(store)
    locked = store / "phi-2.Q4_K_M.gguf"
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not permitted here: cannot make one file immovable")
    try:
        result = cli.run("apply", str(manifest), "--yes")
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    assert result.returncode == ExitCode.CHANGES, result.stderr  # changes still pending
    assert "skipped phi-2.Q4_K_M.gguf: Operation not permitted (left in place)" in result.stdout
    assert_each_exactly_once(before, store, tmp_path / "backups", "after EPERM")
    assert locked.exists() and set(before) - set(originals(store)) == DEMO_STALE - {"phi-2.Q4_K_M.gguf"}
    assert cli.run("apply", str(manifest), "--yes").returncode == ExitCode.OK  # now it can move


def _locked_pids(events: Path) -> list[int]:
    """PIDs that announced, through the hold-lock hook, that they hold the store lock."""
    return sorted(int(p.name.removeprefix(LOCKED_PREFIX)) for p in events.glob(LOCKED_PREFIX + "*"))


def _release(events: Path) -> None:
    (events / RELEASE_NAME).touch()


def _waiting_for_lock(pid: int, lock: Path) -> bool:
    """Whether process ``pid`` has the lock file open and is asleep: it has tried the lock and is
    waiting to retry (or blocked in it). Read from /proc, so no sleep decides it."""
    try:
        fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return str(lock) in fds and state == "S"


def test_eight_concurrent_applies_one_wins(cli: Cli, tmp_path: Path) -> None:
    """Eight applies started at once on one store: exactly one takes the lock and (hook) holds it until
    the seven others have exited 6; a ninth started once the holder has announced itself is refused
    naming the holder's PID; then the holder completes. Nothing lost or duplicated, one backup run.

    A contender that collides in the instant between the holder's flock and its writing of its PID
    into the lock file can only say "locked by another process": that is counted and reported, not
    failed, so that the outcome does not depend on scheduling."""
    store = build_store(tmp_path / "models", SMALL_DEMO)
    manifest = write_manifest(tmp_path, store, tmp_path / "backups")
    before = originals(store)
    events = tmp_path / "events"
    events.mkdir()
    procs = [popen("apply", str(manifest), "--yes", env={HOLD_LOCK: str(events)}) for _ in range(8)]
    named: Counter[str] = Counter()
    try:
        [holder_pid] = wait_for(lambda: _locked_pids(events), "one apply to hold the lock")
        [holder] = [p for p in procs if p.pid == holder_pid]
        names_holder = f"locked by PID {holder_pid} (apply) since "
        for proc in procs:
            if proc is not holder:
                _, err = proc.communicate(timeout=WAIT)
                assert proc.returncode == ExitCode.LOCKED, err
                assert names_holder in err or "locked by another process" in err, err
                named["the holder's PID" if names_holder in err else "another process (raced the holder's announcement)"] += 1
        late = cli.run("apply", str(manifest), "--yes")
        assert late.returncode == ExitCode.LOCKED and names_holder in late.stderr, late.stderr
        assert _locked_pids(events) == [holder_pid]  # no one else ever held it
        _release(events)
        out, err = holder.communicate(timeout=WAIT)
        assert holder.returncode == ExitCode.OK, out + err
    finally:
        _release(events)
        for proc in procs:
            proc.kill()
            proc.communicate()
    print(f"\n8 concurrent applies: 1 held the lock; the 7 others were refused naming {dict(named)}")
    assert_each_exactly_once(before, store, tmp_path / "backups", "after 8 concurrent applies")
    assert set(originals(store)) == DEMO_KEPT
    assert len(list((tmp_path / "backups").iterdir())) == 1


def test_lock_timeout_waits_for_the_holder(tmp_path: Path) -> None:
    """An apply with --lock-timeout started while another holds the lock waits instead of failing,
    never holds the lock at the same time, takes it once released, and finds nothing left to do."""
    store = build_store(tmp_path / "models", SMALL_DEMO)
    manifest = write_manifest(tmp_path, store, tmp_path / "backups")
    first, second = tmp_path / "holder-events", tmp_path / "waiter-events"
    first.mkdir()
    second.mkdir()
    lock = lock_path(os.path.realpath(store))
    holder = popen("apply", str(manifest), "--yes", env={HOLD_LOCK: str(first)})
    waiter: subprocess.Popen[str] | None = None
    try:
        wait_for(lambda: _locked_pids(first), "the first apply to hold the lock")
        waiter = popen("apply", str(manifest), "--yes", "--lock-timeout", str(WAIT), env={HOLD_LOCK: str(second)})
        proc = waiter
        wait_for(lambda: proc.poll() is not None or _waiting_for_lock(proc.pid, lock), "the second apply to wait for the lock")
        assert waiter.poll() is None, waiter.communicate()  # it waits instead of failing
        assert not _locked_pids(second)  # and does not hold the lock while the first one does
        _release(first)
        out, err = holder.communicate(timeout=WAIT)
        assert holder.returncode == ExitCode.OK, out + err
        took = wait_for(lambda: _locked_pids(second) or proc.poll() is not None, "the second apply to take the lock")
        assert took == [waiter.pid], waiter.communicate()
        _release(second)
        out, err = waiter.communicate(timeout=WAIT)
        assert waiter.returncode == ExitCode.OK and "No changes." in out, out + err
    finally:
        _release(first)
        _release(second)
        for p in (holder, waiter):
            if p is not None:
                p.kill()
                p.communicate()
    assert set(originals(store)) == DEMO_KEPT


def test_interrupted_run_is_reported_then_recovered_by_apply(cli: Cli, tmp_path: Path) -> None:
    """After a kill mid-run, every read-only command warns about the interrupted run; the next apply
    recovers it first (finishing the run, so its re-plan is empty); then there is nothing to recover."""
    store = build_store(tmp_path / "models", SMALL_DEMO)
    manifest = write_manifest(tmp_path, store, tmp_path / "backups")
    before = originals(store)
    killed = cli.run("apply", str(manifest), "--yes", env={"OCR_RECONCILE_CRASH_AT": "5"})  # after the 3rd rename, before the group commit
    assert killed.returncode == -9
    for command in (
        ["plan", "--detailed-exitcode", str(manifest)],
        ["list", str(manifest)],
        ["check", str(manifest)],
        ["backups", "-m", str(manifest)],
    ):
        result = cli.run(*command)
        assert "warning: an interrupted apply (" in result.stderr and "ocr-reconcile recover" in result.stderr, (command, result.stderr)
    applied = cli.run("apply", str(manifest), "--yes")
    assert applied.returncode == ExitCode.OK, applied.stderr
    assert "Recovered interrupted apply run" in applied.stderr and "3 moves had completed" in applied.stderr
    assert "No changes." in applied.stdout  # recovery finished the run; the re-plan has nothing left
    assert_each_exactly_once(before, store, tmp_path / "backups", "after automatic recovery")
    assert not journal_of(store).exists()
    nothing = cli.run("recover", "-m", str(manifest))
    assert nothing.returncode == ExitCode.OK and "Nothing to recover" in nothing.stdout
