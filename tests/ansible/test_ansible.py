"""Issue 12: the Ansible collection (ansible/), driven by the real ansible-playbook over an inventory of
20 local hosts (ansible_connection=local), each with its own store. Results are read from Ansible's own
json callback (per-host stats), never from its text."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from reconciler.base.errors import ExitCode
from reconciler.demo import build_store

from ..conftest import EXAMPLE_MANIFEST, LLAMA, ROOT, run_cli, tree_digest
from ..model_server import ModelServer

BIN = Path(sys.executable).parent
PLAYBOOKS = ROOT / "ansible" / "playbooks"
HOSTS = [f"host{i:02d}" for i in range(1, 21)]
CLEAN = {"host03", "host11", "host17"}  # already converged: no drift
KEPT = {
    LLAMA: 3 * 1024 * 1024,
    "qwen/Qwen2.5-1.5B-Instruct-Q4_K_M.gguf": 2 * 1024 * 1024,
    "qwen/tokenizer.json": 4096,
    "custom_invoices.bin": 64 * 1024,
}

pytestmark = pytest.mark.skipif(not (BIN / "ansible-playbook").exists(), reason="ansible-core is not installed in this venv")


class Fleet(NamedTuple):
    root: Path
    inventory: Path
    manifest: Path
    env: dict[str, str]


def _env(root: Path) -> dict[str, str]:
    collections = root / "collections" / "ansible_collections" / "ocr"
    collections.mkdir(parents=True)
    (collections / "reconcile").symlink_to(ROOT / "ansible")
    home = root / "ansible-home"
    return {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(root / "collections"),
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CALLBACK_PLUGINS": str(Path(__file__).parent / "ansible_callback"),
        "ANSIBLE_CALLBACKS_ENABLED": "record",
        "OCR_RECORD_FILE": str(root / "record.json"),
        "ANSIBLE_FORKS": "10",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def _inventory(root: Path, manifest: Path, extra: dict[str, dict[str, Any]] | None = None) -> Path:
    hosts = {h: {"ocr_store": str(root / "hosts" / h / "models"), **(extra or {}).get(h, {})} for h in HOSTS}
    doc = {
        "all": {
            "children": {
                "ocr_hosts": {
                    "hosts": hosts,
                    "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "ocr_manifest": str(manifest)},
                }
            }
        }
    }
    path = root / "inventory.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """20 hosts: 17 with the demo store's drift, 3 already converged; one shared manifest."""
    for host in HOSTS:
        build_store(tmp_path / "hosts" / host / "models", dict(KEPT) if host in CLEAN else None)
    doc = yaml.safe_load(EXAMPLE_MANIFEST.read_text())
    doc["store"] = {"backend": "directory"}
    doc["in_progress"] = {"min_age": 0}
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump(doc))
    yield Fleet(tmp_path, _inventory(tmp_path, manifest), manifest, _env(tmp_path))


def _play(fleet: Fleet, playbook: str, *args: str, inventory: Path | None = None) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory or fleet.inventory), str(PLAYBOOKS / playbook), *args],
        capture_output=True,
        text=True,
        env=fleet.env,
        timeout=600,
    )
    record = Path(fleet.env["OCR_RECORD_FILE"])
    assert record.exists(), done.stdout + done.stderr
    result: dict[str, Any] = json.loads(record.read_text())
    record.unlink()
    return done.returncode, result


def _stats(result: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {h: s for h, s in result["stats"].items() if h != "localhost"}


def _task_results(result: dict[str, Any], task_name: str) -> dict[str, dict[str, Any]]:
    return {r["host"]: r["result"] for r in result["results"] if r["task"] == task_name}


def _stores(fleet: Fleet) -> dict[str, dict[str, str]]:
    return {h: tree_digest(fleet.root / "hosts" / h / "models") for h in HOSTS}


def test_check_mode_changes_nothing_and_reports_exactly_the_hosts_with_drift(fleet: Fleet) -> None:
    doc = yaml.safe_load(fleet.manifest.read_text())
    pinned = fleet.root / "hosts" / "host01" / "models" / LLAMA
    doc["models"][0]["sha256"] = hashlib.sha256(pinned.read_bytes()).hexdigest()  # a pin: a hash cache could be written
    fleet.manifest.write_text(yaml.safe_dump(doc))
    before = _stores(fleet)
    beside = {p.name for p in (fleet.root / "hosts" / "host01").iterdir()}
    code, result = _play(fleet, "rollout.yml", "--check", "-e", "ocr_serial=20")
    assert code == 0, result
    assert _stores(fleet) == before
    assert {p.name for p in (fleet.root / "hosts" / "host01").iterdir()} == beside  # no lock, cache or backup folder
    changed = {h for h, r in _task_results(result, "Converge the store").items() if r.get("changed")}
    assert changed == set(HOSTS) - CLEAN
    plan = _task_results(result, "Converge the store")["host01"]["plan"]
    assert plan["summary"]["delete"] == 4 and plan["has_changes"] and plan["converges"]


def test_a_real_run_converges_every_host_and_a_second_changes_nothing(fleet: Fleet) -> None:
    code, result = _play(fleet, "rollout.yml", "--diff")
    assert code == 0, result
    assert {h for h, s in _stats(result).items() if s["changed"]} >= set(HOSTS) - CLEAN
    results = _task_results(result, "Converge the store")
    assert results["host01"]["bytes_moved"] == 5 * 1024 * 1024 + 17 and results["host01"]["backup_run_id"]
    assert "diff" in results["host01"] and "phi-2.Q4_K_M.gguf" in results["host01"]["diff"]["before"]
    for host in HOSTS:
        assert set(tree_digest(fleet.root / "hosts" / host / "models")) == set(KEPT), host
    summary = _task_results(result, "Bytes freed and models installed over the fleet")["localhost"]["msg"]
    assert summary.startswith("fleet: 20 of 20 hosts converged; 68 files moved to backup")
    code, again = _play(fleet, "rollout.yml")
    assert code == 0 and all(s["changed"] == 0 for s in _stats(again).values()), _stats(again)


def test_a_broken_host_fails_alone_and_the_batch_threshold_stops_the_rollout(fleet: Fleet) -> None:
    broken = fleet.root / "hosts" / "host06" / "models"
    shutil.rmtree(broken)
    broken.write_text("a file where the store folder should be")
    code, result = _play(fleet, "rollout.yml", "-e", '{"ocr_serial": 5, "ocr_max_fail_percentage": 50}')
    assert code != 0
    failed = {h for h, s in _stats(result).items() if s["failures"]}
    assert failed == {"host06"}
    [failure] = [r for h, r in _task_results(result, "Converge the store").items() if h == "host06"]
    assert failure["reason"] == "store" and "is not a folder" in failure["msg"] and "Traceback" not in json.dumps(failure)
    assert all(set(tree_digest(fleet.root / "hosts" / h / "models")) == set(KEPT) for h in HOSTS if h != "host06")

    # with no failure allowed, the batch holding the broken host is the last to run
    for host in HOSTS:
        if host != "host06":
            shutil.rmtree(fleet.root / "hosts" / host)
            build_store(fleet.root / "hosts" / host / "models", dict(KEPT) if host in CLEAN else None)
    code, result = _play(fleet, "rollout.yml", "-e", '{"ocr_serial": 5, "ocr_max_fail_percentage": 0}')
    assert code != 0
    ran = set(_task_results(result, "Converge the store"))
    assert ran == {f"host{i:02d}" for i in range(1, 11)}  # the batches of 5 up to host06's; the rest never ran
    untouched = [h for h in HOSTS[10:] if h not in CLEAN]
    assert all(set(tree_digest(fleet.root / "hosts" / h / "models")) != set(KEPT) for h in untouched)


def test_snapshots_collected_by_model_info_feed_a_fleet_plan_that_matches_check_mode(fleet: Fleet) -> None:
    snapshots = fleet.root / "snapshots"
    code, _ = _play(fleet, "snapshot.yml", "-e", f"ocr_snapshot_dir={snapshots}")
    assert code == 0
    assert sorted(p.stem for p in snapshots.glob("*.json")) == HOSTS
    planned = run_cli("plan", str(fleet.manifest), "--state", str(snapshots), "--json")
    assert planned.returncode == ExitCode.OK, planned.stderr
    drift = {h["host"] for h in json.loads(planned.stdout)["hosts"] if h["summary"]["has_changes"]}
    code, checked = _play(fleet, "rollout.yml", "--check", "-e", "ocr_serial=20")
    assert drift == {h for h, r in _task_results(checked, "Converge the store").items() if r.get("changed")} == set(HOSTS) - CLEAN


def test_installs_from_a_local_http_source_through_the_module(tmp_path: Path) -> None:
    blob = hashlib.sha256(b"installed through ansible").digest() * 20000
    with ModelServer().running() as server:
        url = server.add("/m.gguf", blob)
        doc = yaml.safe_load(EXAMPLE_MANIFEST.read_text())
        doc["store"] = {"backend": "directory"}
        doc["in_progress"] = {"min_age": 0}
        doc["models"].append({"name": "new/m.gguf", "sha256": hashlib.sha256(blob).hexdigest(), "source": url, "size": len(blob)})
        manifest = tmp_path / "manifest.yaml"
        manifest.write_text(yaml.safe_dump(doc))
        for host in HOSTS:
            build_store(tmp_path / "hosts" / host / "models", dict(KEPT))
        fleet = Fleet(tmp_path, _inventory(tmp_path, manifest), manifest, _env(tmp_path))
        code, result = _play(fleet, "rollout.yml", "-e", "ocr_serial=20")
    assert code == 0, result
    results = _task_results(result, "Converge the store")
    assert all(
        r["installed"] == [{"name": "new/m.gguf", "size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}] for r in results.values()
    )
    assert all((tmp_path / "hosts" / h / "models" / "new" / "m.gguf").read_bytes() == blob for h in HOSTS)
    assert "20 models installed" in _task_results(result, "Bytes freed and models installed over the fleet")["localhost"]["msg"]


def test_ansible_doc_renders_both_modules(tmp_path: Path) -> None:
    env = _env(tmp_path)
    for module in ("ocr.reconcile.model_state", "ocr.reconcile.model_info"):
        done = subprocess.run([str(BIN / "ansible-doc"), "--json", module], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)[module]
        assert {"manifest", "manifest_content", "store", "backend", "license"} <= set(doc["doc"]["options"]), module  # the shared fragment
        assert doc["examples"] and doc["return"], module


def _module(fleet: Fleet, module: str, args: dict[str, Any], *flags: str) -> tuple[str, dict[str, Any]]:
    """One ad-hoc run of a module on localhost: its status and result (from the record callback)."""
    env = {**fleet.env, "ANSIBLE_LOAD_CALLBACK_PLUGINS": "True"}
    command = [str(BIN / "ansible"), "localhost", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}"]
    done = subprocess.run([*command, "-m", module, "-a", json.dumps(args), *flags], capture_output=True, text=True, env=env, timeout=300)
    record = Path(fleet.env["OCR_RECORD_FILE"])
    assert record.exists(), done.stdout + done.stderr
    [entry] = json.loads(record.read_text())["results"]
    record.unlink()
    return entry["status"], entry["result"]


def test_every_refusal_is_a_failure_with_one_line_and_a_reason(fleet: Fleet) -> None:
    from reconciler import open_session

    store = str(fleet.root / "hosts" / "host01" / "models")
    state = "ocr.reconcile.model_state"
    doc = yaml.safe_load(fleet.manifest.read_text())
    missing = {**doc, "models": [*doc["models"], {"name": "absent.gguf"}]}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"manifest_content": missing, "store": store}, "cannot_converge"),
        ({"manifest": str(fleet.manifest), "store": store, "max_delete": 1}, "guard"),
        ({"manifest_content": {**doc, "prune": "maybe"}, "store": store}, "bad_manifest"),
        ({"manifest": str(fleet.root / "nope.yaml"), "store": store}, "bad_manifest"),
    ]
    before = tree_digest(Path(store))
    for args, reason in cases:
        status, result = _module(fleet, state, args)
        assert status == "failed" and result["reason"] == reason and result["changed"] is False, (args, result)
        assert "\n" not in result["msg"] and "Traceback" not in json.dumps(result), result
    with open_session(fleet.manifest, store=store) as session, session.lock():
        status, result = _module(fleet, state, {"manifest": str(fleet.manifest), "store": store})
    assert status == "failed" and result["reason"] == "locked", result
    assert tree_digest(Path(store)) == before  # no refusal moved anything
    status, result = _module(fleet, state, {"manifest": str(fleet.manifest), "store": store}, "--check", "--diff")
    assert status == "ok" and result["changed"] and "phi-2.Q4_K_M.gguf" in result["diff"]["before"]
    assert "phi-2.Q4_K_M.gguf" not in result["diff"]["after"] and tree_digest(Path(store)) == before
    status, info = _module(fleet, "ocr.reconcile.model_info", {"manifest": str(fleet.manifest), "store": store, "host": "h"})
    assert status == "ok" and not info["changed"] and info["ansible_facts"]["ocr_reconcile"]["file_count"] == 8
    snapshot = json.loads(info["snapshot"])
    assert snapshot["kind"] == "snapshot" and snapshot["host"] == "h"
    status, result = _module(fleet, state, {"manifest": str(fleet.manifest), "store": store, "lock_timeout": "nan"})
    assert status == "failed" and result["reason"] == "usage", result


def test_odd_names_and_an_interrupted_run_are_reported_not_lost(fleet: Fleet) -> None:
    """From a hostile pass: a name that is not UTF-8 made Ansible refuse the result after files had moved;
    an interrupted run was finished silently (changed: false) or never finished."""
    store = fleet.root / "hosts" / "host02" / "models"
    odd = os.fsencode(store) + b"/bad\xff\xfename.gguf"
    with open(odd, "wb") as fh:
        fh.write(b"abc")
    args = {"manifest": str(fleet.manifest), "store": str(store)}
    status, checked = _module(fleet, "ocr.reconcile.model_state", args, "--check", "--diff")
    assert status == "ok" and checked["changed"] and "bad\\udcff\\udcfename.gguf" in checked["diff"]["before"], checked
    status, info = _module(fleet, "ocr.reconcile.model_info", args)
    assert status == "ok" and "bad\\udcff\\udcfename.gguf" in info["snapshot"], info["snapshot"][:300]
    crashed = run_cli("apply", "--yes", str(fleet.manifest), "--store", str(store), env={"OCR_RECONCILE_CRASH_AT": "4"})
    assert crashed.returncode < 0  # killed mid-run: a journal is left
    status, checked = _module(fleet, "ocr.reconcile.model_state", args, "--check")
    assert status == "ok" and checked["changed"] and checked["pending_run"]["op"] == "apply", checked
    status, result = _module(fleet, "ocr.reconcile.model_state", args)
    assert status == "ok" and result["changed"] and result["recovered"]["op"] == "apply", result
    assert not (fleet.root / "hosts" / "host02" / "models.ocr-reconcile-journal").exists()
    assert set(tree_digest(store)) == set(KEPT)  # recovered (the odd name too was in the interrupted run)
    status, again = _module(fleet, "ocr.reconcile.model_state", args)
    assert status == "ok" and not again["changed"], again


def test_the_collection_builds_with_ansible_galaxy(tmp_path: Path) -> None:
    env = _env(tmp_path)
    done = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "build", str(ROOT / "ansible"), "--output-path", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert [p.name for p in tmp_path.glob("*.tar.gz")] == ["ocr-reconcile-0.1.0.tar.gz"]
