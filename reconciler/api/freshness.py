"""Saved plans, snapshots and freshness: the manifest a saved plan was made from, whether a fresh plan
still equals the one that was shown, and fleet plans from snapshots (no store is read). Read-only."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..base.errors import ManifestError, StalePlanError, UsageError
from ..decide.differences import fingerprint_differences, install_differences
from ..decide.plan import FleetPlan, Plan, guards_for, make_plan
from ..decide.planfile import SavedPlan, load_snapshot
from ..read.manifest import Manifest, ManifestRef, load_manifest


def manifest_of(saved: SavedPlan) -> Manifest:
    """The manifest a saved plan was made from; StalePlanError if it is gone, invalid or edited."""
    return load_unchanged(saved.plan.manifest)


def load_unchanged(ref: ManifestRef) -> Manifest:
    try:
        manifest = load_manifest(ref.path)
    except ManifestError:
        raise StalePlanError([f"manifest {ref.path} is missing or no longer valid"]) from None
    if manifest.sha256 != ref.sha256:
        raise StalePlanError([f"manifest edited: {ref.path} (sha256 {ref.sha256[:12]}… -> {manifest.sha256[:12]}…)"])
    return manifest


def check_fresh(was: Plan, fresh: Plan, same_backend: bool, subject: str = "saved plan") -> None:
    """Refuse ``was`` when the store changed, or when re-planning would not give the same plan."""
    differences = fingerprint_differences(was, fresh.scan)
    if same_backend and was.scan.backend != fresh.scan.backend:
        differences.append(f"backend changed: {was.scan.backend} -> {fresh.scan.backend}")
    if not differences and [(c.name, c.action) for c in was.changes] != [(c.name, c.action) for c in fresh.changes]:
        differences.append("re-planning gives a different plan (another ocr-reconcile version?); make the plan again")
    differences += install_differences(was, fresh)
    gone = {f.name for f in was.scan.files} - {f.name for f in fresh.scan.files}
    if differences and not fresh.has_changes and gone == {c.name for c in was.to_delete}:
        differences = ["it was applied already: every file it moves is gone from the store, and nothing is left to do"]
    if differences:
        raise StalePlanError(differences, subject)


def same_folder(saved: SavedPlan, root: str, declared: Path | None = None) -> bool:
    """Whether the store folder at ``root`` is the one ``saved`` was made for, by its inode (recorded
    since plan format 1.3) and, when the manifest names its store (``declared``), by that path, without
    scanning it: checked before a lock file is made beside it. False for an older document, which must
    then be verified whole. An inode tells a replaced folder; it does not authenticate a plan."""
    if declared is not None and os.path.realpath(declared) != root:
        return False
    try:
        inode = os.stat(root, follow_symlinks=False).st_ino
    except OSError:
        return False
    return saved.plan.scan.root_inode is not None and saved.plan.scan.root == root and inode == saved.plan.scan.root_inode


def plan_fleet(
    manifest: Manifest | str | os.PathLike[str],
    snapshots: Sequence[str | os.PathLike[str]],
    max_delete: int | None = None,
    allow_empty: bool = False,
) -> FleetPlan:
    """One plan per snapshot file (no store is read): the fleet-wide plan for a pull request.
    ``max_delete`` applies on top of the manifest's limit (the stricter wins)."""
    loaded = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    guards = guards_for(loaded, max_delete, allow_empty)
    scans, seen = [], dict[str | None, str]()
    for path in dict.fromkeys(os.fspath(p) for p in snapshots):  # a file given twice counts once
        scan = load_snapshot(path).scan
        if scan.host in seen:
            raise UsageError(f"snapshots {seen[scan.host]} and {path} are both of host {scan.host!r}; a fleet plan has one per host")
        seen[scan.host] = path
        scans.append(scan)
    return FleetPlan(tuple(make_plan(loaded, scan, guards) for scan in scans))
