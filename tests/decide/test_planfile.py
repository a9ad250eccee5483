"""Saved plans: apply exactly, refuse stale/corrupt/future plans, show; every emitted plan fits its schema."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from reconciler.base.errors import ExitCode
from reconciler.cli.app import app
from reconciler.decide.planfile import checksum
from reconciler.read.manifest import load_schema

from ..conftest import tree_digest


def assert_plan_schema(doc: Any) -> None:
    """Every plan, fleet plan and snapshot the tool emits must fit schemas/plan.schema.json."""
    jsonschema.Draft202012Validator(load_schema("plan.schema.json")).validate(doc)


def save(runner: CliRunner, manifest: Path, out: Path, *extra: str) -> dict[str, Any]:
    result = runner.invoke(app, ["plan", "--detailed-exitcode", str(manifest), "--out", str(out), *extra])
    assert result.exit_code in (ExitCode.OK, ExitCode.CHANGES), result.output
    doc: dict[str, Any] = json.loads(out.read_text())
    assert_plan_schema(doc)
    return doc


def test_saved_plan_records_provenance_and_fingerprints(
    runner: CliRunner, store: Path, tmp_path: Path, write_manifest: Callable[..., Path]
) -> None:
    manifest = write_manifest()
    doc = save(runner, manifest, tmp_path / "plan.json")
    assert doc["kind"] == "saved-plan" and doc["format_version"] == "1.3" and doc["tool_version"]
    assert doc["manifest"]["path"] == str(manifest)
    assert doc["store"] == {"path": str(store), "backend": "directory", "engine": None, "inode": store.stat().st_ino}
    files = {c["name"]: c["before"] for c in doc["changes"] if c["before"]}
    assert set(files) == set(tree_digest(store)) - {"old"}
    phi = files["phi-2.Q4_K_M.gguf"]
    st = os.lstat(store / "phi-2.Q4_K_M.gguf")
    assert (phi["size"], phi["mtime_ns"], phi["inode"]) == (st.st_size, st.st_mtime_ns, st.st_ino)
    assert doc["checksum"] == checksum(doc)


def test_apply_saved_plan_applies_exactly_that_plan(
    runner: CliRunner, store: Path, tmp_path: Path, write_manifest: Callable[..., Path]
) -> None:
    doc = save(runner, write_manifest(), tmp_path / "plan.json")
    planned = {c["name"] for c in doc["changes"] if c["actions"] == ["delete"]}
    before = tree_digest(store)
    result = runner.invoke(app, ["apply", str(tmp_path / "plan.json"), "--yes"])
    assert result.exit_code == ExitCode.OK, result.output
    assert set(before) - set(tree_digest(store)) == planned
    # the same plan file again: it was applied already (its files are gone), and it says so
    again = runner.invoke(app, ["apply", str(tmp_path / "plan.json"), "--yes"])
    assert again.exit_code == ExitCode.STALE_PLAN
    assert "it was applied already" in again.stderr


def _relink(path: Path, target: str) -> None:
    path.unlink()
    path.symlink_to(target)


def _replace_same_size(path: Path) -> None:
    data = path.read_bytes()
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(bytes(reversed(data)))
    os.replace(tmp, path)


STALE_CASES: list[tuple[str, Callable[[Path, Path], object], str]] = [
    ("added", lambda s, m: (s / "new.gguf").write_bytes(b"new"), "added: new.gguf"),
    ("removed", lambda s, m: (s / "custom_invoices.bin").unlink(), "removed: custom_invoices.bin"),
    ("resized", lambda s, m: (s / "qwen/tokenizer.json").write_bytes(b"{}"), "resized: qwen/tokenizer.json (4096 -> 2 bytes)"),
    ("replaced", lambda s, m: _replace_same_size(s / "phi-2.Q4_K_M.gguf"), "replaced: phi-2.Q4_K_M.gguf (same size, different file)"),
    ("relinked", lambda s, m: _relink(s / "latest.gguf", "mistral-7b-v0.1.Q2_K.gguf"), "latest.gguf"),
    ("manifest edited", lambda s, m: m.write_text(m.read_text() + "\n# edited\n"), "manifest edited:"),
    ("manifest gone", lambda s, m: m.unlink(), "is missing or no longer valid"),
]


@pytest.mark.parametrize(("case", "change", "expected"), STALE_CASES, ids=[c[0] for c in STALE_CASES])
def test_stale_plan_is_refused_naming_the_difference(
    runner: CliRunner,
    store: Path,
    tmp_path: Path,
    write_manifest: Callable[..., Path],
    case: str,
    change: Callable[[Path, Path], None],
    expected: str,
) -> None:
    manifest = write_manifest()
    save(runner, manifest, tmp_path / "plan.json")
    change(store, manifest)
    before = tree_digest(store)
    result = runner.invoke(app, ["apply", str(tmp_path / "plan.json"), "--yes"])
    assert result.exit_code == ExitCode.STALE_PLAN, result.output
    assert "error: saved plan is stale; nothing was changed:" in result.stderr
    assert expected in result.stderr
    assert tree_digest(store) == before
    shown = runner.invoke(app, ["show", str(tmp_path / "plan.json")])
    assert shown.exit_code == ExitCode.OK and "warning: this plan is stale" in shown.stderr and expected in shown.stderr


def test_plan_made_on_an_empty_store_is_stale_once_files_appear(
    runner: CliRunner, tmp_path: Path, write_manifest: Callable[..., Path]
) -> None:
    (tmp_path / "models").mkdir()
    manifest = write_manifest(models=[], prune=True)
    doc = save(runner, manifest, tmp_path / "plan.json")
    assert doc["changes"] == []
    (tmp_path / "models" / "arrived-later.gguf").write_bytes(b"x")
    result = runner.invoke(
        app,
        [
            "apply",
            str(tmp_path / "plan.json"),
            "--yes",
        ],
    )
    assert result.exit_code == ExitCode.STALE_PLAN and "added: arrived-later.gguf" in result.stderr
    assert (tmp_path / "models" / "arrived-later.gguf").exists()


def _rewrite(path: Path, edit: Callable[[dict[str, Any]], None], fix_checksum: bool) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    if fix_checksum:
        doc["checksum"] = checksum(doc)
    path.write_text(json.dumps(doc))


def _flip_first_delete(doc: dict[str, Any]) -> None:
    next(c for c in doc["changes"] if c["actions"] == ["delete"])["actions"] = ["keep"]


BAD_FILES: list[tuple[str, Callable[[Path], object], str]] = [
    ("truncated", lambda p: p.write_text(p.read_text()[:200]), "corrupt saved-plan file (not JSON"),
    ("binary", lambda p: p.write_bytes(b"\x00\xff\xfe"), "corrupt saved-plan file"),
    ("not an object", lambda p: p.write_text("[1, 2]"), "not a JSON object"),
    ("hand-edited", lambda p: _rewrite(p, _flip_first_delete, fix_checksum=False), "checksum mismatch"),
    (
        "future major version",
        lambda p: _rewrite(p, lambda d: d.update(format_version="2.0"), fix_checksum=True),
        "format_version '2.0' is not supported",
    ),
    ("no version", lambda p: _rewrite(p, lambda d: d.pop("format_version"), fix_checksum=True), "format_version None is not supported"),
    ("schema broken", lambda p: _rewrite(p, lambda d: d.update(changes="nope"), fix_checksum=True), "does not match the plan schema"),
    ("a snapshot, not a plan", lambda p: _rewrite(p, lambda d: d.update(kind="snapshot"), fix_checksum=True), "not a saved-plan"),
]


@pytest.mark.parametrize(("case", "damage", "expected"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_corrupt_or_foreign_plan_files_are_refused(
    runner: CliRunner,
    store: Path,
    tmp_path: Path,
    write_manifest: Callable[..., Path],
    case: str,
    damage: Callable[[Path], None],
    expected: str,
) -> None:
    plan_file = tmp_path / "plan.json"
    save(runner, write_manifest(), plan_file)
    damage(plan_file)
    before = tree_digest(store)
    for command in (["apply", str(plan_file), "--yes"], ["show", str(plan_file)]):
        result = runner.invoke(app, command)
        assert result.exit_code == ExitCode.ERROR, result.output
        [line] = result.stderr.splitlines()
        assert line.startswith(f"error: {plan_file}: ") and expected in line, line
    assert tree_digest(store) == before


def test_minor_version_bump_is_accepted(runner: CliRunner, store: Path, tmp_path: Path, write_manifest: Callable[..., Path]) -> None:
    plan_file = tmp_path / "plan.json"
    save(runner, write_manifest(), plan_file)
    _rewrite(plan_file, lambda d: d.update(format_version="1.7"), fix_checksum=True)
    assert runner.invoke(app, ["show", str(plan_file)]).exit_code == ExitCode.OK


def test_show_renders_every_format(runner: CliRunner, store: Path, tmp_path: Path, write_manifest: Callable[..., Path]) -> None:
    plan_file = tmp_path / "plan.json"
    save(runner, write_manifest(), plan_file)
    text = runner.invoke(app, ["show", str(plan_file)])
    assert text.exit_code == ExitCode.OK and text.stderr == ""
    assert "Plan: 4 to move to backup (5.0 MiB), 4 kept, 0 missing." in text.stdout
    md = runner.invoke(app, ["show", str(plan_file), "--format", "markdown"]).stdout
    assert md.splitlines()[0] == "4 models move to backup (5.0 MiB), 4 kept, 0 missing"
    shown = json.loads(runner.invoke(app, ["show", str(plan_file), "--format", "json"]).stdout)
    assert_plan_schema(shown)
    assert shown == json.loads(plan_file.read_text())


def test_saved_plan_rejects_overrides(runner: CliRunner, store: Path, tmp_path: Path, write_manifest: Callable[..., Path]) -> None:
    save(runner, write_manifest(), tmp_path / "plan.json")
    result = runner.invoke(app, ["apply", str(tmp_path / "plan.json"), "--yes", "--store", str(tmp_path)])
    assert result.exit_code == ExitCode.ERROR and "applied to the store it was made for" in result.stderr


def test_every_live_plan_fits_the_schema(runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path) -> None:
    (store / "fifo").parent.mkdir(exist_ok=True)
    os.mkfifo(store / "fifo")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x").write_bytes(b"x")
    (store / "linked").symlink_to(tmp_path / "elsewhere")
    cases: list[dict[str, Any]] = [{}, {"prune": False}, {"models": []}, {"models": [{"name": "absent"}]}, {"limits": {"max_delete": 1}}]
    for overrides in cases:
        result = runner.invoke(app, ["plan", "--detailed-exitcode", str(write_manifest(**overrides)), "--json"])
        assert result.exit_code in (0, 2, 3), result.output
        assert_plan_schema(json.loads(result.stdout))


def test_a_plain_touch_is_reported_as_modified_not_replaced(
    runner: CliRunner, store: Path, write_manifest: Callable[..., Path], tmp_path: Path
) -> None:
    plan_file = tmp_path / "p.json"
    assert runner.invoke(app, ["plan", str(write_manifest()), "--out", str(plan_file)]).exit_code == ExitCode.OK
    st = os.stat(store / "phi-2.Q4_K_M.gguf")
    os.utime(store / "phi-2.Q4_K_M.gguf", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    result = runner.invoke(app, ["apply", str(plan_file)])
    assert result.exit_code == ExitCode.STALE_PLAN and "modified: phi-2.Q4_K_M.gguf (same size, new mtime)" in result.stderr
