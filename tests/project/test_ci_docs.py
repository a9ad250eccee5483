"""The CI recipe in docs/ci.md and the pre-commit hook, run for real."""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from reconciler.demo import build_store

from ..conftest import BIN, EXAMPLE_MANIFEST, ROOT, run_cli, tree_digest
from ..decide.test_fleet import write_snapshots


def workflow() -> dict[str, object]:
    text = (ROOT / "docs" / "ci.md").read_text()
    block = re.search(r"```yaml\n(name: ocr-reconcile plan.*?)```", text, re.S)
    assert block, "workflow block not found in docs/ci.md"
    doc: dict[str, object] = yaml.safe_load(block.group(1))
    return doc


def plan_step_script() -> str:
    steps = workflow()["jobs"]["plan"]["steps"]  # type: ignore[index]
    [step] = [s for s in steps if s.get("id") == "plan"]
    script: str = step["run"]
    return script


def run_step(tmp_path: Path, manifest_text: str) -> tuple[str, str]:
    (tmp_path / "manifests").mkdir(exist_ok=True)
    (tmp_path / "manifests" / "ocr-workers.yaml").write_text(manifest_text)
    write_snapshots(tmp_path / "snapshots", 3)
    output = tmp_path / "github_output"
    output.write_text("")
    env = {**os.environ, "GITHUB_OUTPUT": str(output), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-e", "-c", plan_step_script()], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr  # the step itself succeeds on 0, 2 and 3
    return output.read_text(), (tmp_path / "plan.md").read_text()


def test_plan_step_records_exit_code_2_instead_of_swallowing_it(tmp_path: Path) -> None:
    recorded, markdown = run_step(tmp_path, EXAMPLE_MANIFEST.read_text())
    assert recorded == "exit_code=2\n"
    assert markdown.startswith("3 models to move to backup")


def test_plan_step_fails_on_a_broken_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "ocr-workers.yaml").write_text("apiVersion: nope\n")
    write_snapshots(tmp_path / "snapshots", 1)
    output = tmp_path / "out"
    output.write_text("")
    env = {**os.environ, "GITHUB_OUTPUT": str(output), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-e", "-c", plan_step_script()], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 1 and output.read_text() == "exit_code=1\n"


def test_last_step_fails_on_cannot_converge() -> None:
    steps = workflow()["jobs"]["plan"]["steps"]  # type: ignore[index]
    assert steps[-1]["if"] == "steps.plan.outputs.exit_code == '3'" and steps[-1]["run"] == "exit 3"


def test_pre_commit_hook_runs_validate() -> None:
    [hook] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "ocr-reconcile-validate" and re.search(hook["files"], "manifests/example.yaml")
    command = shlex.split(hook["entry"])
    assert command[0] == "ocr-reconcile"
    assert run_cli(*command[1:], str(EXAMPLE_MANIFEST)).returncode == 0
    assert run_cli(*command[1:], str(ROOT / "pyproject.toml")).returncode == 1


def test_the_readme_library_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API example in the README, run as written against the demo store: it moves and restores."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## The library API.*?```python\n(.*?)```", text, re.S)
    assert block, "python block not found in the README's library API section"
    store = build_store(tmp_path / "build" / "demo" / "models")
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "example.yaml").write_text(EXAMPLE_MANIFEST.read_text().replace("backend: auto", "backend: directory"))
    monkeypatch.chdir(tmp_path)
    before = tree_digest(store)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block.group(1), "README.md", "exec"), {})
    lines = printed.getvalue().splitlines()
    assert lines[0] == "4 to move, 5242897 bytes; CHANGES", lines
    assert sorted(ast.literal_eval(lines[1].split(" ", 1)[1])) == sorted(DEMO_STALE), lines
    assert tree_digest(store) == before  # restored


DEMO_STALE = {"latest.gguf", "mistral-7b-v0.1.Q2_K.gguf", "old/Llama-3.1-8B-Instruct-Q4_K_M.gguf", "phi-2.Q4_K_M.gguf"}


def test_the_architecture_example_applies_a_saved_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The `apply PLANFILE` example in docs/architecture.md, run as written on a plan saved by the CLI."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S)
    assert block, "python block not found in docs/architecture.md"
    store = build_store(tmp_path / "models")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(EXAMPLE_MANIFEST.read_text().replace("backend: auto", "backend: directory").replace("path: null", f"path: {store}"))
    monkeypatch.chdir(tmp_path)
    assert run_cli("plan", str(manifest), "--out", "plan.json").returncode == 0
    scope: dict[str, object] = {}
    exec(compile(block.group(1), "architecture.md", "exec"), scope)
    assert sorted(m.name for m in scope["result"].moved) == sorted(DEMO_STALE)  # type: ignore[attr-defined]
    assert DEMO_STALE.isdisjoint(tree_digest(store))
