"""The GitHub Action (action.yml): its steps' commands, run locally as a runner would run them."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

from ..conftest import BIN, EXAMPLE_MANIFEST, ROOT
from ..decide.test_fleet import write_snapshots

ACTION = yaml.safe_load((ROOT / "action.yml").read_text())


def _step(step_id: str) -> dict[str, object]:
    [step] = [s for s in ACTION["runs"]["steps"] if s.get("id") == step_id]
    return dict(step)


def _run_plan(tmp_path: Path, state: str, fail_on: str = "1", manifest: Path = EXAMPLE_MANIFEST) -> tuple[int, dict[str, str]]:
    """Run the Plan step's script with the inputs a runner would pass; return its exit code and outputs."""
    step = _step("plan")
    output = tmp_path / "github_output"
    output.write_text("")
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "MANIFEST": str(manifest),
        "STATE": state,
        "FAIL_ON": fail_on,
        "GITHUB_OUTPUT": str(output),
        "RUNNER_TEMP": str(tmp_path),
    }
    done = subprocess.run(["bash", "-e", "-c", str(step["run"])], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    text = output.read_text()
    outputs = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
    block = re.search(r"^markdown<<(\S+)\n(.*?)\n\1$", text, re.S | re.M)
    if block:
        outputs["markdown"] = block.group(2)
    return done.returncode, outputs


def test_the_action_is_a_composite_with_the_documented_outputs() -> None:
    assert ACTION["runs"]["using"] == "composite"
    assert set(ACTION["outputs"]) == {"exit-code", "markdown"} and ACTION["inputs"]["manifest"]["required"] is True
    install = next(s for s in ACTION["runs"]["steps"] if s.get("name") == "Install ocr-reconcile")
    assert install["run"] == 'python -m pip install --quiet "${INSTALL:-$ACTION_PATH}"'


def test_the_plan_step_exposes_the_code_and_the_markdown(tmp_path: Path) -> None:
    write_snapshots(tmp_path / "snapshots", 3)
    code, outputs = _run_plan(tmp_path, "snapshots")
    assert code == 0 and outputs["exit_code"] == "2"  # changes pending: the step itself succeeds
    assert outputs["markdown"].startswith("3 models to move to backup") and "| `worker-02` |" in outputs["markdown"]


def test_several_state_lines_and_fail_on(tmp_path: Path) -> None:
    snaps = write_snapshots(tmp_path / "snapshots", 6)  # worker-05 lacks a declared model: cannot converge
    state = "\n".join(str(p.relative_to(tmp_path)) for p in snaps)
    code, outputs = _run_plan(tmp_path, state)
    assert code == 0 and outputs["exit_code"] == "3"
    code, outputs = _run_plan(tmp_path, state, fail_on="1 3")
    assert code == 3 and outputs["exit_code"] == "3" and "worker-05" in outputs["markdown"]


def test_an_error_fails_the_step_after_setting_the_outputs(tmp_path: Path) -> None:
    code, outputs = _run_plan(tmp_path, "", manifest=tmp_path / "missing.yaml")
    assert code == 1 and outputs["exit_code"] == "1"
