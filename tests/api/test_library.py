"""The library API and the shape of the code: what a second front end (the Ansible module) relies on."""

from __future__ import annotations

import ast
import errno
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

import reconciler
from reconciler import (
    Action,
    BackupError,
    ExitCode,
    GuardError,
    LockedError,
    ReconcilerError,
    RestoreConflictError,
    StalePlanError,
    StoreNotFound,
    UsageError,
    open_session,
)
from reconciler.api.apply import apply_plan
from reconciler.base import errors as errors_module
from reconciler.base.layout import INDEX_NAME, default_backup_root, journal_path
from reconciler.cli.app import app
from reconciler.decide.planfile import checksum, plan_doc
from reconciler.disk.retention import Retention
from reconciler.read.manifest import load_schema

from ..conftest import ROOT, run_cli, tree_digest
from ..decide.test_planfile import assert_plan_schema

PACKAGE = ROOT / "reconciler"
FRONT_ENDS = ("cli", "render")  # the CLI layer's folders: the only modules that may name flags


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level >= 1:
            found.update(node.module.split(".") if node.module else [a.name for a in node.names])
    return found


def test_nothing_below_the_cli_imports_render_and_no_module_is_over_400_lines() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent.name not in FRONT_ENDS:
            assert not {"render", "cli", "cli_support"} & _imports(path), f"{path.name} imports the CLI layer"
        assert len(path.read_text().splitlines()) <= 400, f"{path.name} is over 400 lines"


def test_the_core_never_names_a_command_line_flag() -> None:
    """Messages from the core describe the problem; only the CLI says which flag gets past it."""
    flag = re.compile(r"(?<![\w-])--[a-z][a-z-]+")
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent.name in FRONT_ENDS:
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                assert not flag.search(node.value), f"{path.name}:{node.lineno}: {node.value!r}"


def test_every_error_has_an_exit_code_and_a_reason() -> None:
    classes = [c for c in vars(errors_module).values() if isinstance(c, type) and issubclass(c, ReconcilerError)]
    assert len(classes) >= 15
    for cls in classes:
        assert isinstance(cls.exit_code, ExitCode) and re.fullmatch(r"[a-z_]+", cls.reason), cls
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 5, 6, 130]


def test_public_api_is_exported() -> None:
    for name in reconciler.__all__:
        assert hasattr(reconciler, name), name
    assert {"open_session", "Session", "Plan", "ExitCode", "load_plan", "ReconcilerError"} <= set(reconciler.__all__)


def test_actions_carry_their_properties_and_match_the_schema() -> None:
    schema = load_schema("plan.schema.json")
    enum = schema["$defs"]["plan"]["properties"]["changes"]["items"]["properties"]["actions"]["items"]["enum"]
    assert sorted(enum) == sorted(a.value for a in Action)
    summary = schema["$defs"]["plan"]["properties"]["summary"]["properties"]
    assert {a.value for a in Action} <= set(summary)
    assert len({a.symbol for a in Action}) == len(Action)
    assert [a for a in Action if a.is_change] == [Action.DELETE, Action.INSTALL, Action.REPLACE]
    assert {a for a in Action if a.blocks} == {Action.MISSING, Action.MISMATCH}


def test_a_pin_mismatch_is_its_own_action_in_every_format(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    manifest = write_manifest(models=[{"name": "Llama-3.2-3B-Instruct-Q4_K_M.gguf", "sha256": "0" * 64}])
    before = tree_digest(store)
    text = runner.invoke(app, ["plan", "--detailed-exitcode", str(manifest)])
    assert text.exit_code == ExitCode.CANNOT_CONVERGE
    assert "  * Llama-3.2-3B-Instruct-Q4_K_M.gguf" in text.stdout and "mismatch: declared, but sha256" in text.stdout
    assert ", 1 differ from their pin" in text.stdout
    doc = json.loads(runner.invoke(app, ["plan", "--detailed-exitcode", str(manifest), "--json"]).stdout)
    assert_plan_schema(doc)
    assert doc["summary"]["mismatch"] == 1 and doc["summary"]["missing"] == 0 and not doc["summary"]["converges"]
    md = runner.invoke(app, ["plan", "--detailed-exitcode", str(manifest), "--format", "markdown"]).stdout
    assert "1 differ from their pin" in md.splitlines()[0] and "| `*` | `Llama-3.2-3B-Instruct-Q4_K_M.gguf` |" in md
    check = runner.invoke(app, ["check", str(manifest)])
    assert check.exit_code == ExitCode.CHANGES and "1 differ from their pin (Llama-3.2-3B-Instruct-Q4_K_M.gguf)" in check.stdout
    applied = runner.invoke(app, ["apply", str(manifest), "--yes"])
    assert applied.exit_code == ExitCode.CANNOT_CONVERGE and tree_digest(store) == before
    saved = tmp_path / "p.json"
    runner.invoke(app, ["plan", "--detailed-exitcode", str(manifest), "--out", str(saved)])
    assert "  * Llama" in runner.invoke(app, ["show", str(saved)]).stdout


def test_session_plan_apply_restore(store: Path, write_manifest: Callable[..., Path]) -> None:
    before = tree_digest(store)
    with open_session(write_manifest()) as session:
        plan = session.plan()
        assert plan.detailed_exit_code == ExitCode.CHANGES and plan.summary.count(Action.DELETE) == len(plan.to_delete) == 4
        result = session.apply(plan)
        assert result.run_id and {m.name for m in result.moved} == {c.name for c in plan.to_delete}
        assert session.plan().detailed_exit_code == ExitCode.OK
        assert [r.run_id for r in session.backups()] == [result.run_id]
        dry = session.plan_restore(result.run_id[:10])
        assert {m.name for m in dry.restores} == {m.name for m in result.moved} and not dry.displaces
        assert tree_digest(store) != before  # planning a restore changed nothing
        session.restore(dry)
    assert tree_digest(store) == before


def test_session_apply_refuses_a_plan_the_store_no_longer_gives(store: Path, write_manifest: Callable[..., Path]) -> None:
    with open_session(write_manifest()) as session:
        plan = session.plan()
        (store / "appeared.gguf").write_bytes(b"new")
        before = tree_digest(store)
        with pytest.raises(StalePlanError) as caught:
            session.apply(plan)
        assert caught.value.differences == ("added: appeared.gguf",)
    assert tree_digest(store) == before


def test_mutations_need_the_held_lock_of_their_store(store: Path, write_manifest: Callable[..., Path], tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    with open_session(write_manifest()) as session:
        plan = session.plan()
        with (
            open_session(store=other, backend="directory") as elsewhere,
            elsewhere.lock() as held,
            pytest.raises(UsageError, match=r"the store lock held is for .*/other, not for .*/models"),
        ):
            apply_plan(plan, default_backup_root(plan.scan.root), Retention(5), held.lock)
        with session.lock() as held:
            pass
        with pytest.raises(UsageError, match="was released when its block ended"):
            apply_plan(plan, default_backup_root(plan.scan.root), Retention(5), held.lock)  # released when its block ended
        with (
            session.lock() as held,
            pytest.raises(LockedError) as locked,
            open_session(store=store, backend="directory") as rival,
            rival.lock(),
        ):
            pass
        assert locked.value.reason == "locked" and locked.value.holder["command"] == "apply"
    assert (store / "phi-2.Q4_K_M.gguf").exists()


def test_errors_carry_data_and_the_cli_adds_the_hints(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    with pytest.raises(GuardError) as guard, open_session(write_manifest(models=[], whitelist=[])) as session:
        session.apply(session.plan())
    assert [v.guard.value for v in guard.value.violations] == ["empty_manifest"]
    assert "--" not in str(guard.value)
    result = runner.invoke(app, ["apply", str(write_manifest(models=[], whitelist=[])), "--yes"])
    assert "pass --allow-empty if that is meant" in result.stderr and result.exit_code == ExitCode.GUARD
    with pytest.raises(StoreNotFound) as missing, open_session(store=store / "nope", backend="directory") as session:
        session.scan()
    assert missing.value.path == str(store / "nope") and "--" not in str(missing.value)
    with pytest.raises(UsageError, match="without a manifest"), open_session(store=store, backend="directory") as session:
        session.plan()


def test_restore_dry_run_prints_the_plan_and_changes_nothing(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = str(write_manifest())
    assert runner.invoke(app, ["apply", manifest, "--yes"]).exit_code == ExitCode.OK
    (store / "phi-2.Q4_K_M.gguf").write_bytes(b"in the way")
    run_id = json.loads(runner.invoke(app, ["backups", "-m", manifest, "--json"]).stdout)[0]["run_id"]
    before = tree_digest(store)
    dry = runner.invoke(app, ["restore", run_id, "-m", manifest, "--dry-run", "--force"])
    assert dry.exit_code == ExitCode.OK, dry.output
    assert "  move phi-2.Q4_K_M.gguf out of the way, to a new backup run (…-displaced)" in dry.stdout
    assert "  + restore mistral-7b-v0.1.Q2_K.gguf (2.5 MiB)" in dry.stdout
    assert dry.stdout.rstrip().endswith("Dry run: 4 to restore, 0 already present; nothing was changed.")
    assert tree_digest(store) == before
    refused = runner.invoke(app, ["restore", run_id, "-m", manifest, "--dry-run"])
    assert refused.exit_code == ExitCode.ERROR and "(--force moves it to a new backup run first)" in refused.stderr
    with pytest.raises(RestoreConflictError) as conflict, open_session(manifest) as session:
        session.plan_restore(run_id)
    assert conflict.value.conflicts == ("phi-2.Q4_K_M.gguf",)


def test_plan_documents_round_trip(store: Path, write_manifest: Callable[..., Path], tmp_path: Path) -> None:
    with open_session(write_manifest()) as session:
        plan = session.plan()
    path = tmp_path / "p.json"
    reconciler.save_plan(path, plan)
    saved = reconciler.load_plan(path)
    assert [(c.name, c.action, c.reason) for c in saved.plan.changes] == [(c.name, c.action, c.reason) for c in plan.changes]
    assert saved.plan.summary == plan.summary and saved.plan.violations == plan.violations
    assert plan_doc(saved.plan) == plan_doc(plan) | {"changes": plan_doc(saved.plan)["changes"]}


def test_a_restore_plan_is_checked_again_under_the_lock(store: Path, write_manifest: Callable[..., Path]) -> None:
    """Between planning and restoring, a file lands in the way (a conflict) or a backup copy changes
    (stale): the restore is refused and nothing moves."""
    with open_session(write_manifest()) as session:
        result = session.apply(session.plan())
        assert result.run_id and result.run_dir
        planned = session.plan_restore(result.run_id)
        (store / "latest.gguf").write_bytes(b"appeared meanwhile")
        before = tree_digest(store)
        with pytest.raises(RestoreConflictError):
            session.restore(planned)
        (store / "latest.gguf").unlink()
        planned = session.plan_restore(result.run_id)
        os.utime(result.run_dir / "phi-2.Q4_K_M.gguf", ns=(1, 1))  # the backup copy is no longer the one recorded
        with pytest.raises(BackupError, match="is not the file its index recorded"):
            session.restore(planned)
        assert tree_digest(store) == {k: v for k, v in before.items() if k != "latest.gguf"}
        planned = session.plan_restore(result.run_id, ["mistral-7b-v0.1.Q2_K.gguf"])
        (store / "mistral-7b-v0.1.Q2_K.gguf").write_bytes((result.run_dir / "mistral-7b-v0.1.Q2_K.gguf").read_bytes())  # put back by hand
        with pytest.raises(StalePlanError) as stale:
            session.restore(planned)
        assert stale.value.subject == "restore plan" and str(stale.value).startswith("restore plan is stale")
        assert (result.run_dir / "mistral-7b-v0.1.Q2_K.gguf").exists()


def test_an_unfinished_run_is_not_restored(store: Path, write_manifest: Callable[..., Path]) -> None:
    with open_session(write_manifest()) as session:
        result = session.apply(session.plan())
        assert result.run_dir is not None
        index = result.run_dir / INDEX_NAME
        index.write_text(index.read_text().replace('"status": "complete"', '"status": "in-progress"'))
        with pytest.raises(reconciler.BackupError, match="is unfinished") as unfinished:
            session.plan_restore(str(result.run_id))
        assert unfinished.value.run_id == result.run_id


def test_a_plan_is_applied_only_with_its_own_manifest(store: Path, write_manifest: Callable[..., Path]) -> None:
    with open_session(write_manifest()) as session:
        plan = session.plan()
    with (
        pytest.raises(UsageError, match="the plan was made from manifest"),
        open_session(write_manifest("other.yaml", prune=False)) as other,
    ):
        other.apply(plan)
    with open_session(store=store, backend="directory") as bare:  # no manifest: the plan's own is used
        assert {m.name for m in bare.apply(plan).moved} == {c.name for c in plan.to_delete}


def test_paths_may_be_strings_and_fleet_limits_apply(store: Path, write_manifest: Callable[..., Path], tmp_path: Path) -> None:
    manifest = str(write_manifest())
    with open_session(manifest) as session:
        reconciler.save_plan(str(tmp_path / "p.json"), session.plan())
        reconciler.save_snapshot(str(tmp_path / "s.json"), session.snapshot(host="h1"))
    assert reconciler.load_plan(str(tmp_path / "p.json")).plan.to_delete
    fleet = reconciler.plan_fleet(manifest, [str(tmp_path / "s.json")], max_delete=1)
    assert fleet.hosts[0].scan.host == "h1" and [v.guard.value for v in fleet.hosts[0].violations] == ["max_delete"]
    doc = reconciler.fleet_doc(fleet)
    assert_plan_schema(doc)
    assert doc["hosts"][0]["guards"]["violation_details"] == [{"guard": "max_delete", "message": "4 files would move, over max_delete 1"}]


def test_cli_refuses_what_it_could_not_read_back(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    manifest = str(write_manifest())
    out = runner.invoke(app, ["plan", "--detailed-exitcode", manifest, "--out", str(tmp_path / "plan.yaml")])
    assert out.exit_code == ExitCode.ERROR and "must end in .json" in out.stderr and not (tmp_path / "plan.yaml").exists()
    both = runner.invoke(app, ["plan", "--detailed-exitcode", manifest, "--json", "--format", "markdown"])
    assert both.exit_code == ExitCode.ERROR and "ask for different formats" in both.stderr
    a_file = runner.invoke(app, ["plan", "--detailed-exitcode", manifest, "--store", manifest])
    assert a_file.exit_code == ExitCode.ERROR and "is not a folder" in a_file.stderr


def test_only_a_pin_mismatch_is_named_as_such(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = write_manifest(models=[{"name": "Llama-3.2-3B-Instruct-Q4_K_M.gguf", "sha256": "0" * 64}])
    text = runner.invoke(app, ["plan", "--detailed-exitcode", str(manifest)]).stdout
    assert "Cannot converge: declared models differ from their pin; apply will refuse" in text
    both = write_manifest("both.yaml", models=[{"name": "Llama-3.2-3B-Instruct-Q4_K_M.gguf", "sha256": "0" * 64}, {"name": "gone.gguf"}])
    assert (
        "Cannot converge: declared models differ from their pin or are missing;"
        in runner.invoke(app, ["plan", "--detailed-exitcode", str(both)]).stdout
    )


def test_a_plan_read_from_a_document_is_never_applied_as_is(store: Path, write_manifest: Callable[..., Path], tmp_path: Path) -> None:
    """Its facts carry no device numbers: applied as is, every move would be skipped as "changed"."""
    manifest = write_manifest(backup={"keep": 1})
    with open_session(manifest) as session:
        first = session.apply(session.plan())
        (store / "stray.gguf").write_bytes(b"x" * 10)
        reconciler.save_plan(tmp_path / "p.json", session.plan())
    saved = reconciler.load_plan(tmp_path / "p.json")
    with open_session(saved=saved) as session, session.lock() as held:
        with pytest.raises(UsageError, match="read from a document"):
            session.apply(saved.plan, held)
        result = session.apply(session.plan(), held)  # the verified fresh plan is what gets applied
    assert [m.name for m in result.moved] == ["stray.gguf"]
    assert first.run_dir is not None and not first.run_dir.exists()  # keep: 1 pruned it only after a real move


def test_a_run_that_moves_nothing_prunes_nothing(store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = write_manifest(backup={"keep": 1})
    with open_session(manifest) as session:
        first = session.apply(session.plan())
        (store / "stray.gguf").write_bytes(b"x")
        plan = session.plan()
        (store / "stray.gguf").write_bytes(b"changed")  # the only move will be skipped
        with session.lock() as held:
            result = session.apply(plan, held)
    assert result.skipped and not result.moved and not result.pruned_runs
    assert first.run_dir is not None and first.run_dir.exists()


def test_apply_planfile_recovers_an_interrupted_run_first(store: Path, write_manifest: Callable[..., Path], tmp_path: Path) -> None:
    manifest = str(write_manifest())
    plan_file = tmp_path / "p.json"
    assert run_cli("plan", "--detailed-exitcode", manifest, "--out", str(plan_file)).returncode == ExitCode.CHANGES
    killed = run_cli("apply", str(plan_file), "--yes", env={"OCR_RECONCILE_CRASH_AT": "4"})
    assert killed.returncode == -9
    again = run_cli("apply", str(plan_file), "--yes")
    assert "Recovered interrupted apply run" in again.stderr, again.stderr
    assert again.returncode == ExitCode.STALE_PLAN and not journal_path(str(store)).exists()


def test_a_failing_lock_record_never_keeps_the_lock(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while writing the holder record: the lock works, and is released at the end of the block."""

    def full(*args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with open_session(store=store, backend="directory") as session:
        with monkeypatch.context() as patched:
            patched.setattr(os, "pwrite", full)
            with session.lock() as held:
                assert held.lock.held
        with session.lock() as again:  # released: the same process can take it again
            assert again.lock.held


def test_restore_names_asked_twice_are_restored_once(store: Path, write_manifest: Callable[..., Path]) -> None:
    with open_session(write_manifest()) as session:
        result = session.apply(session.plan())
        assert result.run_id
        planned = session.plan_restore(result.run_id, ["phi-2.Q4_K_M.gguf", "phi-2.Q4_K_M.gguf"])
        assert [m.name for m in planned.restores] == ["phi-2.Q4_K_M.gguf"]
        assert session.restore(planned).restored == ("phi-2.Q4_K_M.gguf",)


def test_a_session_without_a_manifest_takes_the_plans_backend(store: Path, write_manifest: Callable[..., Path]) -> None:
    with open_session(write_manifest()) as session:
        plan = session.plan()
    with open_session(store=store) as bare:  # backend not given: the plan's manifest says directory
        assert bare.apply(plan).run_id


def test_a_dry_run_restore_warns_of_an_interrupted_run(store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = str(write_manifest())
    assert run_cli("apply", manifest, "--yes").returncode == 0
    run_id = json.loads(run_cli("backups", "-m", manifest, "--json").stdout)[0]["run_id"]
    assert run_cli("restore", run_id, "-m", manifest, env={"OCR_RECONCILE_CRASH_AT": "2"}).returncode == -9
    dry = run_cli("restore", run_id, "-m", manifest, "--dry-run")
    assert "warning: an interrupted restore" in dry.stderr, dry.stderr


def test_a_saved_plan_without_created_is_still_read(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    """`created` is optional in the schema, so reading must not need it."""
    path = tmp_path / "p.json"
    assert runner.invoke(app, ["plan", "--detailed-exitcode", str(write_manifest()), "--out", str(path)]).exit_code == ExitCode.CHANGES
    doc = json.loads(path.read_text())
    del doc["created"]
    doc["checksum"] = checksum(doc)
    path.write_text(json.dumps(doc))
    shown = runner.invoke(app, ["show", str(path)])
    assert shown.exit_code == ExitCode.OK and "Plan: 4 to move to backup" in shown.stdout, shown.output
