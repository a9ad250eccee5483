"""Issue 9: the habits ops users bring from Terraform, Ansible and rsync, through the real CLI."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconciler.base.errors import ExitCode
from reconciler.base.layout import INDEX_NAME, default_backup_root
from reconciler.cli.app import app

from ..conftest import EXAMPLE_MANIFEST, run_cli, tree_digest
from ..decide.test_fleet import write_snapshots


def test_plan_exits_0_unless_asked_for_detailed_codes(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    """Terraform's convention: a healthy plan with pending changes is not a failure for `set -e`."""
    manifest = str(write_manifest())
    assert runner.invoke(app, ["plan", manifest]).exit_code == ExitCode.OK
    assert runner.invoke(app, ["plan", manifest, "--detailed-exitcode"]).exit_code == ExitCode.CHANGES
    missing = str(write_manifest("missing.yaml", models=[{"name": "absent.gguf"}]))
    assert runner.invoke(app, ["plan", missing]).exit_code == ExitCode.OK
    assert runner.invoke(app, ["plan", missing, "--detailed-exitcode"]).exit_code == ExitCode.CANNOT_CONVERGE
    assert runner.invoke(app, ["apply", manifest, "--yes"]).exit_code == ExitCode.OK
    assert runner.invoke(app, ["plan", manifest, "--detailed-exitcode"]).exit_code == ExitCode.OK
    assert runner.invoke(app, ["plan", str(Path(manifest).with_name("nope.yaml"))]).exit_code == ExitCode.ERROR


def test_a_saved_plan_is_applied_without_asking(store: Path, write_manifest: Callable[..., Path], tmp_path: Path) -> None:
    """The saved plan is what was reviewed: `apply plan.json` asks nothing (stdin is not even a terminal)."""
    manifest = str(write_manifest())
    plan_file = tmp_path / "plan.json"
    assert run_cli("plan", manifest, "--out", str(plan_file)).returncode == ExitCode.OK
    applied = run_cli("apply", str(plan_file))
    assert applied.returncode == ExitCode.OK, applied.stderr
    assert "Apply complete" in applied.stdout


def test_auto_approve_is_another_name_for_yes(store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = str(write_manifest())
    refused = run_cli("apply", manifest)
    assert refused.returncode == ExitCode.ERROR and "pass --yes" in refused.stderr
    assert run_cli("apply", manifest, "--auto-approve").returncode == ExitCode.OK


def test_repeated_state_options_accumulate_and_mix_files_folders_and_globs(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshots = write_snapshots(tmp_path / "snapshots", 6)
    monkeypatch.chdir(tmp_path)
    shutil.copy(EXAMPLE_MANIFEST, tmp_path / "manifest.yaml")
    (tmp_path / "more").mkdir()
    for path in snapshots[4:]:
        shutil.move(path, tmp_path / "more" / path.name)
    args = ["plan", "--state", "snapshots/worker-00.json", "manifest.yaml", "--state", "snapshots/worker-0[123].json", "--state", "more"]
    result = runner.invoke(app, [*args, "--format", "json"])
    assert result.exit_code == ExitCode.OK, result.output
    assert [h["host"] for h in json.loads(result.stdout)["hosts"]] == [f"worker-{i:02d}" for i in range(6)]
    text = runner.invoke(app, args).stdout
    assert text.rstrip().splitlines()[-1].startswith("Fleet: ") and "across" in text.rstrip().splitlines()[-1]
    unquoted = runner.invoke(app, ["plan", "manifest.yaml", "--state", "snapshots/worker-00.json", "snapshots/worker-01.json"])
    assert unquoted.exit_code == ExitCode.ERROR and "unexpected extra argument" in unquoted.stderr


@pytest.mark.parametrize("flag", [["--store", "/srv"], ["--backend", "directory"], ["--license", "l.lic"], ["--out", "p.json"]])
def test_state_refuses_the_options_of_a_live_store(runner: CliRunner, tmp_path: Path, flag: list[str]) -> None:
    [snap] = write_snapshots(tmp_path / "s", 1)
    result = runner.invoke(app, ["plan", str(EXAMPLE_MANIFEST), "--state", str(snap), *flag])
    assert result.exit_code == ExitCode.ERROR and f"{flag[0]} cannot be combined with it" in result.stderr, result.output


def test_two_snapshots_of_one_host_are_an_error_naming_both(runner: CliRunner, tmp_path: Path) -> None:
    [snap] = write_snapshots(tmp_path / "s", 1)
    twin = tmp_path / "twin.json"
    shutil.copy(snap, twin)
    before = tree_digest(tmp_path)
    result = runner.invoke(app, ["plan", str(EXAMPLE_MANIFEST), "--state", str(snap), "--state", str(twin)])
    assert result.exit_code == ExitCode.ERROR and str(snap) in result.stderr and str(twin) in result.stderr, result.output
    assert "both of host 'worker-00'" in result.stderr and tree_digest(tmp_path) == before


def test_quiet_prints_outcomes_only(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = str(write_manifest())
    planned = runner.invoke(app, ["--quiet", "plan", manifest])
    assert planned.stdout.splitlines() == ["Plan: 4 to move to backup (5.0 MiB), 4 kept, 0 missing."], planned.output
    applied = runner.invoke(app, ["-q", "apply", manifest, "--yes"])
    assert applied.exit_code == ExitCode.OK and "  moved " not in applied.stdout and "Apply complete" in applied.stdout


@pytest.mark.parametrize(
    ("args", "env", "painted"),
    [
        (["--color", "always"], {}, True),
        (["--color", "always"], {"NO_COLOR": "1"}, True),  # an explicit choice wins over NO_COLOR
        (["--color", "never"], {}, False),
        ([], {}, False),  # auto, and CliRunner is not a terminal
    ],
)
def test_color_option(store: Path, write_manifest: Callable[..., Path], args: list[str], env: dict[str, str], painted: bool) -> None:
    result = CliRunner(env=env).invoke(app, [*args, "plan", str(write_manifest())])
    assert ("\x1b[" in result.stdout) is painted, result.output
    assert CliRunner().invoke(app, ["--color", "sometimes", "plan", str(write_manifest())]).exit_code == ExitCode.ERROR


def test_environment_variables_set_per_host_options_and_show_in_help(
    store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    manifest = str(write_manifest(store={"backend": "directory", "path": str(tmp_path / "elsewhere")}))
    env = {"OCR_RECONCILE_STORE": str(store), "OCR_RECONCILE_BACKEND": "directory", "OCR_RECONCILE_BACKUP_DIR": str(tmp_path / "bk")}
    result = CliRunner(env=env).invoke(app, ["apply", manifest, "--yes"])
    assert result.exit_code == ExitCode.OK, result.output
    assert (tmp_path / "bk").is_dir()
    shown = CliRunner().invoke(app, ["apply", "--help"], terminal_width=200).stdout
    for name in ("OCR_RECONCILE_STORE", "OCR_RECONCILE_BACKEND", "OCR_RECONCILE_LICENSE"):
        assert name in shown, shown


def test_shell_completion_is_offered() -> None:
    shown = CliRunner().invoke(app, ["--help"], terminal_width=200).stdout
    assert "--install-completion" in shown and "--show-completion" in shown


def test_check_for_monitoring_in_json_and_prometheus(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = str(write_manifest(models=[{"name": "Llama-3.2-3B-Instruct-Q4_K_M.gguf"}, {"name": "absent.gguf"}]))
    as_json = runner.invoke(app, ["check", manifest, "--format", "json"])
    assert as_json.exit_code == ExitCode.CHANGES
    doc = json.loads(as_json.stdout)
    assert doc["status"] == "drift" and doc["missing"] == ["absent.gguf"] and len(doc["to_move"]) == 5 and doc["to_move_bytes"] > 0
    prom = runner.invoke(app, ["check", manifest, "--format", "prometheus"])
    assert prom.exit_code == ExitCode.CHANGES
    lines = prom.stdout.splitlines()
    labels = f'{{store="{store}",manifest="ocr-workers"}}'
    assert f"ocr_reconcile_missing_models{labels} 1" in lines and f"ocr_reconcile_drift_files{labels} 5" in lines
    assert f"ocr_reconcile_converged{labels} 0" in lines
    assert "# TYPE ocr_reconcile_last_check_timestamp_seconds gauge" in lines
    assert all(line.startswith("#") or line.startswith("ocr_reconcile_") for line in lines)


# -- leave work in progress alone; whitelist globs ------------------------------------------------------


def test_downloads_in_progress_and_fresh_files_are_left_in_place(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path]
) -> None:
    (store / "Qwen3-8B.gguf.part").write_bytes(b"half")  # a partial download
    (store / "old" / "x.crdownload").write_bytes(b"half")
    (store / "fresh.gguf").write_bytes(b"being written")  # modified just now
    defaults = str(write_manifest(in_progress={}))  # the defaults: the partial names, and 5 minutes
    planned = runner.invoke(app, ["plan", defaults, "--json"])
    reasons = {c["name"]: c["reason"] for c in json.loads(planned.stdout)["changes"]}
    assert reasons["Qwen3-8B.gguf.part"] == "named like a download in progress ('*.part', in_progress.patterns): left in place"
    assert reasons["old/x.crdownload"].startswith("named like a download in progress ('*.crdownload'")
    assert reasons["fresh.gguf"].startswith("modified ") and "(in_progress.min_age 300 s): left in place" in reasons["fresh.gguf"]
    assert runner.invoke(app, ["apply", defaults, "--yes"]).exit_code == ExitCode.OK
    assert all((store / n).exists() for n in ("Qwen3-8B.gguf.part", "old/x.crdownload", "fresh.gguf"))
    off = str(write_manifest("off.yaml", in_progress={"patterns": [], "min_age": "0"}))
    assert runner.invoke(app, ["apply", off, "--yes"]).exit_code == ExitCode.OK
    assert not any((store / n).exists() for n in ("Qwen3-8B.gguf.part", "old/x.crdownload", "fresh.gguf"))


def test_double_star_keeps_every_level_as_gitignore_does(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    keep_all = str(write_manifest(whitelist=["**"]))
    before = tree_digest(store)
    assert runner.invoke(app, ["apply", keep_all, "--yes"]).exit_code == ExitCode.OK
    assert tree_digest(store) == before  # old/Llama-…, one folder down, stayed too
    deep = json.loads(runner.invoke(app, ["plan", str(write_manifest("d.yaml", whitelist=["**/*.gguf"])), "--json"]).stdout)
    actions = {c["name"]: c["actions"][0] for c in deep["changes"]}
    assert actions["old/Llama-3.1-8B-Instruct-Q4_K_M.gguf"] == actions["phi-2.Q4_K_M.gguf"] == "keep"


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("[", "has a '[' that is never closed"),
        ("models/[ab", "has a '[' that is never closed"),
        ("a**b", "uses '**' inside a name: it must be a whole part"),
        ("foo[/]bar", "has a '[…]' class with '/' in it"),
    ],
)
def test_malformed_globs_are_refused_at_validation(tmp_path: Path, write_manifest: Callable[..., Path], pattern: str, why: str) -> None:
    manifest = write_manifest(whitelist=["custom_*", pattern])
    result = run_cli("validate", str(manifest))
    assert result.returncode == ExitCode.ERROR
    [line] = [x for x in result.stderr.splitlines() if "whitelist[1]" in x]
    assert line.startswith(f"error: {manifest}:") and f": whitelist[1]: {pattern!r} {why}" in line, line


# -- disk space that is really freed -------------------------------------------------------------------


def test_apply_says_how_much_space_it_really_freed(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    same = runner.invoke(app, ["apply", str(write_manifest()), "--yes"])
    assert "Apply complete: 4 moved to backup (5.0 MiB), 0 skipped; 0 B freed on the store's filesystem" in same.stdout, same.output
    assert "space comes back when runs are pruned" in same.stdout


def test_a_backup_on_another_filesystem_frees_what_it_moved(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    from ..reliability.common import second_filesystem

    with second_filesystem() as other:
        if other is None:
            pytest.skip("no second filesystem (/dev/shm tmpfs) on this machine")
        result = runner.invoke(app, ["apply", str(write_manifest(backup={"dir": str(other / "b")})), "--yes"])
    assert "Apply complete: 4 moved to backup (5.0 MiB), 0 skipped; 5.0 MiB freed on the store's filesystem." in result.stdout


def _age(run_dir: Path, days: int) -> None:
    """Make a run look ``days`` old (its index records when it was made)."""
    index_path = run_dir / INDEX_NAME
    index = json.loads(index_path.read_text())
    index["created_ns"] -= days * 86400 * 10**9
    index_path.write_text(json.dumps(index))


def test_plan_and_prompt_show_the_runs_retention_will_delete(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = str(write_manifest(backup={"keep": 1, "max_age": "30d"}))
    assert runner.invoke(app, ["apply", manifest, "--yes"]).exit_code == ExitCode.OK
    [old] = json.loads(runner.invoke(app, ["backups", "-m", manifest, "--json"]).stdout)
    (store / "new.gguf").write_bytes(b"x" * 10)
    planned = runner.invoke(app, ["plan", manifest]).stdout
    assert "After a complete apply, backup retention will delete 1 old backup run (5.0 MiB; keep 1, max_age 2592000 s):" in planned
    assert f"  x {old['run_id']}" in planned
    asked = runner.invoke(app, ["apply", manifest])  # shown before the prompt (refused here: not a terminal)
    assert asked.exit_code == ExitCode.ERROR and f"  x {old['run_id']}" in asked.stdout
    applied = runner.invoke(app, ["apply", manifest, "--yes"])
    assert f"Deleted old backup runs (backup retention): {old['run_id']}" in applied.stdout, applied.output


def test_max_age_deletes_old_runs_even_within_keep(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = str(write_manifest(backup={"keep": 10, "max_age": "30d"}))
    assert runner.invoke(app, ["apply", manifest, "--yes"]).exit_code == ExitCode.OK
    [old] = json.loads(runner.invoke(app, ["backups", "-m", manifest, "--json"]).stdout)
    _age(default_backup_root(str(store)) / old["run_id"], 31)
    (store / "new.gguf").write_bytes(b"x")
    applied = runner.invoke(app, ["apply", manifest, "--yes"])
    assert f"Deleted old backup runs (backup retention): {old['run_id']}" in applied.stdout, applied.output


def test_backups_delete_and_prune(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = str(write_manifest(backup={"keep": None}))
    ids = []
    for i in range(3):
        (store / f"s{i}.bin").write_bytes(b"x" * (i + 1))
        assert runner.invoke(app, ["apply", manifest, "--yes"]).exit_code == ExitCode.OK
        ids.append(json.loads(runner.invoke(app, ["backups", "-m", manifest, "--json"]).stdout)[0]["run_id"])
    root = default_backup_root(str(store))
    dry = runner.invoke(app, ["backups", "delete", ids[0], "-m", manifest, "--dry-run"])
    assert dry.exit_code == ExitCode.OK and f"  x {ids[0]}" in dry.stdout and "nothing was deleted" in dry.stdout
    assert (root / ids[0]).is_dir()
    refused = runner.invoke(app, ["backups", "delete", ids[0], "-m", manifest])
    assert refused.exit_code == ExitCode.ERROR and "pass --yes" in refused.stderr and (root / ids[0]).is_dir()
    done = runner.invoke(app, ["backups", "delete", ids[0], "-m", manifest, "--yes"])
    assert done.exit_code == ExitCode.OK and f"Deleted 1 backup run: {ids[0]}." in done.stdout and not (root / ids[0]).exists()
    unknown = runner.invoke(app, ["backups", "delete", "nope", "-m", manifest, "--yes"])
    assert unknown.exit_code == ExitCode.ERROR
    pruned = runner.invoke(app, ["backups", "prune", "-m", manifest, "--keep", "1", "--dry-run"])
    assert f"  x {ids[1]}" in pruned.stdout and ids[2] not in pruned.stdout and (root / ids[1]).is_dir()
    assert runner.invoke(app, ["backups", "prune", "-m", manifest, "--keep", "1", "--yes"]).exit_code == ExitCode.OK
    assert not (root / ids[1]).exists() and (root / ids[2]).is_dir()
    _age(root / ids[2], 40)
    assert runner.invoke(app, ["backups", "prune", "-m", manifest, "--older-than", "30d", "--yes"]).exit_code == ExitCode.OK
    assert not (root / ids[2]).exists()
    assert "No backup runs" in runner.invoke(app, ["backups", "-m", manifest]).stdout
    nothing = runner.invoke(app, ["backups", "prune", "--store", str(store)])
    assert nothing.exit_code == ExitCode.ERROR and "give --keep N or --older-than AGE" in nothing.stderr


# -- messages ---------------------------------------------------------------------------------------------


def test_the_recover_hint_names_the_store(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = str(write_manifest())
    killed = run_cli("apply", manifest, "--yes", env={"OCR_RECONCILE_CRASH_AT": "3"})
    assert killed.returncode == -9
    listed = runner.invoke(app, ["list", manifest])
    assert f"run 'ocr-reconcile recover --store {store}'" in listed.stderr, listed.output
    assert run_cli("recover", "--store", str(store)).returncode == ExitCode.OK


def test_a_file_given_as_a_store_is_not_a_folder(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = str(write_manifest())
    assert runner.invoke(app, ["apply", manifest, "--yes"]).exit_code == ExitCode.OK
    [run] = json.loads(runner.invoke(app, ["backups", "-m", manifest, "--json"]).stdout)
    result = runner.invoke(app, ["restore", run["run_id"], "-m", manifest, "--store", "/etc/passwd"])
    assert result.exit_code == ExitCode.ERROR and "store path /etc/passwd is not a folder" in result.stderr, result.output
    planned = runner.invoke(app, ["plan", manifest, "--store", "/etc/passwd"])
    assert planned.exit_code == ExitCode.ERROR and "is not a folder" in planned.stderr


def test_counts_agree_with_their_nouns(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    for name in ("latest.gguf", "mistral-7b-v0.1.Q2_K.gguf", "old/Llama-3.1-8B-Instruct-Q4_K_M.gguf"):
        (store / name).unlink()
    shown = runner.invoke(app, ["plan", str(write_manifest())]).stdout
    assert "(4 unchanged files not listed" in shown and "1 files" not in shown
    asked = runner.invoke(app, ["apply", str(write_manifest())])
    assert "Move 1 file " not in asked.stdout  # the prompt is not printed off a terminal; the plan is


# -- paths and mistakes ------------------------------------------------------------------------------------


def test_an_engine_folder_that_would_be_relative_is_refused(tmp_path: Path) -> None:
    """No XDG_DATA_HOME and no ~/.local/share: the engine's path is relative; never a folder under the cwd."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(EXAMPLE_MANIFEST.read_text().replace("backend: auto", "backend: directory"))
    (tmp_path / "Aspose.AI.LLM" / "models").mkdir(parents=True)  # a folder the old code would have used
    env = {"HOME": str(tmp_path / "no-home"), "XDG_DATA_HOME": ""}
    result = run_cli("plan", str(manifest), env=env, cwd=tmp_path)
    assert result.returncode == ExitCode.ERROR, result.stdout
    assert "the engine's model folder would be the relative path 'Aspose.AI.LLM/models'" in result.stderr
    assert "set store.path in the manifest, or XDG_DATA_HOME (or pass --store DIR" in result.stderr


def test_show_of_a_manifest_says_what_a_saved_plan_is(runner: CliRunner, write_manifest: Callable[..., Path]) -> None:
    result = runner.invoke(app, ["show", str(write_manifest())])
    assert result.exit_code == ExitCode.ERROR and "is a manifest; saved plans come from plan --out" in result.stderr


def test_plan_refuses_what_apply_would_refuse(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = str(write_manifest(backup={"dir": str(store / "backups")}))
    result = runner.invoke(app, ["plan", manifest])
    assert result.exit_code == ExitCode.ERROR and "is inside the store" in result.stderr, result.output


# -- a new user's pass -----------------------------------------------------------------------------------


def test_a_bad_color_is_one_error_line(runner: CliRunner, write_manifest: Callable[..., Path]) -> None:
    result = run_cli("--color", "bogus", "plan", str(write_manifest()))
    assert result.returncode == ExitCode.ERROR and "Traceback" not in result.stderr
    assert "--color" in result.stderr and "must be auto, always or never" in result.stderr


def test_the_undo_hint_names_the_backup_folder_used(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    manifest = str(write_manifest())
    applied = runner.invoke(app, ["apply", manifest, "--yes", "--backup-dir", str(tmp_path / "bk")])
    [undo] = [line for line in applied.stdout.splitlines() if line.startswith("Undo with: ")]
    assert undo.endswith(f" --backup-dir {tmp_path / 'bk'}")
    restored = runner.invoke(app, undo.removeprefix("Undo with: ocr-reconcile ").split())
    assert restored.exit_code == ExitCode.OK, restored.output


def test_plan_takes_the_backup_folder_and_a_saved_plan_asks_before_retention_deletes(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    manifest = str(write_manifest(backup={"keep": 1}))
    bk = str(tmp_path / "bk")
    assert runner.invoke(app, ["apply", manifest, "--yes", "--backup-dir", bk]).exit_code == ExitCode.OK
    [old] = json.loads(runner.invoke(app, ["backups", "-m", manifest, "--backup-dir", bk, "--json"]).stdout)
    (store / "new.gguf").write_bytes(b"x")
    planned = CliRunner(env={"OCR_RECONCILE_BACKUP_DIR": bk}).invoke(app, ["plan", manifest, "--out", str(tmp_path / "p.json")])
    assert f"  x {old['run_id']}" in planned.stdout, planned.output
    applied = CliRunner(env={"OCR_RECONCILE_BACKUP_DIR": bk}).invoke(app, ["apply", str(tmp_path / "p.json")])
    assert applied.exit_code == ExitCode.ERROR and "pass --yes" in applied.stderr  # retention deletes are not in the saved plan
    applied = CliRunner(env={"OCR_RECONCILE_BACKUP_DIR": bk}).invoke(app, ["apply", str(tmp_path / "p.json"), "--yes"])
    assert applied.exit_code == ExitCode.OK and f"{old['run_id']} (5.0 MiB)" in applied.stdout, applied.output


def test_backups_options_before_a_subcommand_carry_over(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = str(write_manifest())
    assert runner.invoke(app, ["apply", manifest, "--yes"]).exit_code == ExitCode.OK
    [run] = json.loads(runner.invoke(app, ["backups", "-m", manifest, "--json"]).stdout)
    dry = runner.invoke(app, ["backups", "--store", str(store), "delete", run["run_id"], "--dry-run"])
    assert dry.exit_code == ExitCode.OK and "Dry run: delete 1 backup run (5.0 MiB):" in dry.stdout, dry.output
    refused = runner.invoke(app, ["backups", "--store", str(store), "delete", run["run_id"]])
    assert "nothing was deleted" in refused.stderr and "apply" not in refused.stderr


def test_state_ignores_the_per_host_variables(tmp_path: Path) -> None:
    snaps = write_snapshots(tmp_path / "s", 2)
    env = {"OCR_RECONCILE_STORE": "/srv/models", "OCR_RECONCILE_BACKEND": "aspose"}
    result = CliRunner(env=env).invoke(app, ["plan", str(EXAMPLE_MANIFEST), "--state", str(snaps[0].parent)])
    assert result.exit_code == ExitCode.OK, result.output
    quiet = CliRunner().invoke(app, ["-q", "plan", str(EXAMPLE_MANIFEST), "--state", str(snaps[0].parent)])
    assert all(line.startswith(("worker-00: ", "worker-01: ", "Fleet: ")) for line in quiet.stdout.splitlines() if line), quiet.stdout


def test_check_prometheus_reports_its_own_failure(tmp_path: Path) -> None:
    result = run_cli("check", str(tmp_path / "missing.yaml"), "--format", "prometheus")
    assert result.returncode == ExitCode.ERROR
    assert "ocr_reconcile_check_success 0" in result.stdout.splitlines()


def test_a_saved_plan_applied_twice_says_so_and_snapshots_end_in_json(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    plan_file = tmp_path / "p.json"
    assert runner.invoke(app, ["plan", str(write_manifest()), "--out", str(plan_file)]).exit_code == ExitCode.OK
    assert runner.invoke(app, ["apply", str(plan_file)]).exit_code == ExitCode.OK
    again = runner.invoke(app, ["apply", str(plan_file)])
    assert again.exit_code == ExitCode.STALE_PLAN and "it was applied already" in again.stderr, again.output
    snap = runner.invoke(app, ["snapshot", "--store", str(store), "--backend", "directory", "--out", str(tmp_path / "s.yaml")])
    assert snap.exit_code == ExitCode.ERROR and "must end in .json" in snap.stderr and not (tmp_path / "s.yaml").exists()


def test_an_output_file_that_cannot_be_written_is_one_line_and_a_link_there_is_replaced_not_followed(
    store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    manifest = str(write_manifest())
    for args in (["plan", manifest, "--out"], ["snapshot", "--manifest", manifest, "--out"]):
        done = run_cli(*args, str(tmp_path / "no-such-folder" / "p.json"))
        assert done.returncode == ExitCode.ERROR
        assert (
            done.stderr.strip()
            == f"error: cannot write {tmp_path / 'no-such-folder' / 'p.json'}: folder {tmp_path / 'no-such-folder'} does not exist"
        )
    victim = tmp_path / "victim.txt"
    victim.write_text("not yours")
    (tmp_path / "p.json").symlink_to(victim)
    assert run_cli("plan", manifest, "--out", str(tmp_path / "p.json")).returncode == ExitCode.OK
    assert victim.read_text() == "not yours" and not (tmp_path / "p.json").is_symlink()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_odd_output_conditions_are_one_error_line_or_escaped_never_a_traceback(
    store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    """From a hostile pass: a full output device, a terminal encoding without a name's characters, and a
    store path (from a variable) holding a newline."""
    import subprocess

    manifest = str(write_manifest())
    exe = shutil.which("ocr-reconcile", path=str(Path(sys.executable).parent))
    assert exe is not None
    if Path("/dev/full").exists():
        with open("/dev/full", "w") as full:
            done = subprocess.run([exe, "plan", "--json", manifest], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
        assert done.returncode == ExitCode.ERROR and done.stderr == "error: cannot write the output: No space left on device\n"
    (store / "中.bin").write_bytes(b"x")
    latin = run_cli("list", manifest, env={"PYTHONIOENCODING": "latin-1"})
    assert latin.returncode == ExitCode.OK and "\\u4e2d.bin" in latin.stdout and "Traceback" not in latin.stderr
    odd = run_cli("plan", str(manifest), env={"OCR_RECONCILE_STORE": str(tmp_path / "a\nb")})
    assert odd.returncode == ExitCode.ERROR and len(odd.stderr.splitlines()) == 1 and "a\\nb" in odd.stderr
