"""CLI behaviour through typer.testing.CliRunner: output and pinned exit codes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from reconciler.base.errors import ExitCode
from reconciler.cli.app import app

from ..conftest import EXAMPLE_MANIFEST, tree_digest
from ..decide.test_planfile import assert_plan_schema


def test_exit_codes_are_pinned() -> None:
    assert (ExitCode.OK, ExitCode.ERROR, ExitCode.CHANGES, ExitCode.CANNOT_CONVERGE) == (0, 1, 2, 3)


def test_validate_ok_and_bad(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: ocr-reconcile/v1\nkind: ModelState\nmetadata: {name: t}\nmodels:\n  - name: ../x\n  - name: /y\n")
    result = runner.invoke(app, ["validate", str(EXAMPLE_MANIFEST), str(bad)])
    assert result.exit_code == ExitCode.ERROR
    assert f"ok: {EXAMPLE_MANIFEST}" in result.stdout
    assert f"error: {bad}:5:11: models[0].name: \"../x\" must not contain '..'" in result.stderr
    assert f"error: {bad}:6:11: models[1].name:" in result.stderr
    assert "Traceback" not in result.output
    assert runner.invoke(app, ["validate", str(EXAMPLE_MANIFEST)]).exit_code == ExitCode.OK


def test_plan_text_and_exit_code_2(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    before = tree_digest(store)
    result = runner.invoke(app, ["plan", "--detailed-exitcode", str(write_manifest())])
    assert result.exit_code == ExitCode.CHANGES, result.output
    assert "  - phi-2.Q4_K_M.gguf" in result.stdout
    assert "  = qwen/tokenizer.json" not in result.stdout  # unchanged: counted, not listed (terraform plan)
    assert "  (4 unchanged files not listed; --show-unchanged lists them)" in result.stdout
    assert "  = qwen/tokenizer.json" in runner.invoke(app, ["plan", str(write_manifest()), "--show-unchanged"]).stdout
    assert "backend: directory" in result.stdout
    assert "Plan: 4 to move to backup (5.0 MiB), 4 kept, 0 missing." in result.stdout
    assert tree_digest(store) == before  # plan changes nothing


def test_plan_json(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    result = runner.invoke(app, ["plan", "--detailed-exitcode", str(write_manifest()), "--json"])
    assert result.exit_code == ExitCode.CHANGES
    doc = json.loads(result.stdout)
    assert_plan_schema(doc)
    assert doc["format_version"] == "1.3"
    assert doc["manifest"]["models"] == 2
    assert doc["summary"] == {
        "delete": 4,
        "keep": 4,
        "ignore": 0,
        "missing": 0,
        "mismatch": 0,
        "install": 0,
        "replace": 0,
        "bytes_freed": 5 * 1024 * 1024 + 17,
        "bytes_to_download": 0,
        "has_changes": True,
        "converges": True,
    }
    by_name = {c["name"]: c for c in doc["changes"]}
    assert by_name["latest.gguf"]["actions"] == ["delete"]
    assert by_name["latest.gguf"]["before"]["kind"] == "symlink"
    assert by_name["Llama-3.2-3B-Instruct-Q4_K_M.gguf"]["actions"] == ["keep"]


def test_plan_missing_exits_3(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    result = runner.invoke(app, ["plan", "--detailed-exitcode", str(write_manifest(models=[{"name": "absent.gguf"}]))])
    assert result.exit_code == ExitCode.CANNOT_CONVERGE
    assert "  ! absent.gguf" in result.stdout


def test_plan_no_changes_exits_0(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    result = runner.invoke(app, ["plan", "--detailed-exitcode", str(write_manifest(prune=False))])
    assert result.exit_code == ExitCode.OK
    assert "No changes." in result.stdout and "4 left in place unmanaged" in result.stdout


def test_plan_errors_exit_1(runner: CliRunner, tmp_path: Path, write_manifest: Callable[..., Path]) -> None:
    result = runner.invoke(app, ["plan", "--detailed-exitcode", str(write_manifest())])  # no store built
    assert result.exit_code == ExitCode.ERROR
    assert result.stderr.strip() == f"error: store folder {tmp_path / 'models'} does not exist (create it, or set store.path / --store)"
    assert runner.invoke(app, ["plan", "--detailed-exitcode", str(tmp_path / "none.yaml")]).exit_code == ExitCode.ERROR
    assert runner.invoke(app, ["plan"]).exit_code == ExitCode.ERROR  # usage error is 1, never 2
    assert runner.invoke(app, ["plan", "--detailed-exitcode", "--bogus"]).exit_code == ExitCode.ERROR


def test_apply_refuses_without_yes_when_not_interactive(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    before = tree_digest(store)
    result = runner.invoke(app, ["apply", str(write_manifest())])
    assert result.exit_code == ExitCode.ERROR
    assert "pass --yes" in result.stderr
    assert tree_digest(store) == before


def test_apply_then_apply_again_is_a_no_op(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = str(write_manifest())
    first = runner.invoke(app, ["apply", manifest, "--yes"])
    assert first.exit_code == ExitCode.OK, first.output
    assert (
        "Apply complete: 4 moved to backup (5.0 MiB), 0 skipped; 0 B freed on the store's filesystem (the backup is on the same filesystem"
        in first.stdout
    )
    second = runner.invoke(app, ["apply", manifest, "--yes"])
    assert second.exit_code == ExitCode.OK
    assert "No changes." in second.stdout and "moved" not in second.stdout


def test_apply_missing_exits_3_and_moves_nothing(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    before = tree_digest(store)
    result = runner.invoke(app, ["apply", str(write_manifest(models=[{"name": "absent.gguf"}])), "--yes"])
    assert result.exit_code == ExitCode.CANNOT_CONVERGE
    assert tree_digest(store) == before


def test_list_and_backups_and_restore(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = str(write_manifest())
    listed = json.loads(runner.invoke(app, ["list", manifest, "--json"]).stdout)
    status = {f["name"]: f["status"] for f in listed["files"]}
    assert status["custom_invoices.bin"] == "whitelisted"
    assert status["Llama-3.2-3B-Instruct-Q4_K_M.gguf"] == "declared"
    assert status["phi-2.Q4_K_M.gguf"] == "unmanaged"
    assert {f["engine_visible"] for f in listed["files"]} == {None}  # no engine ran
    text = runner.invoke(app, ["list", manifest]).stdout
    assert "latest.gguf@" in text and "8 files" in text

    runner.invoke(app, ["apply", manifest, "--yes"])
    runs = json.loads(runner.invoke(app, ["backups", "-m", manifest, "--json"]).stdout)
    assert len(runs) == 1 and runs[0]["files"] == 4 and runs[0]["size"] == 5 * 1024 * 1024 + 17
    restored = runner.invoke(app, ["restore", runs[0]["run_id"][:10], "phi-2.Q4_K_M.gguf", "-m", manifest])
    assert restored.exit_code == ExitCode.OK, restored.output
    assert (store / "phi-2.Q4_K_M.gguf").exists()
    unknown = runner.invoke(app, ["restore", "nope", "-m", manifest])
    assert unknown.exit_code == ExitCode.ERROR and "no backup run 'nope'" in unknown.stderr


def test_backup_dir_inside_store_is_an_error(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    before = tree_digest(store)
    result = runner.invoke(app, ["apply", str(write_manifest(backup={"dir": str(store / "bk")})), "--yes"])
    assert result.exit_code == ExitCode.ERROR and "inside the store" in result.stderr
    assert tree_digest(store) == before


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("ocr-reconcile ")


def test_store_path_that_is_a_symlink_is_read_through_but_never_changed_through(
    runner: CliRunner, store: Path, tmp_path: Path, write_manifest: Callable[..., Path]
) -> None:
    """Read-only commands resolve a linked store once and say so. Commands that move files refuse it:
    another user who can write the link's folder could point it anywhere between two runs."""
    link = tmp_path / "current-models"
    link.symlink_to(store)
    manifest = str(write_manifest(store={"backend": "directory", "path": str(link)}))
    planned = runner.invoke(app, ["plan", "--detailed-exitcode", manifest])
    assert planned.exit_code == ExitCode.CHANGES
    assert f"Warning: store folder {link} is a symlink (or under one); using its target {store}" in planned.stdout
    assert f"Store: {store} (backend: directory)" in planned.stdout
    before = tree_digest(store)
    applied = runner.invoke(app, ["apply", manifest, "--yes"])
    assert applied.exit_code == ExitCode.ERROR, applied.output
    assert f"store path {link} is a symbolic link (to {store}); commands that move files act only on a real folder path" in applied.stderr
    assert tree_digest(store) == before and not (tmp_path / "models.ocr-reconcile-backups").exists()
    applied = runner.invoke(app, ["apply", manifest, "--yes", "--store", str(store)])
    assert applied.exit_code == ExitCode.OK, applied.output
    assert (tmp_path / "models.ocr-reconcile.lock").exists() and (tmp_path / "models.ocr-reconcile-backups").is_dir()
    assert link.is_symlink() and os.readlink(link) == str(store)


def test_filesystem_root_is_refused_as_a_store(runner: CliRunner, tmp_path: Path, write_manifest: Callable[..., Path]) -> None:
    """Its lock, journal and backups would have no folder 'beside' it (they landed in the cwd)."""
    result = runner.invoke(app, ["apply", str(write_manifest(store={"backend": "directory", "path": "/"})), "--yes"])
    assert result.exit_code == ExitCode.ERROR and "is the filesystem root" in result.stderr
    assert not Path(".ocr-reconcile.lock").exists()
