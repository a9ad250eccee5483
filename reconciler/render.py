"""Turn plans, scans, apply results and backup runs into text, Markdown or JSON. Makes no decisions.

Plans are rendered from their *document* form (:func:`plan_doc`, the versioned JSON shape in
``docs/plan-format.md`` and ``schemas/plan.schema.json``), so a live plan, a saved plan file and a
fleet plan from snapshots all render through the same code. Change ``PLAN_FORMAT_VERSION`` (major
for breaking changes) whenever the document changes.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from . import __version__
from .apply import ApplyResult, BackupRun, Recovery, RestoreResult
from .manifest import INVISIBLE, Manifest
from .plan import Action, Plan, status_of
from .scan import FileFacts, StoreScan

PLAN_FORMAT_VERSION = "1.0"
FORMATS = ("text", "json", "markdown")
SYMBOLS = {a.value: a.symbol for a in Action}
_COLOURS = {"delete": "31", "keep": "32", "missing": "33;1", "ignore": "2"}
FOLD_AFTER = 20  # Markdown tables longer than this are folded into <details>


def use_colour(stream_isatty: bool) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    return stream_isatty and not os.environ.get("NO_COLOR")


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


# -- documents ---------------------------------------------------------------------------------


def facts_doc(facts: FileFacts) -> dict[str, Any]:
    """One scanned entry: its identity (the plan's fingerprint) and what the engine showed."""
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


def store_doc(scan: StoreScan) -> dict[str, Any]:
    engine = None
    if scan.engine_listed is not None:
        engine = {"licensed": scan.engine_licensed, "listed": scan.engine_listed, "hid_files": scan.engine_hidden > 0}
    return {"path": scan.root, "backend": scan.backend, "engine": engine}


def plan_doc(plan: Plan, host: str | None = None) -> dict[str, Any]:
    """The versioned plan document (``docs/plan-format.md``). ``host`` names a snapshot's host."""
    return {
        "format_version": PLAN_FORMAT_VERSION,
        "tool_version": __version__,
        "host": host,
        "manifest": {
            "name": plan.manifest.name,
            "source": plan.manifest.source,
            "path": os.path.abspath(plan.manifest.source),
            "sha256": plan.manifest.sha256,
        },
        "store": store_doc(plan.scan),
        "summary": {
            "delete": len(plan.to_delete),
            "keep": len(plan.of(Action.KEEP)),
            "ignore": len(plan.of(Action.IGNORE)),
            "missing": len(plan.of(Action.MISSING)),
            "bytes_freed": plan.bytes_freed,
            "has_changes": plan.has_changes,
            "converges": plan.converges,
        },
        "guards": {
            "max_delete": plan.guards.max_delete,
            "max_delete_bytes": plan.guards.max_delete_bytes,
            "allow_empty": plan.guards.allow_empty,
            "violations": list(plan.violations),
        },
        "changes": [
            {
                "name": c.name,
                "actions": [c.action.value],
                "reason": c.reason,
                "before": facts_doc(c.before) if c.before is not None else None,
            }
            for c in plan.changes
        ],
        "warnings": list(plan.scan.warnings),
    }


def fleet_doc(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Plans for many hosts (one per snapshot), in one document."""
    return {"format_version": PLAN_FORMAT_VERSION, "tool_version": __version__, "kind": "fleet-plan", "hosts": docs}


# -- plan: text --------------------------------------------------------------------------------


def safe(name: str) -> str:
    """A name fit for one line of output: control and invisible characters escaped (\\n, \\u202e…)."""
    if name.isprintable() and not any(c in INVISIBLE for c in name):
        return name
    return "".join(c if c.isprintable() and c not in INVISIBLE else ascii(c)[1:-1] for c in name)


def _paint(text: str, action: str, colour: bool) -> str:
    return f"\x1b[{_COLOURS[action]}m{text}\x1b[0m" if colour else text


def engine_note(store: dict[str, Any], files: int, what: str = "plan") -> str | None:
    """The one-line warning for an engine that hid files, else None."""
    engine = store.get("engine")
    if not engine or not engine["hid_files"]:
        return None
    licence = "unlicensed (evaluation mode)" if not engine["licensed"] else "licensed"
    return f"Note: the engine is {licence} and listed {engine['listed']} of {files} files on disk; this {what} reads the folder itself."


def summary_line(doc: dict[str, Any]) -> str:
    """``Plan: N to move to backup (X freed), M kept, K missing`` (+ unmanaged left in place)."""
    s = doc["summary"]
    line = f"Plan: {s['delete']} to move to backup ({format_size(s['bytes_freed'])} freed), {s['keep']} kept, {s['missing']} missing"
    return line + (f", {s['ignore']} left in place unmanaged." if s["ignore"] else ".")


def _outcome_lines(doc: dict[str, Any]) -> list[str]:
    s = doc["summary"]
    lines = [f"Guard: {v}; apply will refuse this plan." for v in doc["guards"]["violations"]]
    if not s["converges"]:
        lines.append("Cannot converge: declared models are missing; apply will refuse until they are in place.")
    elif not s["has_changes"]:
        lines.append("No changes. The store matches the manifest.")
    return lines


def plan_text(doc: dict[str, Any], colour: bool = False) -> str:
    """The human plan: header, one line per name, summary. What a reviewer reads in a terminal."""
    store = doc["store"]
    files = sum(1 for c in doc["changes"] if c["before"] is not None)
    header = f"Manifest: {doc['manifest']['source']} ({doc['manifest']['name']})"
    lines = [header if not doc.get("host") else f"Host: {doc['host']}  {header}"]
    lines.append(f"Store: {store['path']} (backend: {store['backend']})")
    note = engine_note(store, files)
    if note:
        lines.append(note)
    lines += [f"Warning: {w}" for w in doc["warnings"]]
    lines.append("")
    width = max((len(c["name"]) for c in doc["changes"]), default=0)
    for change in doc["changes"]:
        action = change["actions"][0]
        size = format_size(change["before"]["size"]) if change["before"] else "-"
        row = f"  {SYMBOLS[action]} {safe(change['name']):<{width}}  {size:>10}  {action}: {safe(change['reason'])}"
        lines.append(_paint(row, action, colour))
    if not doc["changes"]:
        lines.append("  (the store is empty and the manifest declares no models)")
    lines.append("")
    lines += _outcome_lines(doc)
    lines.append(summary_line(doc))
    return "\n".join(lines)


# -- plan: Markdown ------------------------------------------------------------------------------


def markdown_summary(doc: dict[str, Any]) -> str:
    """``3 models move to backup (7.4 GiB freed), 12 kept, 0 missing`` — the PR comment's first line."""
    s = doc["summary"]
    noun = "model moves" if s["delete"] == 1 else "models move"
    line = f"{s['delete']} {noun} to backup ({format_size(s['bytes_freed'])} freed), {s['keep']} kept, {s['missing']} missing"
    return line + (f", {s['ignore']} unmanaged left in place" if s["ignore"] else "")


def _md(text: str) -> str:
    """Escape text for a Markdown table cell."""
    return safe(text).replace("\\", "\\\\").replace("|", "\\|").replace("`", "'").replace("<", "&lt;").replace("\n", " ")


def _md_table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| | Name | Size | Action | Why |", "|---|---|---:|---|---|"]
    for c in rows:
        action = c["actions"][0]
        size = format_size(c["before"]["size"]) if c["before"] else "—"
        out.append(f"| `{SYMBOLS[action]}` | `{_md(c['name'])}` | {size} | {action} | {_md(c['reason'])} |")
    return out


def _folded(title: str, body: list[str], open_: bool) -> list[str]:
    if open_:
        return body
    return [f"<details><summary>{title}</summary>", "", *body, "", "</details>"]


def _md_details(doc: dict[str, Any]) -> list[str]:
    store = doc["store"]
    files = sum(1 for c in doc["changes"] if c["before"] is not None)
    lines = [
        f"Manifest `{_md(doc['manifest']['source'])}` ({_md(doc['manifest']['name'])}) · store `{_md(store['path'])}` ({store['backend']})",
        "",
    ]
    note = engine_note(store, files)
    lines += [f"> {note}", ""] if note else []
    notices = [f"> **Warning:** {_md(w)}" for w in doc["warnings"]] + [f"> **{_md(line)}**" for line in _outcome_lines(doc)]
    lines += [*notices, ""] if notices else []
    changes = [c for c in doc["changes"] if c["actions"][0] in ("delete", "missing")]
    unchanged = [c for c in doc["changes"] if c["actions"][0] not in ("delete", "missing")]
    if changes:
        lines += _folded(f"{len(changes)} changes", _md_table(changes), open_=len(changes) <= FOLD_AFTER)
        lines.append("")
    if unchanged:
        lines += _folded(f"{len(unchanged)} files unchanged (kept or left in place)", _md_table(unchanged), open_=False)
    return lines


def plan_markdown(doc: dict[str, Any]) -> str:
    """A pull-request comment: one summary line, then the changes; long lists folded."""
    title = f"**{doc['host']}**: " if doc.get("host") else ""
    return "\n".join([title + markdown_summary(doc), "", *_md_details(doc)]).rstrip() + "\n"


def fleet_markdown(fleet: dict[str, Any]) -> str:
    """One summary row per host, then each host's details folded."""
    hosts = fleet["hosts"]
    moving = sum(h["summary"]["delete"] for h in hosts)
    freed = sum(h["summary"]["bytes_freed"] for h in hosts)
    changed = sum(1 for h in hosts if h["summary"]["has_changes"] or not h["summary"]["converges"])
    lines = [
        f"{moving} models move to backup ({format_size(freed)} freed) across {changed} of {len(hosts)} hosts",
        "",
        "| Host | To backup | Freed | Kept | Missing | Guards |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for h in hosts:
        s = h["summary"]
        guard = "⛔ " + _md("; ".join(h["guards"]["violations"])) if h["guards"]["violations"] else "ok"
        missing = f"**{s['missing']}**" if s["missing"] else "0"
        lines.append(f"| `{_md(h['host'] or '?')}` | {s['delete']} | {format_size(s['bytes_freed'])} | {s['keep']} | {missing} | {guard} |")
    lines.append("")
    for h in hosts:
        body = _md_details(h)
        lines += [f"<details><summary>{_md(h['host'] or '?')}: {markdown_summary(h)}</summary>", "", *body, "", "</details>", ""]
    return "\n".join(lines).rstrip() + "\n"


def fleet_text(fleet: dict[str, Any], colour: bool = False) -> str:
    return "\n\n".join(plan_text(h, colour) for h in fleet["hosts"])


def render_plan(doc: dict[str, Any], fmt: str, colour: bool = False) -> str:
    """A plan or fleet-plan document in ``fmt`` (text, json, markdown)."""
    fleet = doc.get("kind") == "fleet-plan"
    if fmt == "json":
        return dumps(doc)
    if fmt == "markdown":
        return fleet_markdown(doc) if fleet else plan_markdown(doc)
    return fleet_text(doc, colour) if fleet else plan_text(doc, colour)


# -- list ---------------------------------------------------------------------------------------


def list_doc(scan: StoreScan, manifest: Manifest | None) -> dict[str, Any]:
    """What the store holds: one row per entry with its status against the manifest."""
    files = [
        {
            "name": f.name,
            "kind": f.kind,
            "size": f.size,
            "status": status_of(manifest, f.name) if manifest is not None else "-",
            "engine_visible": f.engine_visible,
        }
        for f in scan.files
    ]
    return {
        "format_version": PLAN_FORMAT_VERSION,
        "store": store_doc(scan),
        "files": files,
        "size_on_disk": scan.size_on_disk,
        "warnings": list(scan.warnings),
    }


_ENGINE_WORDS = {True: "visible", False: "hidden", None: "n/a"}


def list_text(doc: dict[str, Any]) -> str:
    rows = doc["files"]
    lines = [f"Store: {doc['store']['path']} (backend: {doc['store']['backend']})"]
    note = engine_note(doc["store"], len(rows), "listing")
    lines += [note] if note else []
    lines += [f"Warning: {w}" for w in doc["warnings"]]
    width = max([len(r["name"]) + 1 for r in rows] + [4])
    lines.append(f"{'NAME':<{width}}  {'SIZE':>10}  {'STATUS':<11}  ENGINE")
    for r in rows:
        name = safe(r["name"]) + ("@" if r["kind"] == "symlink" else "")
        lines.append(f"{name:<{width}}  {format_size(r['size']):>10}  {r['status']:<11}  {_ENGINE_WORDS[r['engine_visible']]}")
    lines.append(f"{len(rows)} files, {format_size(doc['size_on_disk'])} on disk")
    return "\n".join(lines)


def list_markdown(doc: dict[str, Any]) -> str:
    rows = doc["files"]
    lines = [
        f"{len(rows)} files, {format_size(doc['size_on_disk'])} on disk in `{_md(doc['store']['path'])}` ({doc['store']['backend']})",
        "",
    ]
    note = engine_note(doc["store"], len(rows), "listing")
    lines += [f"> {note}", ""] if note else []
    table = ["| Name | Size | Status | Engine |", "|---|---:|---|---|"]
    for r in rows:
        table.append(f"| `{_md(r['name'])}` | {format_size(r['size'])} | {r['status']} | {_ENGINE_WORDS[r['engine_visible']]} |")
    lines += _folded(f"{len(rows)} files", table, open_=len(rows) <= FOLD_AFTER)
    return "\n".join(lines).rstrip() + "\n"


def render_list(doc: dict[str, Any], fmt: str) -> str:
    return dumps(doc) if fmt == "json" else list_markdown(doc) if fmt == "markdown" else list_text(doc)


# -- apply, backups, restore ---------------------------------------------------------------------


def apply_text(result: ApplyResult, restore_args: str = "") -> str:
    if result.run_id is None:
        return "No changes. Nothing was moved."
    lines = [f"  moved {safe(m.name)} ({format_size(m.size)}, {m.method})" for m in result.moved]
    lines += [f"  skipped {safe(name)}: {why}" for name, why in result.skipped]
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
            "created": iso_time(r.created_ns),
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
        lines.append(f"{r.run_id:<{width}}  {iso_time(r.created_ns):<20}  {r.status:<11}  {len(r.entries):>5}  {format_size(r.size):>10}")
    return "\n".join(lines)


def restore_text(run_id: str, result: RestoreResult) -> str:
    lines = [f"  restored {n}" for n in result.restored]
    lines += [f"  already in the store (identical): {n}" for n in result.already_present]
    if result.displaced_run:
        lines.append(f"Files that were in the way were moved to backup run {result.displaced_run}.")
    lines.append(f"Restore of {run_id} complete: {len(result.restored)} restored, {len(result.already_present)} already present.")
    return "\n".join(lines)


def recovery_text(result: Recovery) -> str:
    """One paragraph on what recovery found and finished."""
    if result.op == "torn":
        return "Recovered: an interrupted run had not moved anything yet; its journal was removed."
    lines = [
        f"Recovered interrupted {result.op} run {result.run_id}: {len(result.already_done)} moves had completed, "
        f"{len(result.finished)} finished now, {len(result.skipped)} skipped."
    ]
    lines += [f"  finished {name}" for name in result.finished]
    lines += [f"  skipped {name}: {why}" for name, why in result.skipped]
    return "\n".join(lines)


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def iso_time(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))
