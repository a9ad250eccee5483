"""Issue 9: the habits ops users bring from Terraform, Ansible and rsync, through the real CLI."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconciler.cli import app
from reconciler.errors import ExitCode

from .conftest import EXAMPLE_MANIFEST, run_cli, tree_digest
from .test_fleet import write_snapshots


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
    assert planned.stdout.splitlines() == ["Plan: 4 to move to backup (5.0 MiB freed), 4 kept, 0 missing."], planned.output
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
    [("[", "has a '[' that is never closed"), ("models/[ab", "has a '[' that is never closed"), ("a**b", "'**' must be a whole part")],
)
def test_malformed_globs_are_refused_at_validation(tmp_path: Path, write_manifest: Callable[..., Path], pattern: str, why: str) -> None:
    manifest = write_manifest(whitelist=["custom_*", pattern])
    result = run_cli("validate", str(manifest))
    assert result.returncode == ExitCode.ERROR
    [line] = [x for x in result.stderr.splitlines() if "whitelist[1]" in x]
    assert line.startswith(f"error: {manifest}:") and f": whitelist[1]: {pattern!r} {why}" in line, line
