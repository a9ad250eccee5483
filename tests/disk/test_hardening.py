"""Hostile and unlucky filesystems (issue 8): control files never followed, special files never read."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconciler import open_session
from reconciler.base.errors import ExitCode
from reconciler.base.layout import INDEX_NAME, lock_path
from reconciler.cli.app import app
from reconciler.decide.planfile import checksum

from ..conftest import LLAMA, tree_digest


def test_a_symlink_planted_at_the_lock_path_is_never_followed(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    """A link from ``<store>.ocr-reconcile.lock`` to a declared model: refused, and the model is untouched."""
    os.symlink(store / LLAMA, lock_path(str(store)))
    before = tree_digest(store)
    result = runner.invoke(app, ["apply", str(write_manifest()), "--yes"])
    assert result.exit_code == ExitCode.ERROR, result.output
    assert "it is a symbolic link, which is never followed; nothing was changed" in result.stderr
    assert tree_digest(store) == before


def test_a_fifo_at_the_lock_path_is_refused_without_hanging(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    os.mkfifo(lock_path(str(store)))
    before = tree_digest(store)
    result = runner.invoke(app, ["apply", str(write_manifest()), "--yes"])
    assert result.exit_code == ExitCode.ERROR and "cannot open lock file" in result.stderr, result.output
    assert tree_digest(store) == before


def test_a_pinned_model_that_links_to_a_fifo_or_a_device_is_never_read(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    """Hashing opens only regular files: a pin on a link to a FIFO or /dev/zero is a mismatch, not a hang."""
    os.mkfifo(tmp_path / "fifo")
    (store / "fifo.gguf").symlink_to(tmp_path / "fifo")
    (store / "zero.gguf").symlink_to("/dev/zero")
    pins = [{"name": n, "sha256": "0" * 64} for n in ("fifo.gguf", "zero.gguf")]
    result = runner.invoke(app, ["plan", "--detailed-exitcode", str(write_manifest(models=pins))])
    assert result.exit_code == ExitCode.CANNOT_CONVERGE, result.output
    assert result.stdout.count("mismatch: declared, but sha256 unknown") == 2
    snap = runner.invoke(app, ["snapshot", "--store", str(store), "--backend", "directory", "--hash"])
    assert snap.exit_code == ExitCode.OK, snap.output


def test_a_folder_in_the_way_of_a_restore_is_never_displaced(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    """Even with --force: a folder where a file would go back is a conflict, and nothing moves."""
    manifest = str(write_manifest())
    assert runner.invoke(app, ["apply", manifest, "--yes"]).exit_code == ExitCode.OK
    (store / "phi-2.Q4_K_M.gguf").mkdir()
    (store / "phi-2.Q4_K_M.gguf" / "precious.bin").write_bytes(b"keep me here")
    run_id = json.loads(runner.invoke(app, ["backups", "-m", manifest, "--json"]).stdout)[0]["run_id"]
    before = tree_digest(store)
    result = runner.invoke(app, ["restore", run_id, "-m", manifest, "--force"])
    assert result.exit_code == ExitCode.ERROR, result.output
    assert "a folder or special file, which is never moved, is in the store at phi-2.Q4_K_M.gguf" in result.stderr
    assert "--force" not in result.stderr
    assert tree_digest(store) == before


def test_bind_mounts_of_one_filesystem_fall_back_to_the_verified_copy(
    store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    """Same device number, yet rename fails with EXDEV: apply copies instead, and converges."""
    outside, bound = tmp_path / "outside", tmp_path / "bound"
    outside.mkdir()
    bound.mkdir()
    if subprocess.run(["mount", "--bind", str(outside), str(bound)], capture_output=True).returncode != 0:
        pytest.skip("bind mounts are not permitted here (needs root)")
    try:
        manifest = write_manifest(backup={"dir": str(bound / "backups")})
        with open_session(manifest) as session:
            result = session.apply(session.plan())
            assert {m.method for m in result.moved} == {"copy"} and len(result.moved) == 4
            assert not session.plan().has_changes
        assert len(list((outside / "backups").iterdir())) == 1
    finally:
        subprocess.run(["umount", "-l", str(bound)], capture_output=True)


def test_restore_refuses_an_index_naming_a_path_outside_the_store(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    """A backup index is data anyone who can write the backup folder can edit: `../x` must not escape."""
    manifest = str(write_manifest())
    assert runner.invoke(app, ["apply", manifest, "--yes"]).exit_code == ExitCode.OK
    [run] = json.loads(runner.invoke(app, ["backups", "-m", manifest, "--json"]).stdout)
    run_dir = Path(store.parent / f"{store.name}.ocr-reconcile-backups" / run["run_id"])
    (run_dir.parent / "escape.txt").write_bytes(b"planted")
    index = json.loads((run_dir / INDEX_NAME).read_text())
    planted = hashlib.sha256(b"planted").hexdigest()
    index["entries"].append(
        {"name": "../escape.txt", "kind": "file", "size": 7, "sha256": planted, "link_target": None, "method": "rename"}
    )
    (run_dir / INDEX_NAME).write_text(json.dumps(index))
    before, outside = tree_digest(store), tree_digest(tmp_path)
    result = runner.invoke(app, ["restore", run["run_id"], "-m", manifest])
    assert result.exit_code == ExitCode.ERROR, result.output
    assert "names '../escape.txt', which is not a valid store-relative name (must not contain '..'); nothing was restored" in result.stderr
    assert tree_digest(store) == before and tree_digest(tmp_path) == outside and not (tmp_path / "escape.txt").exists()


def test_a_saved_plan_cannot_lift_the_manifests_guards(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    """Guards come from the current manifest and the command line, never from the plan file: a hand-edited
    plan with a recomputed checksum that drops max_delete is still refused, and --max-delete applies."""
    manifest = str(write_manifest(limits={"max_delete": 3}))
    plan_file = tmp_path / "p.json"
    assert runner.invoke(app, ["plan", "--detailed-exitcode", manifest, "--out", str(plan_file)]).exit_code == ExitCode.CHANGES
    doc = json.loads(plan_file.read_text())
    doc["guards"].update({"max_delete": None, "violations": [], "violation_details": []})
    doc["checksum"] = checksum(doc)
    plan_file.write_text(json.dumps(doc))
    before = tree_digest(store)
    result = runner.invoke(app, ["apply", str(plan_file), "--yes"])
    assert result.exit_code == ExitCode.GUARD and "4 files would move, over max_delete 3" in result.stderr, result.output
    assert tree_digest(store) == before
    assert runner.invoke(app, ["apply", str(plan_file), "--yes", "--max-delete", "2"]).exit_code == ExitCode.GUARD


def test_a_nested_stores_control_files_are_never_moved(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    """A store inside this one keeps its lock, journal and backups here: the outer apply leaves them."""
    inner = store / "inner"
    inner.mkdir()
    (store / "inner.ocr-reconcile.lock").write_text("{}")
    (store / "inner.ocr-reconcile-journal").write_text('{"type": "begin"}\n')
    (store / "inner.ocr-reconcile-backups").mkdir()
    (store / "inner.ocr-reconcile-backups" / "stray.bin").write_bytes(b"backup")
    (store / ".ocr-reconcile-tmp-0123abcd-0").write_bytes(b"partial")  # an inner run's temporary copy
    controls = {
        "inner.ocr-reconcile.lock",
        "inner.ocr-reconcile-journal",
        "inner.ocr-reconcile-backups/stray.bin",
        ".ocr-reconcile-tmp-0123abcd-0",
    }
    doc = json.loads(runner.invoke(app, ["plan", "--detailed-exitcode", str(write_manifest()), "--json"]).stdout)
    assert {c["name"]: c["actions"] for c in doc["changes"] if c["name"] in controls} == {n: ["ignore"] for n in controls}
    assert runner.invoke(app, ["apply", str(write_manifest()), "--yes"]).exit_code == ExitCode.OK
    assert all((store / n).exists() for n in controls)
