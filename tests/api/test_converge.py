"""Issue 17: the plan is all that apply reads, and one apply sequence (Session.converge) serves every
front end: lock -> recover -> plan once under the lock -> freshness -> applicability -> confirm -> apply."""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import reconciler
from reconciler import GuardError, Proposal, StalePlanError, load_plan, open_session, save_plan
from reconciler.api.apply import apply_plan
from reconciler.base.layout import lock_path
from reconciler.decide.planfile import checksum

from ..conftest import LLAMA, run_cli, tree_digest

BLOB = b"a model from the mirror\n" * 1000


def _setup(tmp_path: Path, **extra: Any) -> tuple[Path, Path]:
    store, mirror = tmp_path / "models", tmp_path / "mirror"
    store.mkdir()
    mirror.mkdir()
    (store / LLAMA).write_bytes(b"declared and here")
    (store / "stale.bin").write_bytes(b"undeclared")
    (mirror / "new.gguf").write_bytes(BLOB)
    doc = {
        "apiVersion": "ocr-reconcile/v1",
        "kind": "ModelState",
        "metadata": {"name": "converge"},
        "store": {"backend": "directory", "path": str(store)},
        "models": [{"name": LLAMA}, {"name": "new.gguf", "sha256": hashlib.sha256(BLOB).hexdigest(), "size": len(BLOB)}],
        "sources": {"mirror": str(mirror), "retries": 1, "parallel": 1},
        "in_progress": {"min_age": 0},
        **extra,
    }
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    return store, manifest


def _saved_plan(tmp_path: Path, manifest: Path) -> Path:
    """``plan MANIFEST --out plan.json``, through the library."""
    saved = tmp_path / "plan.json"
    with open_session(manifest) as session:
        save_plan(saved, session.plan())
    return saved


def _resave(path: Path, edit: Any) -> None:
    """Edit a saved plan document as an attacker would: the checksum recomputed."""
    doc = json.loads(path.read_text())
    edit(doc)
    doc["checksum"] = checksum(doc)
    path.write_text(json.dumps(doc))


def test_apply_plan_takes_no_manifest_and_installs_what_the_plan_carries(tmp_path: Path) -> None:
    """The manifest is gone before apply: the plan's source, pin, size and download settings suffice."""
    store, manifest = _setup(tmp_path)
    assert "manifest" not in inspect.signature(apply_plan).parameters
    with open_session(manifest) as session, session.lock() as held:
        plan = session.plan()
        [install] = plan.installs
        assert (install.pin, install.download) == (hashlib.sha256(BLOB).hexdigest(), len(BLOB))
        assert install.source == f"file://{tmp_path / 'mirror' / 'new.gguf'}"
        assert plan.sources is not None and (plan.sources.retries, plan.sources.parallel) == (1, 1)
        manifest.unlink()
        result = apply_plan(plan, session.backup_root(), session.retention(), held.lock)
    assert [e.name for e in result.install.installed] == ["new.gguf"] and [m.name for m in result.moved] == ["stale.bin"]
    assert (store / "new.gguf").read_bytes() == BLOB and not (store / "stale.bin").exists()


def test_the_saved_plan_document_carries_pins_and_settings_and_older_formats_still_read(tmp_path: Path) -> None:
    _, manifest = _setup(tmp_path)
    saved = _saved_plan(tmp_path, manifest)
    doc = json.loads(saved.read_text())
    [change] = [c for c in doc["changes"] if c["name"] == "new.gguf"]
    assert doc["format_version"] == "1.3" and change["pin"] == hashlib.sha256(BLOB).hexdigest()
    assert doc["sources"] == {
        "mirror": f"file://{tmp_path / 'mirror'}",
        "timeout_s": 30,
        "retries": 1,
        "parallel": 1,
        "on_mismatch": "report",
    }
    del doc["sources"]
    del change["pin"]
    del doc["store"]["inode"]
    doc["format_version"] = "1.2"
    doc["checksum"] = checksum(doc)
    saved.write_text(json.dumps(doc))
    old = load_plan(saved)
    assert old.plan.sources is None and old.plan.installs[0].pin is None  # not recorded: not compared
    with open_session(saved=old) as session:  # verified whole (no inode to check), then applied
        done = session.converge()
    assert done.result is not None and [e.name for e in done.result.install.installed] == ["new.gguf"]


def test_a_saved_plan_whose_install_was_edited_is_stale_and_installs_nothing(tmp_path: Path) -> None:
    """A pin, a source or a size that differs from what the saved plan showed: nothing is applied."""
    store, manifest = _setup(tmp_path)
    saved = _saved_plan(tmp_path, manifest)
    original = json.loads(saved.read_text())
    edits = {"pin": "0" * 64, "source": "file:///elsewhere/new.gguf", "download": 5}
    before = tree_digest(store)
    for field, value in edits.items():
        doc = json.loads(json.dumps(original))
        [change] = [c for c in doc["changes"] if c["name"] == "new.gguf"]
        change[field] = value
        doc["checksum"] = checksum(doc)
        saved.write_text(json.dumps(doc))
        with pytest.raises(StalePlanError) as caught, open_session(saved=load_plan(saved)) as session:
            session.converge()
        assert any(line.startswith(f"{ {'download': 'size'}.get(field, field) } changed: new.gguf") for line in caught.value.differences)
        saved.write_text(json.dumps(original))
        assert tree_digest(store) == before, field
    assert not (store / "new.gguf").exists()


def test_converge_plans_once_under_the_lock_and_asks_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One scan and one plan; show sees the proposal before confirm; the lock is held while confirm runs."""
    from reconciler.read.scan import scan_store

    store, manifest = _setup(tmp_path)
    scans: list[str] = []

    def counted(*args: Any, **kwargs: Any) -> Any:  # the real scan, counted
        scans.append("scan")
        return scan_store(*args, **kwargs)

    monkeypatch.setattr("reconciler.api.session.scan_store", counted)
    seen: list[str] = []

    def confirm(proposal: Proposal) -> bool:
        seen.append("confirm")
        assert lock_path(str(store)).exists() and proposal.recovery is None and not proposal.check
        assert [c.name for c in proposal.plan.to_delete] == ["stale.bin"]
        return True

    with open_session(manifest) as session:
        done = session.converge(confirm, show=lambda p: seen.append("show"))
    assert scans == ["scan"] and seen == ["show", "confirm"]
    assert done.changed and done.result is not None and [m.name for m in done.result.moved] == ["stale.bin"]


def test_declining_or_refusing_changes_nothing(tmp_path: Path) -> None:
    store, manifest = _setup(tmp_path)
    before = tree_digest(store)
    with open_session(manifest) as session:
        declined = session.converge(lambda proposal: False)
    assert declined.result is None and not declined.changed and tree_digest(store) == before
    shown: list[Proposal] = []
    with pytest.raises(GuardError), open_session(manifest) as session:
        session.converge(lambda proposal: pytest.fail("a refused plan is not confirmed"), show=shown.append, max_delete=0)
    assert len(shown) == 1 and shown[0].plan.violations and tree_digest(store) == before


def test_check_mode_takes_no_lock_and_reports_the_pending_run(tmp_path: Path) -> None:
    """Ansible's check mode: the same sequence, read-only. An interrupted run is reported, not finished."""
    _, manifest = _setup(tmp_path)
    killed = run_cli("apply", str(manifest), "--yes", env={"OCR_RECONCILE_CRASH_AT": "2"})
    assert killed.returncode == -9
    before = tree_digest(tmp_path)
    with open_session(manifest, hash_cache="read") as session:
        done = session.converge(lambda proposal: pytest.fail("check mode asks nothing"), check=True)
    assert done.result is None and done.proposal.check and done.proposal.pending is not None
    assert done.proposal.pending.op == "apply" and tree_digest(tmp_path) == before
    report = reconciler.converged_report(done)
    assert report["changed"] and report["pending_run"]["op"] == "apply" and "recovered" not in report


def test_the_modules_engine_note_is_the_clis_and_says_which_licence() -> None:
    """One note for every front end: a licensed engine that hid files is not called unlicensed."""
    from reconciler.read.manifest import ManifestRef
    from reconciler.read.scan import FileFacts, StoreScan
    from reconciler.render.plans import engine_note

    files = (FileFacts("a.gguf", "file", 1, 0, 1, 0, engine_visible=True), FileFacts("b.gguf", "file", 1, 0, 2, 0, engine_visible=False))
    for licensed, word in ((False, "unlicensed (evaluation mode)"), (True, "licensed")):
        scan = StoreScan("/s", "aspose", files, engine_licensed=licensed, engine_listed=1)
        plan = reconciler.Plan(ManifestRef("m", "m.yaml", "/m.yaml", "0" * 64, 1), scan, ())
        note = reconciler.plan_report(plan)["engine_note"]
        assert note == engine_note(scan) and f"the engine is {word} and listed 1 of 2 files" in note


def test_a_plan_read_from_a_document_cannot_lift_the_manifests_guards(tmp_path: Path) -> None:
    """From a hostile pass: the reviewed plan's guards came from the file; now the manifest's apply."""
    store, manifest = _setup(tmp_path, limits={"max_delete": 0})
    saved = _saved_plan(tmp_path, manifest)
    _resave(saved, lambda doc: doc["guards"].update(max_delete=None, allow_empty=True, violations=[], violation_details=[]))
    before = tree_digest(store)
    with pytest.raises(GuardError), open_session(manifest) as session:
        session.converge(reviewed=load_plan(saved).plan)
    assert tree_digest(store) == before


def test_a_format_13_plan_must_carry_its_installs_and_their_reasons_are_compared(tmp_path: Path) -> None:
    """A 1.3 document stripped of a pin, or with a reason that names another source, is refused."""
    from reconciler import PlanFileError

    store, manifest = _setup(tmp_path)
    saved = _saved_plan(tmp_path, manifest)
    original = saved.read_text()

    def install(doc: dict[str, Any]) -> dict[str, Any]:
        return next(c for c in doc["changes"] if c["name"] == "new.gguf")

    _resave(saved, lambda doc: install(doc).pop("pin"))
    with pytest.raises(PlanFileError, match=r"install of 'new\.gguf' lacks pin"):
        load_plan(saved)
    saved.write_text(original)
    _resave(saved, lambda doc: doc.update(sources=None))
    with pytest.raises(PlanFileError, match="no download settings"):
        load_plan(saved)
    saved.write_text(original)
    _resave(saved, lambda doc: install(doc).update(reason="absent: to install from https://trusted.example/new.gguf"))
    with pytest.raises(StalePlanError, match=r"reason changed: new\.gguf"), open_session(saved=load_plan(saved)) as session:
        session.converge()
    assert not (store / "new.gguf").exists()


def test_a_plan_naming_another_folder_makes_no_file_beside_it(tmp_path: Path) -> None:
    """Neither a lock file (even with that folder's inode forged) nor a hash cache (its files hashed read-only)."""
    _, manifest = _setup(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / LLAMA).write_bytes(b"someone else's model")
    (victim / "new.gguf").write_bytes(b"pinned by the manifest: hashed, read-only")
    saved = _saved_plan(tmp_path, manifest)
    for inode in (victim.stat().st_ino, None):
        _resave(saved, lambda doc, inode=inode: doc["store"].update(path=str(victim), inode=inode))
        with pytest.raises(StalePlanError), open_session(saved=load_plan(saved)) as session:
            session.converge()
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("victim")) == ["victim"]


def test_apply_plan_refuses_a_plan_read_from_a_document_before_making_anything(tmp_path: Path) -> None:
    store, manifest = _setup(tmp_path)
    saved = tmp_path / "plan.json"
    with open_session(manifest) as session, session.lock() as held:
        save_plan(saved, session.plan())
        with pytest.raises(reconciler.UsageError, match="read from a document"):
            apply_plan(load_plan(saved).plan, session.backup_root(), session.retention(), held.lock)
    assert not session.backup_root().exists() and (store / "stale.bin").exists()
