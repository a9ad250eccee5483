"""Turn plans, scans, apply results and backup runs into text or JSON. Makes no decisions.

The JSON plan shape is documented in ``docs/plan-format.md``; change ``PLAN_FORMAT_VERSION`` (major
for breaking changes) whenever it changes.
"""

from __future__ import annotations

import json
import time
from typing import Any

from . import __version__
from .apply import ApplyResult, BackupRun, RestoreResult
from .manifest import Manifest
from .plan import Action, Plan, status_of
from .scan import FileFacts, StoreScan

PLAN_FORMAT_VERSION = "1.0"


def format_size(num: int) -> str:
    """Binary units, one decimal: ``512 B``, ``1.5 KiB``, ``7.4 GiB``."""
    if num < 1024:
        return f"{num} B"
    value = float(num)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def backend_line(scan: StoreScan) -> str:
    """Which store was read and how, as one line."""
    return f"Store: {scan.root} (backend: {scan.backend})"


def engine_note(scan: StoreScan) -> str | None:
    """The one-line warning for an unlicensed engine that hid files, else None."""
    if scan.engine_listed is None or not scan.engine_hidden:
        return None
    licence = "unlicensed (evaluation mode)" if not scan.engine_licensed else "licensed"
    return (
        f"Note: the engine is {licence} and listed {scan.engine_listed} of {len(scan.files)} files on disk; "
        "this plan reads the folder itself, so hidden files are planned too."
    )


def summary_line(plan: Plan) -> str:
    """``Plan: N to move to backup (X freed), M kept, K missing`` (+ ignored when any)."""
    line = (
        f"Plan: {len(plan.to_delete)} to move to backup ({format_size(plan.bytes_freed)} freed), "
        f"{len(plan.of(Action.KEEP))} kept, {len(plan.of(Action.MISSING))} missing"
    )
    ignored = len(plan.of(Action.IGNORE))
    return line + (f", {ignored} left in place unmanaged." if ignored else ".")


def plan_text(plan: Plan) -> str:
    """The human plan: header, one line per name, summary. What reviewers read."""
    lines = [f"Manifest: {plan.manifest.source} ({plan.manifest.name})", backend_line(plan.scan)]
    note = engine_note(plan.scan)
    if note:
        lines.append(note)
    lines += [f"Warning: {w}" for w in plan.scan.warnings]
    lines.append("")
    width = max((len(c.name) for c in plan.changes), default=0)
    for change in plan.changes:
        size = format_size(change.size) if change.before is not None else "-"
        lines.append(f"  {change.action.symbol} {change.name:<{width}}  {size:>10}  {change.action.value}: {change.reason}")
    if not plan.changes:
        lines.append("  (the store is empty and the manifest declares no models)")
    lines.append("")
    if not plan.converges:
        lines.append("Cannot converge: declared models are missing; apply will refuse until they are in place.")
    elif not plan.has_changes:
        lines.append("No changes. The store matches the manifest.")
    lines.append(summary_line(plan))
    return "\n".join(lines)


def _facts_json(facts: FileFacts | None) -> dict[str, Any] | None:
    if facts is None:
        return None
    return {
        "kind": facts.kind,
        "size": facts.size,
        "mtime_ns": facts.mtime_ns,
        "inode": facts.inode,
        "link_target": facts.link_target,
        "symlinked_folder": facts.symlinked_folder,
        "engine_visible": facts.engine_visible,
        "sha256": facts.sha256,
    }


def _store_json(scan: StoreScan) -> dict[str, Any]:
    engine = None
    if scan.engine_listed is not None:
        engine = {
            "licensed": scan.engine_licensed,
            "listed": scan.engine_listed,
            "hid_files": scan.engine_hidden > 0,
        }
    return {"path": scan.root, "backend": scan.backend, "engine": engine}


def plan_json(plan: Plan) -> dict[str, Any]:
    """The versioned JSON plan (``docs/plan-format.md``)."""
    return {
        "format_version": PLAN_FORMAT_VERSION,
        "tool_version": __version__,
        "manifest": {"name": plan.manifest.name, "source": plan.manifest.source, "sha256": plan.manifest.sha256},
        "store": _store_json(plan.scan),
        "summary": {
            "delete": len(plan.to_delete),
            "keep": len(plan.of(Action.KEEP)),
            "ignore": len(plan.of(Action.IGNORE)),
            "missing": len(plan.of(Action.MISSING)),
            "bytes_freed": plan.bytes_freed,
            "has_changes": plan.has_changes,
            "converges": plan.converges,
        },
        "changes": [
            {"name": c.name, "actions": [c.action.value], "reason": c.reason, "before": _facts_json(c.before)} for c in plan.changes
        ],
        "warnings": list(plan.scan.warnings),
    }


def list_rows(scan: StoreScan, manifest: Manifest | None) -> list[dict[str, Any]]:
    """One row per entry on disk: name, size, status against the manifest, engine visibility."""
    rows = []
    for facts in scan.files:
        status = status_of(manifest, facts.name) if manifest is not None else "-"
        rows.append(
            {
                "name": facts.name,
                "kind": facts.kind,
                "size": facts.size,
                "status": status,
                "engine_visible": facts.engine_visible,
            }
        )
    return rows


def list_json(scan: StoreScan, manifest: Manifest | None) -> dict[str, Any]:
    return {
        "format_version": PLAN_FORMAT_VERSION,
        "store": _store_json(scan),
        "files": list_rows(scan, manifest),
        "size_on_disk": scan.size_on_disk,
        "warnings": list(scan.warnings),
    }


def list_text(scan: StoreScan, manifest: Manifest | None) -> str:
    rows = list_rows(scan, manifest)
    lines = [backend_line(scan)]
    note = engine_note(scan)
    if note:
        lines.append(note.replace("this plan reads", "this listing reads").replace(", so hidden files are planned too", ""))
    lines += [f"Warning: {w}" for w in scan.warnings]
    width = max([len(r["name"]) for r in rows] + [4])
    lines.append(f"{'NAME':<{width}}  {'SIZE':>10}  {'STATUS':<11}  ENGINE")
    for r in rows:
        engine = {True: "visible", False: "hidden", None: "n/a"}[r["engine_visible"]]
        name = r["name"] + ("@" if r["kind"] == "symlink" else "")
        lines.append(f"{name:<{width}}  {format_size(r['size']):>10}  {r['status']:<11}  {engine}")
    lines.append(f"{len(rows)} files, {format_size(scan.size_on_disk)} on disk")
    return "\n".join(lines)


def apply_text(result: ApplyResult, restore_args: str = "") -> str:
    if result.run_id is None:
        return "No changes. Nothing was moved."
    lines = [f"  moved {m.name} ({format_size(m.size)}, {m.method})" for m in result.moved]
    lines += [f"  skipped {name}: {why}" for name, why in result.skipped]
    lines.append(
        f"Apply complete: {len(result.moved)} moved to backup ({format_size(result.bytes_moved)} freed), "
        f"{len(result.skipped)} skipped. Backup run {result.run_id} in {result.run_dir}."
    )
    lines.append(f"Undo with: ocr-reconcile restore {result.run_id}{restore_args}")
    if result.pruned_runs:
        lines.append(f"Removed old backup runs (backup.keep): {', '.join(result.pruned_runs)}")
    return "\n".join(lines)


def runs_json(runs: list[BackupRun]) -> list[dict[str, Any]]:
    return [
        {
            "run_id": r.run_id,
            "created": _iso(r.created_ns),
            "status": r.status,
            "store": r.store,
            "manifest": r.manifest,
            "files": len(r.entries),
            "size": r.size,
            "entries": list(r.entries),
        }
        for r in runs
    ]


def runs_text(runs: list[BackupRun], backup_root: str) -> str:
    if not runs:
        return f"No backup runs in {backup_root}."
    width = max(len(r.run_id) for r in runs)
    lines = [f"Backups in {backup_root}:", f"{'RUN ID':<{width}}  {'CREATED (UTC)':<20}  {'STATUS':<11}  {'FILES':>5}  {'SIZE':>10}"]
    for r in runs:
        lines.append(f"{r.run_id:<{width}}  {_iso(r.created_ns):<20}  {r.status:<11}  {len(r.entries):>5}  {format_size(r.size):>10}")
    return "\n".join(lines)


def restore_text(run_id: str, result: RestoreResult) -> str:
    lines = [f"  restored {n}" for n in result.restored]
    lines += [f"  already in the store (identical): {n}" for n in result.already_present]
    if result.displaced_run:
        lines.append(f"Files that were in the way were moved to backup run {result.displaced_run}.")
    lines.append(f"Restore of {run_id} complete: {len(result.restored)} restored, {len(result.already_present)} already present.")
    return "\n".join(lines)


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False)


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))
