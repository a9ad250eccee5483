"""Snapshots and fleet plans (plan --state), Markdown golden files, guards, check, colour."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconciler.base.errors import ExitCode
from reconciler.cli.app import app
from reconciler.decide.plan import Plan, make_plan
from reconciler.decide.planfile import Snapshot, snapshot_doc, write_document
from reconciler.read.manifest import parse_manifest
from reconciler.read.scan import FileFacts, StoreScan
from reconciler.render import plans as render

from ..conftest import EXAMPLE_MANIFEST, LLAMA, run_cli, tree_digest
from .test_planfile import assert_plan_schema

GOLDEN = Path(__file__).parent / "golden"
GiB = 1024**3


def golden(name: str, text: str) -> None:
    """Compare with tests/decide/golden/NAME; UPDATE_GOLDEN=1 rewrites it (review the diff!)."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs; rerun with UPDATE_GOLDEN=1 and review the diff"


def synthetic_scan(host_index: int) -> StoreScan:
    """A deterministic store for host N: the declared models, plus N % 4 stale ones (host 5: missing qwen)."""
    files = [FileFacts(LLAMA, "file", 2 * GiB, 1, 10, 1, engine_visible=True)]
    if host_index != 5:
        files.append(FileFacts("qwen/Qwen2.5-1.5B-Instruct-Q4_K_M.gguf", "file", GiB, 1, 11, 1, engine_visible=False))
    files.append(FileFacts("custom_ner.bin", "file", 300 * 1024**2, 1, 12, 1, engine_visible=False))
    for k in range(host_index % 4):
        files.append(FileFacts(f"stale-{k}.gguf", "file", (k + 1) * 700 * 1024**2, 1, 20 + k, 1, engine_visible=False))
    return StoreScan(
        root="/var/lib/ocr/.local/share/Aspose.AI.LLM/models",
        backend="aspose",
        files=tuple(sorted(files, key=lambda f: f.name)),
        engine_licensed=False,
        engine_listed=1,
    )


def write_snapshots(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"worker-{i:02d}.json"
        scan = replace(synthetic_scan(i), host=f"worker-{i:02d}")
        write_document(path, snapshot_doc(Snapshot(scan, "2026-11-24T20:00:00Z", hashed=False, path="")))
        paths.append(path)
    return paths


def test_fleet_plan_over_24_snapshots(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snapshots = write_snapshots(tmp_path / "snapshots", 24)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "manifest.yaml").write_text(EXAMPLE_MANIFEST.read_text())
    # repeated --state accumulate (the option may also come before the manifest)
    states = [arg for p in snapshots for arg in ("--state", str(p.relative_to(tmp_path)))]
    args = ["plan", "--detailed-exitcode", *states[:2], "manifest.yaml", *states[2:], "--format", "markdown"]
    result = runner.invoke(app, args)
    assert result.exit_code == ExitCode.CANNOT_CONVERGE, result.output  # worker-05 lacks a declared model
    golden("fleet-24.md", result.stdout)
    rows = [line for line in result.stdout.splitlines() if line.startswith("| `worker-")]
    assert len(rows) == 24
    assert result.stdout.count("<details><summary>worker-") == 24
    # the same via a folder and via a quoted glob; JSON fits the schema
    for state in ("snapshots", "snapshots/*.json"):
        doc = json.loads(runner.invoke(app, ["plan", "--detailed-exitcode", "manifest.yaml", "--state", state, "--format", "json"]).stdout)
        assert_plan_schema(doc)
        assert [h["host"] for h in doc["hosts"]] == [f"worker-{i:02d}" for i in range(24)]
        assert sum(h["summary"]["delete"] for h in doc["hosts"]) == sum(i % 4 for i in range(24))


def test_fleet_plan_without_missing_exits_2_and_needs_no_engine(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_snapshots(tmp_path / "s", 4)
    (tmp_path / "s" / "worker-05.json").unlink(missing_ok=True)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.yaml").write_text(EXAMPLE_MANIFEST.read_text().replace("backend: auto", "backend: aspose"))
    result = runner.invoke(app, ["plan", "--detailed-exitcode", "m.yaml", "--state", "s"])
    assert result.exit_code == ExitCode.CHANGES, result.output
    assert result.stdout.count("Host: worker-") == 4


def test_snapshot_command_is_read_only_and_feeds_plan_state(store: Path, tmp_path: Path) -> None:
    before = tree_digest(store)
    out = tmp_path / "host-a.json"
    result = run_cli("snapshot", "--store", str(store), "--backend", "directory", "--hash", "--host", "host-a", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert tree_digest(store) == before
    snap = json.loads(out.read_text())
    assert_plan_schema(snap)
    assert snap["host"] == "host-a" and snap["hashed"] is True
    by_name = {f["name"]: f for f in snap["files"]}
    assert by_name["phi-2.Q4_K_M.gguf"]["sha256"] == before["phi-2.Q4_K_M.gguf"]
    assert by_name["latest.gguf"]["kind"] == "symlink"
    planned = run_cli("plan", "--detailed-exitcode", str(EXAMPLE_MANIFEST), "--state", str(out), "--format", "json")
    assert planned.returncode == ExitCode.CHANGES, planned.stderr
    [host] = json.loads(planned.stdout)["hosts"]
    assert {c["name"] for c in host["changes"] if c["actions"] == ["delete"]} == {
        "latest.gguf",
        "mistral-7b-v0.1.Q2_K.gguf",
        "old/Llama-3.1-8B-Instruct-Q4_K_M.gguf",
        "phi-2.Q4_K_M.gguf",
    }


def test_state_errors(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    result = runner.invoke(app, ["plan", "--detailed-exitcode", str(EXAMPLE_MANIFEST), "--state", str(bad)])
    assert result.exit_code == ExitCode.ERROR and "corrupt snapshot file" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        "no snapshot files found"
        in runner.invoke(app, ["plan", "--detailed-exitcode", str(EXAMPLE_MANIFEST), "--state", str(empty)]).stderr
    )
    assert runner.invoke(app, ["plan", "--detailed-exitcode", str(EXAMPLE_MANIFEST), "stray-arg"]).exit_code == ExitCode.ERROR


def _golden_plan(stale: int) -> Plan:
    manifest = parse_manifest(EXAMPLE_MANIFEST.read_bytes(), "manifests/example.yaml")
    scan = synthetic_scan(3)
    extra = tuple(FileFacts(f"old/model-{k:02d}.gguf", "file", 100 * 1024**2, 1, 100 + k, 1, engine_visible=False) for k in range(stale))
    scan = StoreScan(scan.root, scan.backend, tuple(sorted(scan.files + extra, key=lambda f: f.name)), False, 1)
    return make_plan(manifest, scan)


def test_markdown_golden_short_plan() -> None:
    text = render.plan_markdown(_golden_plan(0))
    assert text.splitlines()[0] == "3 models move to backup (4.1 GiB), 3 kept, 0 missing"
    golden("plan-short.md", text)


def test_markdown_golden_long_plan_is_folded() -> None:
    text = render.plan_markdown(_golden_plan(30))
    assert "<details><summary>33 changes</summary>" in text
    golden("plan-long.md", text)


def test_markdown_escapes_table_breakers() -> None:
    manifest = parse_manifest(b"apiVersion: ocr-reconcile/v1\nkind: ModelState\nmetadata: {name: t}\nmodels: []\n", "m.yaml")
    scan = StoreScan("/s", "directory", (FileFacts("a|b`<x>.gguf", "file", 1, 1, 1, 1),))
    text = render.plan_markdown(make_plan(manifest, scan))
    assert "`a\\|b'&lt;x>.gguf`" in text


def test_list_formats(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    md = runner.invoke(app, ["list", str(write_manifest()), "--format", "markdown"])
    assert md.exit_code == 0 and md.stdout.startswith("8 files, ")
    assert "| `phi-2.Q4_K_M.gguf` | 1.5 MiB | unmanaged | n/a |" in md.stdout
    assert runner.invoke(app, ["list", str(write_manifest()), "--format", "yaml"]).exit_code == ExitCode.ERROR


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert render.use_colour(True) and not render.use_colour(False)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not render.use_colour(True)
    doc = _golden_plan(0)
    assert "\x1b[31m  - stale-0.gguf" in render.plan_text(doc, render.View(colour=True))
    assert "\x1b[" not in render.plan_text(doc, render.View(colour=False))


# -- guards ---------------------------------------------------------------------------------------

GUARD_CASES = [
    ("manifest max_delete", {"limits": {"max_delete": 3}}, [], "4 files would move, over max_delete 3"),
    ("cli --max-delete", {}, ["--max-delete", "2"], "4 files would move, over max_delete 2"),
    ("stricter wins", {"limits": {"max_delete": 10}}, ["--max-delete", "1"], "4 files would move, over max_delete 1"),
    ("max_delete_bytes", {"limits": {"max_delete_bytes": "4 MiB"}}, [], "5242897 bytes would move, over max_delete_bytes 4194304"),
    ("no models declared", {"models": []}, [], "the manifest declares no models (truncated?)"),
    ("no models, nothing whitelisted", {"models": [], "whitelist": []}, [], "the manifest declares no models (truncated?)"),
]


@pytest.mark.parametrize(("case", "overrides", "flags", "message"), GUARD_CASES, ids=[c[0] for c in GUARD_CASES])
def test_guards_show_in_plan_and_stop_apply(
    runner: CliRunner,
    store: Path,
    write_manifest: Callable[..., Path],
    case: str,
    overrides: dict[str, object],
    flags: list[str],
    message: str,
) -> None:
    manifest = str(write_manifest(**overrides))
    planned = runner.invoke(app, ["plan", "--detailed-exitcode", manifest, *flags])
    assert planned.exit_code == ExitCode.CHANGES
    assert f"Guard: {message}" in planned.stdout
    before = tree_digest(store)
    applied = runner.invoke(app, ["apply", manifest, "--yes", *flags])
    assert applied.exit_code == ExitCode.GUARD, applied.output
    assert message in applied.stderr
    assert tree_digest(store) == before


def test_whole_store_guard_is_shown_but_missing_models_decide_the_exit(
    runner: CliRunner, tmp_path: Path, write_manifest: Callable[..., Path]
) -> None:
    """Declared models all absent and every file would move: the guard is shown; exit 3 (missing) wins."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "a.gguf").write_bytes(b"a")
    (models / "b.gguf").write_bytes(b"b")
    manifest = str(write_manifest(models=[{"name": "renamed-model.gguf"}], whitelist=[]))
    planned = runner.invoke(app, ["plan", "--detailed-exitcode", manifest])
    assert planned.exit_code == ExitCode.CANNOT_CONVERGE
    assert "Guard: every file in the store (2) would move; pass --allow-empty if that is meant" in planned.stdout
    assert runner.invoke(app, ["apply", manifest, "--yes"]).exit_code == ExitCode.CANNOT_CONVERGE
    assert sorted(p.name for p in models.iterdir()) == ["a.gguf", "b.gguf"]


def test_allow_empty_lets_an_intended_empty_manifest_through(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = str(write_manifest(models=[], whitelist=[]))
    assert runner.invoke(app, ["apply", manifest, "--yes"]).exit_code == ExitCode.GUARD
    result = runner.invoke(app, ["apply", manifest, "--yes", "--allow-empty"])
    assert result.exit_code == ExitCode.OK, result.output
    assert tree_digest(store) == {}


def test_check_exit_codes(runner: CliRunner, store: Path, write_manifest: Callable[..., Path]) -> None:
    manifest = str(write_manifest())
    drift = runner.invoke(app, ["check", manifest])
    assert drift.exit_code == ExitCode.CHANGES and drift.stdout.startswith("DRIFT: ") and "4 to move to backup" in drift.stdout
    runner.invoke(app, ["apply", manifest, "--yes"])
    ok = runner.invoke(app, ["check", manifest])
    assert ok.exit_code == ExitCode.OK and ok.stdout.startswith("OK: ")
    missing = runner.invoke(app, ["check", str(write_manifest(name="m2.yaml", models=[{"name": LLAMA}, {"name": "gone.gguf"}]))])
    assert missing.exit_code == ExitCode.CHANGES and "1 missing (gone.gguf)" in missing.stdout
    assert runner.invoke(app, ["check", str(store / "nope.yaml")]).exit_code == ExitCode.ERROR
