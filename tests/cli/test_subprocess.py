"""The installed ``ocr-reconcile`` console script, run as a real process (directory backend)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconciler.cli.app import app

from ..conftest import run_cli, tree_digest
from ..decide.test_planfile import assert_plan_schema
from ..read.test_manifest import BAD_NAMES, CASES, HEAD, _yaml_str


def test_plan_apply_restore_round_trip(store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = str(write_manifest())
    original = tree_digest(store)

    plan = run_cli("plan", "--detailed-exitcode", manifest, "--json")
    assert plan.returncode == 2, plan.stderr
    assert_plan_schema(json.loads(plan.stdout))
    to_delete = {c["name"] for c in json.loads(plan.stdout)["changes"] if c["actions"] == ["delete"]}
    assert tree_digest(store) == original

    applied = run_cli("apply", manifest, "--yes")
    assert applied.returncode == 0, applied.stderr
    assert set(original) - set(tree_digest(store)) == to_delete

    again = run_cli("apply", manifest, "--yes")
    assert again.returncode == 0 and "No changes." in again.stdout

    runs = json.loads(run_cli("backups", "-m", manifest, "--json").stdout)
    assert [r["files"] for r in runs] == [len(to_delete)]
    restored = run_cli("restore", runs[0]["run_id"], "-m", manifest)
    assert restored.returncode == 0, restored.stderr
    assert tree_digest(store) == original
    assert run_cli("plan", "--detailed-exitcode", manifest).returncode == 2


BAD_FILES = [(f"name {why}", HEAD + f"models:\n  - name: {_yaml_str(name)}\n") for name, why in BAD_NAMES] + [
    (f"case {i}", text) for i, (text, _) in enumerate(CASES)
]


def _one_line_errors(stderr: str, bad: Path) -> None:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert errors and all(line.startswith(f"error: {bad}:") for line in errors), stderr


@pytest.mark.parametrize(("case", "text"), BAD_FILES, ids=[c for c, _ in BAD_FILES])
def test_bad_manifest_is_one_line_per_error_exit_1_nothing_changed(
    runner: CliRunner, store: Path, tmp_path: Path, case: str, text: str
) -> None:
    """Every bad manifest through validate, plan and apply (in-process CLI): exit 1, errors only, no change."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    before = tree_digest(tmp_path)
    for command in (
        ["validate", str(bad)],
        ["plan", "--detailed-exitcode", str(bad), "--store", str(store)],
        ["apply", str(bad), "--yes", "--store", str(store)],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, (command, result.stdout, result.stderr)
        _one_line_errors(result.stderr, bad)
        assert result.stdout == ""
    assert tree_digest(tmp_path) == before


def test_bad_manifests_through_the_real_process(store: Path, tmp_path: Path) -> None:
    """The same, as real processes: every bad file in one validate run, and apply on a sample of them."""
    paths = []
    for i, (_, text) in enumerate(BAD_FILES):
        paths.append(tmp_path / f"bad{i:02d}.yaml")
        paths[-1].write_text(text)
    before = tree_digest(tmp_path)
    result = run_cli("validate", *map(str, paths))
    assert result.returncode == 1 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == f"{len(paths)} of {len(paths)} manifests invalid."
    assert {line.split(":", 2)[1].strip() for line in result.stderr.splitlines()[:-1]} == {str(p) for p in paths}
    for bad in paths[:: max(1, len(paths) // 5)]:
        applied = run_cli("apply", str(bad), "--yes", "--store", str(store))
        assert applied.returncode == 1 and applied.stdout == "", applied.stderr
        _one_line_errors(applied.stderr, bad)
    assert tree_digest(tmp_path) == before


def test_oversized_and_binary_manifests(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: " + b"x" * (1024 * 1024 + 10))
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    result = run_cli("validate", str(big), str(binary))
    assert result.returncode == 1
    assert f"error: {big}: file is larger than 1048576 bytes (1 MiB)" in result.stderr
    assert f"error: {binary}:1:1: (document): not valid UTF-8 (byte 0x89)" in result.stderr
    assert "Traceback" not in result.stderr
