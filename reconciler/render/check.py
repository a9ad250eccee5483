"""What ``check`` prints: one line for a human or a log, a JSON document for monitoring, or the
Prometheus textfile collector's gauges. Part of the render layer (like ``plans.py``)."""

from __future__ import annotations

from typing import Any

from ..decide.plan import Action, Plan
from ..decide.planfile import iso_time
from .plans import count, format_size, safe


def check_text(plan: Plan) -> str:
    """``OK: …`` or ``DRIFT: …`` in one line, for a human or a log."""
    root, source = plan.scan.root, plan.manifest.source
    if plan.in_sync:
        return f"OK: {root} matches {source} ({count(len(plan.scan.files), 'file')})"
    parts = [f"{len(plan.to_delete)} to move to backup ({format_size(plan.bytes_freed)})"]
    for action in (Action.INSTALL, Action.REPLACE, Action.MISSING, Action.MISMATCH):
        names = [safe(c.name) for c in plan.of(action)]
        if names:
            parts.append(f"{len(names)} {action.props.label} ({', '.join(names[:5])}{', …' if len(names) > 5 else ''})")
    return f"DRIFT: {root} differs from {source}: {'; '.join(parts)}"


def check_doc(plan: Plan, now: float) -> dict[str, Any]:
    """What ``check --format json`` prints: the drift in numbers and names, for monitoring."""
    return {
        "status": "ok" if plan.in_sync else "drift",
        "store": plan.scan.root,
        "manifest": plan.manifest.source,
        "checked_at": iso_time(int(now * 1e9)),
        "files": len(plan.scan.files),
        "to_move": [c.name for c in plan.to_delete],
        "to_move_bytes": plan.bytes_freed,
        "missing": [c.name for c in plan.of(Action.MISSING)],
        "mismatch": [c.name for c in plan.of(Action.MISMATCH)],
        "to_install": [c.name for c in plan.installs],
        "converges": plan.converges,
    }


_METRICS = (
    ("check_success", "1 when the check ran, 0 when it failed (the other gauges are then absent)."),
    ("converged", "1 when the store matches the manifest, else 0."),
    ("drift_files", "Files that apply would move to backup."),
    ("drift_bytes", "Bytes that apply would move to backup."),
    ("missing_models", "Declared models absent from the store."),
    ("mismatched_models", "Declared models that differ from their sha256 pin."),
    ("install_models", "Declared models that apply would download from their source (absent, or replaced)."),
    ("last_check_timestamp_seconds", "When this check ran (Unix time)."),
)


def check_prometheus(plan: Plan, now: float) -> str:
    """``check --format prometheus``: the node_exporter textfile collector's format, one gauge each."""
    values = {
        "check_success": 1,
        "converged": int(plan.in_sync),
        "drift_files": len(plan.to_delete),
        "drift_bytes": plan.bytes_freed,
        "missing_models": len(plan.of(Action.MISSING)),
        "mismatched_models": len(plan.of(Action.MISMATCH)),
        "install_models": len(plan.installs),
        "last_check_timestamp_seconds": round(now, 3),
    }
    labels = f'store="{_label(plan.scan.root)}",manifest="{_label(plan.manifest.name)}"'
    lines = []
    for name, help_text in _METRICS:
        lines += [
            f"# HELP ocr_reconcile_{name} {help_text}",
            f"# TYPE ocr_reconcile_{name} gauge",
            f"ocr_reconcile_{name}{{{labels}}} {values[name]}",
        ]
    return "\n".join(lines) + "\n"


def check_failed_prometheus(now: float) -> str:
    """What ``check --format prometheus`` prints when the check itself failed (it exits 1 as well)."""
    lines = []
    for name, value in (("check_success", 0), ("last_check_timestamp_seconds", round(now, 3))):
        help_text = dict(_METRICS)[name]
        lines += [f"# HELP ocr_reconcile_{name} {help_text}", f"# TYPE ocr_reconcile_{name} gauge", f"ocr_reconcile_{name} {value}"]
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    """A Prometheus label value: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
