"""Apply, backup index, pruning and restore on real files under tmp_path, through the library API."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler import ApplyResult, BackupError, CannotConvergeError, ConfigError, Plan, RestoreResult, open_session
from reconciler.base.hashing import file_sha256
from reconciler.base.layout import INDEX_NAME, default_backup_root
from reconciler.disk.catalogue import find_run, list_runs

from ..conftest import tree_digest

STALE = {"latest.gguf", "mistral-7b-v0.1.Q2_K.gguf", "old/Llama-3.1-8B-Instruct-Q4_K_M.gguf", "phi-2.Q4_K_M.gguf"}


def make(manifest_path: Path, store: Path) -> Plan:
    with open_session(manifest_path, store) as session:
        return session.plan()


def apply(manifest_path: Path, backup_root: Path | None = None, plan: Plan | None = None) -> ApplyResult:
    """Apply ``plan`` (default: a fresh one) under the store lock, as every front end does."""
    with open_session(manifest_path, backup_dir=backup_root) as session, session.lock() as held:
        return session.apply(plan or session.plan(), held)


def restore(manifest_path: Path, run_id: str, names: list[str], force: bool = False, backup_root: Path | None = None) -> RestoreResult:
    with open_session(manifest_path, backup_dir=backup_root) as session:
        return session.restore(session.plan_restore(run_id, names, force))


def test_apply_moves_exactly_the_delete_set_and_restore_undoes_it(store: Path, write_manifest: Callable[..., Path]) -> None:
    before = tree_digest(store)
    plan = make(write_manifest(), store)
    assert {c.name for c in plan.to_delete} == STALE
    backup_root = default_backup_root(str(store))
    result = apply(write_manifest(), plan=plan)
    assert {m.name for m in result.moved} == STALE and not result.skipped
    assert all(m.method == "rename" for m in result.moved)
    after = tree_digest(store)
    assert set(before) - set(after) == STALE
    assert all(after[n] == before[n] for n in after)
    # the backup holds the same bytes, and the index says so
    run_dir = backup_root / str(result.run_id)
    backed = tree_digest(run_dir)
    assert all(backed[n] == before[n] for n in STALE)
    index = json.loads((run_dir / INDEX_NAME).read_text())
    assert index["status"] == "complete"
    # a rename reads no byte: the index records each file's identity as placed, not a hash (issue 10)
    for e in index["entries"]:
        st = os.lstat(run_dir / e["name"])
        assert e["identity"] == [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns] and e["sha256"] is None
    # the symlink moved as a link; its target stayed
    assert os.readlink(run_dir / "latest.gguf") == "phi-2.Q4_K_M.gguf"
    # second apply: nothing to do
    assert not make(write_manifest(), store).has_changes
    restored = restore(write_manifest(), str(result.run_id), [])
    assert set(restored.restored) == STALE
    assert tree_digest(store) == before
    (run,) = list_runs(backup_root)  # the index stays, as the audit trail, marked restored
    assert run.state == "restored" and not run.held and os.listdir(run.path) == [INDEX_NAME]


def test_apply_refuses_missing_models_and_moves_nothing(store: Path, write_manifest: Callable[..., Path]) -> None:
    before = tree_digest(store)
    plan = make(write_manifest(models=[{"name": "absent.gguf"}]), store)
    with pytest.raises(CannotConvergeError):
        apply(write_manifest(models=[{"name": "absent.gguf"}]), plan=plan)
    assert tree_digest(store) == before
    assert not default_backup_root(str(store)).exists()


def test_backup_inside_store_is_refused(store: Path, write_manifest: Callable[..., Path]) -> None:
    with pytest.raises(ConfigError, match="inside the store"):
        apply(write_manifest(), store / "backups")


def test_changed_file_is_skipped_not_moved(store: Path, write_manifest: Callable[..., Path]) -> None:
    plan = make(write_manifest(), store)
    (store / "phi-2.Q4_K_M.gguf").write_bytes(b"new content written after the plan")
    (store / "mistral-7b-v0.1.Q2_K.gguf").unlink()
    result = apply(write_manifest(), plan=plan)
    assert dict(result.skipped).keys() == {"phi-2.Q4_K_M.gguf", "mistral-7b-v0.1.Q2_K.gguf"}
    assert (store / "phi-2.Q4_K_M.gguf").read_bytes() == b"new content written after the plan"
    assert {m.name for m in result.moved} == {"latest.gguf", "old/Llama-3.1-8B-Instruct-Q4_K_M.gguf"}


def test_symlink_target_outside_store_is_never_touched(store: Path, tmp_path: Path, write_manifest: Callable[..., Path]) -> None:
    outside = tmp_path / "precious.bin"
    outside.write_bytes(b"do not move me")
    (store / "link-out").symlink_to(outside)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.gguf").write_bytes(b"outside the store")
    (store / "linkdir").symlink_to(tmp_path / "elsewhere")
    plan = make(write_manifest(), store)
    result = apply(write_manifest(), plan=plan)
    assert "link-out" in {m.name for m in result.moved}
    assert "linkdir/x.gguf" not in {c.name for c in plan.to_delete}
    assert outside.read_bytes() == b"do not move me"
    assert (tmp_path / "elsewhere" / "x.gguf").read_bytes() == b"outside the store"


def test_keep_prunes_oldest_complete_runs(store: Path, write_manifest: Callable[..., Path]) -> None:
    backup_root = default_backup_root(str(store))
    ids = []
    for i in range(4):
        (store / f"stale{i}.bin").write_bytes(b"x" * i)
        ids.append(apply(write_manifest(backup={"keep": 2})).run_id)
    assert [r.run_id for r in list_runs(backup_root)] == [ids[3], ids[2]]


def test_restore_refuses_to_overwrite_a_different_file_unless_forced(store: Path, write_manifest: Callable[..., Path]) -> None:
    backup_root = default_backup_root(str(store))
    original = (store / "phi-2.Q4_K_M.gguf").read_bytes()
    result = apply(write_manifest())
    (store / "phi-2.Q4_K_M.gguf").write_bytes(b"someone put a new file here")
    run_id = str(result.run_id)
    with pytest.raises(BackupError, match="different file"):
        restore(write_manifest(), run_id, ["phi-2.Q4_K_M.gguf"])
    assert (store / "phi-2.Q4_K_M.gguf").read_bytes() == b"someone put a new file here"
    with pytest.raises(BackupError, match="holds no"):
        restore(write_manifest(), run_id, ["nope"])
    out = restore(write_manifest(), run_id, ["phi-2.Q4_K_M.gguf"], force=True)
    assert out.restored == ("phi-2.Q4_K_M.gguf",) and out.displaced_run
    assert (store / "phi-2.Q4_K_M.gguf").read_bytes() == original
    displaced = find_run(backup_root, out.displaced_run)
    assert (displaced.path / "phi-2.Q4_K_M.gguf").read_bytes() == b"someone put a new file here"
    # the rest of the run is still restorable
    assert {e.name for e in find_run(backup_root, run_id).held} == STALE - {"phi-2.Q4_K_M.gguf"}


def test_restore_of_identical_file_is_a_no_op(store: Path, write_manifest: Callable[..., Path]) -> None:
    data = (store / "phi-2.Q4_K_M.gguf").read_bytes()
    result = apply(write_manifest())
    (store / "phi-2.Q4_K_M.gguf").write_bytes(data)
    out = restore(write_manifest(), str(result.run_id), ["phi-2.Q4_K_M.gguf"])
    assert out.restored == () and out.already_present == ("phi-2.Q4_K_M.gguf",)


def _second_filesystem(tmp_path: Path) -> Path | None:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and os.stat(shm).st_dev != os.stat(tmp_path).st_dev:
        return shm
    return None


def test_cross_filesystem_backup_copies_verifies_and_unlinks(store: Path, tmp_path: Path, write_manifest: Callable[..., Path]) -> None:
    other = _second_filesystem(tmp_path)
    if other is None:
        pytest.skip("no second writable filesystem (/dev/shm tmpfs) on this machine")
    backup_root = other / f"ocr-reconcile-test-{os.getpid()}-{tmp_path.name}"
    before = tree_digest(store)
    try:
        result = apply(write_manifest(), backup_root)
        assert {m.method for m in result.moved} == {"copy"}
        run_dir = backup_root / str(result.run_id)
        assert all(tree_digest(run_dir)[n] == before[n] for n in STALE)
        assert not [p for p in run_dir.rglob("*partial*")]
        assert STALE.isdisjoint(tree_digest(store))
        restore(write_manifest(), str(result.run_id), [], backup_root=backup_root)
        assert tree_digest(store) == before
    finally:
        import shutil

        shutil.rmtree(backup_root, ignore_errors=True)


def test_pinned_hash_is_checked(store: Path, write_manifest: Callable[..., Path]) -> None:
    good = file_sha256(store / "Llama-3.2-3B-Instruct-Q4_K_M.gguf")
    ok = make(write_manifest(models=[{"name": "Llama-3.2-3B-Instruct-Q4_K_M.gguf", "sha256": good}]), store)
    assert ok.converges
    bad = make(write_manifest(models=[{"name": "Llama-3.2-3B-Instruct-Q4_K_M.gguf", "sha256": "0" * 64}]), store)
    assert not bad.converges


def test_restore_refuses_a_corrupted_backup_copy(store: Path, write_manifest: Callable[..., Path]) -> None:
    backup_root = default_backup_root(str(store))
    result = apply(write_manifest())
    run = find_run(backup_root, str(result.run_id))
    (run.path / "phi-2.Q4_K_M.gguf").write_bytes(b"bit rot")  # a write changes its identity (mtime, size)
    with pytest.raises(BackupError, match="is not the file its index recorded"):
        restore(write_manifest(), run.run_id, [])
    assert not (store / "mistral-7b-v0.1.Q2_K.gguf").exists()  # nothing restored, not even the good ones
