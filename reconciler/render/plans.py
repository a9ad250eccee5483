"""Turn values (plans, scans, apply results, backup runs, restore plans) into text, Markdown or JSON.

Part of the CLI layer: nothing below ``cli.py`` imports it, and it makes no decisions. Every symbol,
colour and summary count comes from :class:`~.plan.Action`'s properties; JSON comes from the
versioned documents of ``planfile.py``. Hints that name command-line flags live here, not in the core.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TextIO

from ..base.errors import Violation
from ..base.jsonout import json_text, write_json
from ..decide.plan import Action, FleetPlan, Plan, Summary, status_of
from ..decide.planfile import PLAN_FORMAT_VERSION, fleet_doc, plan_doc, store_doc
from ..read.manifest import Manifest
from ..read.patterns import INVISIBLE
from ..read.scan import StoreScan

FORMATS = ("text", "json", "markdown")
FOLD_AFTER = 20  # Markdown tables longer than this are folded into <details>


def use_colour(stream_isatty: bool, mode: str = "auto") -> bool:
    """``always``, ``never``, or (``auto``) only on a terminal and never when NO_COLOR is set
    (https://no-color.org: it wins over auto, not over an explicit ``always``)."""
    if mode != "auto":
        return mode == "always"
    return stream_isatty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def count(n: int, word: str) -> str:
    """``1 file``, ``2 files``: a count with its noun in the right number."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


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


def dumps(data: Any, compact: bool = False) -> str:
    return json_text(data, compact)


def safe(name: str) -> str:
    """A name fit for one line of output: control and invisible characters escaped (\\n, \\u202e…)."""
    if name.isprintable() and not any(c in INVISIBLE for c in name):
        return name
    return "".join(c if c.isprintable() and c not in INVISIBLE else ascii(c)[1:-1] for c in name)


def violation_text(violation: Violation) -> str:
    """A broken guard, with how to lift it from the command line where a flag can."""
    return violation.message + ("; pass --allow-empty if that is meant" if violation.guard.lifted_by_allow_empty else "")


def _paint(text: str, action: Action, colour: bool) -> str:
    return f"\x1b[{action.props.colour}m{text}\x1b[0m" if colour else text


def engine_note(scan: StoreScan, what: str = "plan") -> str | None:
    """The one-line warning for an engine that hid files, else None."""
    if scan.engine_listed is None or not scan.engine_hidden:
        return None
    licence = "unlicensed (evaluation mode)" if not scan.engine_licensed else "licensed"
    listed = f"listed {scan.engine_listed} of {len(scan.files)} files on disk"
    reader = f"the snapshot of {scan.host} read" if scan.host else f"this {what} reads"
    return f"Note: the engine is {licence} and {listed}; {reader} the folder itself."


def counts_text(summary: Summary, labels: dict[Action, str] | None = None, unsized: bool = False) -> str:
    """``N to move to backup (X), M kept, K missing`` plus the counts that are not zero."""
    parts = []
    for action, n in summary.counts:
        if n or action.props.always_counted:
            label = (labels or {}).get(action, action.props.label)
            if action is Action.DELETE:
                label += f" ({format_size(summary.bytes_freed)})"
            elif action is Action.INSTALL:  # the bytes the manifest's sizes announce; some may be unknown
                known = format_size(summary.bytes_to_download)
                label += (
                    f" ({known}{', and sizes not given' if unsized else ''})"
                    if summary.bytes_to_download or not unsized
                    else " (sizes not given)"
                )
            parts.append(f"{n} {label}")
    return ", ".join(parts)


def summary_line(plan: Plan) -> str:
    """``Plan: N to move to backup (X), M kept, K missing`` (+ the other counts)."""
    return f"Plan: {counts_text(plan.summary, unsized=any(c.download is None for c in plan.installs))}."


def outcome_lines(plan: Plan) -> list[str]:
    lines = [f"Guard: {violation_text(v)}; apply will refuse this plan." for v in plan.violations]
    if not plan.converges:
        why = " or ".join(dict.fromkeys("are missing" if c.action is Action.MISSING else "differ from their pin" for c in plan.blocking))
        lines.append(f"Cannot converge: declared models {why}; apply will refuse until they are in place.")
    elif not plan.has_changes:
        lines.append("No changes. The store matches the manifest.")
    return lines


# One word for what happens: a "delete" (its name in JSON) moves the file to a backup run.
_VERB = {Action.DELETE: "to backup"}


@dataclass(frozen=True)
class View:
    """How a plan is shown as text: colour, whether unchanged (kept) entries are listed, and
    ``quiet`` (the outcome and summary lines only)."""

    colour: bool = False
    show_unchanged: bool = False
    quiet: bool = False
    on_terminal: bool = True  # False: JSON for a machine, compact (a 100,000-file plan is 2 s less to indent)


def plan_text(plan: Plan, view: View = View()) -> str:
    """The human plan: header, one line per change, summary; kept entries as a count unless
    ``view.show_unchanged`` (as ``terraform plan`` does). What a reviewer reads in a terminal."""
    if view.quiet:
        host = f"{plan.scan.host}: " if plan.scan.host else ""
        return "\n".join(host + line for line in [*outcome_lines(plan), summary_line(plan)])
    scan = plan.scan
    header = f"Manifest: {plan.manifest.source} ({plan.manifest.name})"
    lines = [header if not scan.host else f"Host: {scan.host}  {header}", f"Store: {scan.root} (backend: {scan.backend})"]
    note = engine_note(scan)
    lines += [note] if note else []
    lines += [f"Warning: {w}" for w in scan.warnings]
    lines.append("")
    shown = [c for c in plan.changes if view.show_unchanged or c.action is not Action.KEEP]
    width = max((len(safe(c.name)) for c in shown), default=0)
    for change in shown:
        size = format_size(change.before.size) if change.before else format_size(change.download) if change.download is not None else "-"
        verb = _VERB.get(change.action, change.action.value)
        row = f"  {change.action.symbol} {safe(change.name):<{width}}  {size:>10}  {verb}: {safe(change.reason)}"
        lines.append(_paint(row, change.action, view.colour))
    hidden = len(plan.changes) - len(shown)
    if hidden:
        lines.append(f"  ({count(hidden, 'unchanged file')} not listed; --show-unchanged lists them)")
    if not plan.changes:
        lines.append("  (the store is empty and the manifest declares no models)")
    lines += ["", *outcome_lines(plan), summary_line(plan)]
    return "\n".join(lines)


# -- plan: Markdown ------------------------------------------------------------------------------

_MD_LABELS = {Action.IGNORE: "unmanaged left in place"}


def markdown_summary(plan: Plan) -> str:
    """``3 models move to backup (7.4 GiB), 12 kept, 0 missing`` — the PR comment's first line."""
    moving = len(plan.to_delete)
    noun = "model moves" if moving == 1 else "models move"
    return counts_text(plan.summary, {Action.DELETE: f"{noun} to backup", **_MD_LABELS})


def _md(text: str) -> str:
    """Escape text for a Markdown table cell."""
    return safe(text).replace("\\", "\\\\").replace("|", "\\|").replace("`", "'").replace("<", "&lt;").replace("\n", " ")


def _md_table(plan: Plan, drift: bool) -> list[str]:
    out = ["| | Name | Size | Action | Why |", "|---|---|---:|---|---|"]
    for c in plan.changes:
        if c.action.is_drift is drift:
            size = format_size(c.before.size) if c.before else format_size(c.download) if c.download is not None else "—"
            out.append(f"| `{c.action.symbol}` | `{_md(c.name)}` | {size} | {_VERB.get(c.action, c.action.value)} | {_md(c.reason)} |")
    return out


def _folded(title: str, body: list[str], open_: bool) -> list[str]:
    return body if open_ else [f"<details><summary>{title}</summary>", "", *body, "", "</details>"]


def _md_details(plan: Plan) -> list[str]:
    scan = plan.scan
    lines = [
        f"Manifest `{_md(plan.manifest.source)}` ({_md(plan.manifest.name)}) · store `{_md(scan.root)}` ({scan.backend})",
        "",
    ]
    note = engine_note(scan)
    lines += [f"> {note}", ""] if note else []
    notices = [f"> **Warning:** {_md(w)}" for w in scan.warnings] + [f"> **{_md(line)}**" for line in outcome_lines(plan)]
    lines += [*notices, ""] if notices else []
    drift = sum(1 for c in plan.changes if c.action.is_drift)
    unchanged = len(plan.changes) - drift
    if drift:
        lines += [*_folded(f"{drift} changes", _md_table(plan, True), open_=drift <= FOLD_AFTER), ""]
    if unchanged:
        lines += _folded(f"{count(unchanged, 'file')} unchanged (kept or left in place)", _md_table(plan, False), open_=False)
    return lines


def plan_markdown(plan: Plan) -> str:
    """A pull-request comment: one summary line, then the changes; long lists folded."""
    title = f"**{plan.scan.host}**: " if plan.scan.host else ""
    return "\n".join([title + markdown_summary(plan), "", *_md_details(plan)]).rstrip() + "\n"


def fleet_markdown(fleet: FleetPlan) -> str:
    """One summary row per host, then each host's details folded."""
    hosts = fleet.hosts
    mismatches = any(h.of(Action.MISMATCH) for h in hosts)  # the column appears only when needed
    lines = [
        fleet_summary(fleet),
        "",
        "| Host | To backup | Freed | Kept | Missing |" + (" Pin mismatch |" if mismatches else "") + " Guards |",
        "|---|---:|---:|---:|---:|" + ("---:|" if mismatches else "") + "---|",
    ]
    for h in hosts:
        guard = "⛔ " + _md("; ".join(violation_text(v) for v in h.violations)) if h.violations else "ok"
        cells = [len(h.to_delete), format_size(h.bytes_freed), len(h.of(Action.KEEP)), _bold(len(h.of(Action.MISSING)))]
        cells += [_bold(len(h.of(Action.MISMATCH)))] if mismatches else []
        lines.append(f"| `{_md(h.scan.host or '?')}` | " + " | ".join(map(str, cells)) + f" | {guard} |")
    lines.append("")
    for h in hosts:
        body = _md_details(h)
        lines += [f"<details><summary>{_md(h.scan.host or '?')}: {markdown_summary(h)}</summary>", "", *body, "", "</details>", ""]
    return "\n".join(lines).rstrip() + "\n"


def fleet_summary(fleet: FleetPlan) -> str:
    """One line over every host: what moves, how much, on how many hosts."""
    hosts = fleet.hosts
    moving = sum(len(h.to_delete) for h in hosts)
    freed = sum(h.bytes_freed for h in hosts)
    changed = sum(1 for h in hosts if h.has_changes or not h.converges)
    stuck = sum(1 for h in hosts if not h.converges)
    guarded = sum(1 for h in hosts if h.converges and h.violations)
    if moving:
        line = f"{count(moving, 'model')} to move to backup ({format_size(freed)}) across {changed} of {count(len(hosts), 'host')}"
    else:
        line = f"nothing to move to backup on any of {count(len(hosts), 'host')}"
    installing = [h for h in hosts if h.installs]
    if installing:
        line += f"; {count(sum(len(h.installs) for h in installing), 'model')} to install on {count(len(installing), 'host')}"
    line += f"; {count(stuck, 'host')} cannot converge" if stuck else ""
    return line + (f"; {count(guarded, 'host')} {'breaks' if guarded == 1 else 'break'} a guard" if guarded else "")


def _bold(n: int) -> str:
    return f"**{n}**" if n else "0"


def render_plan(plan: Plan | FleetPlan, fmt: str, view: View = View()) -> str:
    """A plan or fleet plan in ``fmt`` (text, json, markdown)."""
    if isinstance(plan, FleetPlan):
        if fmt == "json":
            return dumps(fleet_doc(plan), not view.on_terminal)
        if fmt == "markdown":
            return fleet_markdown(plan)
        return "\n\n".join([*(plan_text(h, view) for h in plan.hosts), f"Fleet: {fleet_summary(plan)}"])
    if fmt == "json":
        return dumps(plan_doc(plan), not view.on_terminal)
    return plan_markdown(plan) if fmt == "markdown" else plan_text(plan, view)


def write_plan_json(plan: Plan | FleetPlan, out: TextIO) -> None:
    """The compact JSON :func:`render_plan` gives off a terminal, streamed to ``out`` change by change."""
    write_json(fleet_doc(plan, lazy=True) if isinstance(plan, FleetPlan) else plan_doc(plan, lazy=True), out)
    out.write("\n")


# -- list ---------------------------------------------------------------------------------------

_ENGINE_WORDS = {True: "visible", False: "hidden", None: "n/a"}


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


def render_list(scan: StoreScan, manifest: Manifest | None, fmt: str) -> str:
    doc = list_doc(scan, manifest)
    rows = doc["files"]
    if fmt == "json":
        return dumps(doc)
    note = engine_note(scan, "listing")
    if fmt == "markdown":
        lines = [f"{count(len(rows), 'file')}, {format_size(scan.size_on_disk)} on disk in `{_md(scan.root)}` ({scan.backend})", ""]
        lines += [f"> {note}", ""] if note else []
        table = ["| Name | Size | Status | Engine |", "|---|---:|---|---|"]
        table += [f"| `{_md(r['name'])}` | {format_size(r['size'])} | {r['status']} | {_ENGINE_WORDS[r['engine_visible']]} |" for r in rows]
        lines += _folded(count(len(rows), "file"), table, open_=len(rows) <= FOLD_AFTER)
        return "\n".join(lines).rstrip() + "\n"
    lines = [f"Store: {scan.root} (backend: {scan.backend})", *([note] if note else []), *[f"Warning: {w}" for w in scan.warnings]]
    width = max([len(r["name"]) + 1 for r in rows] + [4])
    lines.append(f"{'NAME':<{width}}  {'SIZE':>10}  {'STATUS':<11}  ENGINE")
    for r in rows:
        name = safe(r["name"]) + ("@" if r["kind"] == "symlink" else "")
        lines.append(f"{name:<{width}}  {format_size(r['size']):>10}  {r['status']:<11}  {_ENGINE_WORDS[r['engine_visible']]}")
    lines.append(f"{count(len(rows), 'file')}, {format_size(scan.size_on_disk)} on disk")
    return "\n".join(lines)
