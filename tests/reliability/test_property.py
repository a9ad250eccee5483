"""Property-based: for generated manifests and stores, plan keeps what it must, apply moves exactly
the plan's delete set, and restore brings the store back byte for byte."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from reconciler import Action, Guards, open_session
from reconciler.read.manifest import Manifest, parse_manifest
from reconciler.read.patterns import glob_match

from .common import originals

TOP = ["a.gguf", "b.gguf", "custom_x.bin", "tok.json", "Model.gguf"]
SUB = ["q/a.gguf", "q/tok.json", "r/custom_y.bin", "r/b.gguf"]
PATTERNS = ["custom_*", "*/tok.json", "q/*", "*.bin", "[ab].gguf"]

names = st.lists(st.sampled_from(TOP + SUB), unique=True, max_size=9)


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, bytes | str], list[str], list[str], bool]:
    on_disk = draw(names)
    store: dict[str, bytes | str] = {}
    for name in on_disk:
        if draw(st.booleans()) and len(store) > 0:
            store[name] = "->" + draw(st.sampled_from(sorted(store)))  # a symlink to another entry
        else:
            store[name] = draw(st.binary(min_size=0, max_size=64))
    declared = draw(st.lists(st.sampled_from(on_disk), unique=True)) if on_disk else []
    whitelist = draw(st.lists(st.sampled_from(PATTERNS), unique=True, max_size=3))
    return store, declared, whitelist, draw(st.booleans())


def _manifest(declared: list[str], whitelist: list[str], prune: bool) -> Manifest:
    doc = {
        "apiVersion": "ocr-reconcile/v1",
        "kind": "ModelState",
        "metadata": {"name": "p"},
        "models": [{"name": n} for n in declared],
        "whitelist": whitelist,
        "prune": prune,
        "in_progress": {"min_age": 0},  # every file is written just before the plan
    }
    return parse_manifest(yaml.safe_dump(doc).encode(), "p.yaml")


def _build(root: Path, layout: dict[str, bytes | str]) -> None:
    for name, content in layout.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            os.symlink(os.path.relpath(root / content[2:], path.parent), path)
        else:
            path.write_bytes(content)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_plan_apply_restore_properties(case: tuple[dict[str, bytes | str], list[str], list[str], bool]) -> None:
    layout, declared, whitelist, prune = case
    manifest = _manifest(declared, whitelist, prune)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "models"
        root.mkdir()
        _build(root, layout)
        before = originals(root)
        with open_session(manifest, root, "directory", backup_dir=Path(tmp) / "backups") as session:
            plan = session.plan(guards=Guards(allow_empty=True))

            # plan never deletes a declared or whitelisted file, and deletes every other one when pruning
            for change in plan.changes:
                protected = change.name in declared or any(glob_match(p, change.name) for p in whitelist)
                if protected:
                    assert change.action is not Action.DELETE, change
                elif change.before is not None and prune:
                    assert change.action is Action.DELETE, change
            assert {c.name for c in plan.changes if c.before is not None} == set(before)

            result = session.apply(plan)  # takes the lock and re-checks the plan itself
            after = originals(root)
            moved = {c.name for c in plan.to_delete}
            assert {m.name for m in result.moved} == moved
            assert set(before) - set(after) == moved and all(after[n] == before[n] for n in after)

            if result.run_id is not None:
                session.restore(session.plan_restore(result.run_id))
            assert originals(root) == before
