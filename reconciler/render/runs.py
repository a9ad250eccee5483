"""Text for what the mutating commands did: apply results, backup runs, restore plans and results,
recovery. Part of the render layer (like ``plans.py``, whose helpers it uses): values in, text out.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..decide.plan import Action, Plan
from ..decide.planfile import iso_time
from ..disk.catalogue import BackupRun
from ..disk.retention import Retention
from .plans import count, format_size, safe

if TYPE_CHECKING:
    from pathlib import Path

    from ..api.apply import ApplyResult
    from ..api.install import InstallResult
    from ..api.restore import RestorePlan, RestoreResult
    from ..disk.recovery import Abandoned, Recovery


def apply_question(plan: Plan, backup_root: Path, pruning: list[BackupRun]) -> str:
    """The confirmation apply asks: what moves where, what is installed, which old runs go."""
    moving = [c for c in plan.changes if c.action in (Action.DELETE, Action.REPLACE)]
    parts = [f"Move {count(len(moving), 'file')} ({format_size(sum(c.size for c in moving))}) to {backup_root}"] if moving else []
    if plan.installs:
        parts.append(f"install {count(len(plan.installs), 'model')} ({format_size(plan.summary.bytes_to_download)} known)")
    if pruning:
        parts.append(f"delete {count(len(pruning), 'old backup run')} ({format_size(sum(r.size for r in pruning))})")
    text = ", then ".join(parts)
    return text[:1].upper() + text[1:] + "?"


def skipped_lines(skipped: tuple[tuple[str, str], ...]) -> list[str]:
    """One ``  skipped NAME: why`` line per entry a run left in place (apply, install, restore)."""
    return [f"  skipped {safe(name)}: {safe(why)}" for name, why in skipped]


def apply_text(result: ApplyResult, restore_args: str = "", quiet: bool = False, pruned_sizes: dict[str, int] | None = None) -> str:
    installed = install_text(result.install, quiet)
    skipped = skipped_lines(result.skipped)
    if result.run_id is None and installed:
        return "\n".join([*skipped, installed])
    if result.run_id is None:
        return (
            "\n".join([*skipped, f"Nothing was moved ({len(skipped)} skipped); no backup run was made."])
            if skipped
            else "No changes. Nothing was moved."
        )
    lines = [] if quiet else [f"  moved {safe(m.name)} ({format_size(m.size)}, {m.method})" for m in result.moved]
    lines += skipped
    freed = format_size(result.bytes_freed)
    renamed = any(m.method == "rename" for m in result.moved)
    where = " (the backup is on the same filesystem: space comes back when runs are pruned)" if renamed else ""
    lines.append(
        f"Apply complete: {len(result.moved)} moved to backup ({format_size(result.bytes_moved)}), {len(result.skipped)} skipped; "
        f"{freed} freed on the store's filesystem{where}. Backup run {result.run_id} in {result.run_dir}."
    )
    lines.append(f"Undo with: ocr-reconcile restore {result.run_id}{restore_args}")
    if result.pruned_runs:
        sizes = pruned_sizes or {}
        runs = ", ".join(f"{r} ({format_size(sizes[r])})" if r in sizes else r for r in result.pruned_runs)
        lines.append(f"Deleted old backup runs (backup retention): {runs}")
    return "\n".join([*lines, installed] if installed else lines)


def install_text(result: InstallResult, quiet: bool = False) -> str:
    """What an install put in place ("" when there was nothing to install)."""
    if not (result.installed or result.skipped or result.failed):
        return ""
    lines = (
        []
        if quiet
        else [f"  installed {safe(e.name)} ({format_size(e.size)}, sha256 {e.sha256 or '?'}"[:-1] + ")" for e in result.installed]
    )
    lines += skipped_lines(result.skipped)
    done = (
        f"Install: {count(len(result.installed), 'model')} installed ({format_size(result.bytes_installed)}), {len(result.skipped)} skipped"
    )
    return "\n".join([*lines, done + (f", {len(result.failed)} failed." if result.failed else ".")])


def after_apply_text(runs: list[BackupRun], retention: Retention) -> str:
    """The runs backup retention will delete after an apply: in the plan, and before the prompt."""
    return prune_text(runs, retention, "After a complete apply, backup retention will delete")


def prune_text(runs: list[BackupRun], retention: Retention, what: str) -> str:
    """The runs a retention deletes, with sizes: in a plan, a prompt's preamble, or a dry run."""
    rules = [f"keep {retention.keep}"] if retention.keep is not None else []
    rules += [f"max_age {retention.max_age_s} s"] if retention.max_age_s is not None else []
    noun = "old backup run" if rules else "backup run"
    head = f"{what} {count(len(runs), noun)} ({format_size(sum(r.size for r in runs))}{'; ' if rules else ''}{', '.join(rules)}):"
    return "\n".join([head, *(f"  x {r.run_id}  {iso_time(r.created_ns)}  {r.state}  {format_size(r.size)}" for r in runs)])


def runs_json(runs: list[BackupRun]) -> list[dict[str, Any]]:
    return [
        {**run.to_json(), "state": run.state, "created": iso_time(run.created_ns), "files": len(run.held), "size": run.size} for run in runs
    ]


def runs_text(runs: list[BackupRun], backup_root: str) -> str:
    if not runs:
        gone = "" if os.path.isdir(backup_root) else " (no such folder: no apply has moved files out of this store, or it is another store)"
        return f"No backup runs in {backup_root}{gone}."
    width = max(len(r.run_id) for r in runs)
    lines = [f"Backups in {backup_root}:", f"{'RUN ID':<{width}}  {'CREATED (UTC)':<20}  {'STATUS':<15}  {'FILES':>5}  {'SIZE':>10}"]
    for r in runs:
        lines.append(f"{r.run_id:<{width}}  {iso_time(r.created_ns):<20}  {r.state:<15}  {len(r.held):>5}  {format_size(r.size):>10}")
    return "\n".join(lines)


def restore_plan_text(plan: RestorePlan) -> str:
    """What ``restore --dry-run`` prints: each move, then a count. Says that nothing was changed."""
    lines = [f"Restore plan for run {plan.run.run_id} into {plan.store}:"]
    lines += [f"  move {safe(m.name)} out of the way, to a new backup run (…-displaced)" for m in plan.displaces]
    lines += [f"  + restore {safe(m.name)} ({format_size(m.facts.size)})" for m in plan.restores]
    lines += [f"  = already in the store (identical): {safe(n)}" for n in plan.already_present]
    lines.append(f"Dry run: {len(plan.restores)} to restore, {len(plan.already_present)} already present; nothing was changed.")
    return "\n".join(lines)


def restore_text(run_id: str, result: RestoreResult) -> str:
    lines = [f"  restored {safe(n)}" for n in result.restored]
    lines += [f"  already in the store (identical): {safe(n)}" for n in result.already_present]
    lines += skipped_lines(result.skipped)
    if result.displaced_run:
        lines.append(f"Files that were in the way were moved to backup run {result.displaced_run}.")
    lines.append(
        f"Restore of {run_id} complete: {len(result.restored)} restored, {len(result.already_present)} already present, "
        f"{len(result.skipped)} skipped."
    )
    return "\n".join(lines)


def abandoned_text(gone: Abandoned) -> str:
    """What ``recover --abandon`` did: where each file is, which runs were inventoried."""
    kept = f" Its journal is kept as {gone.journal_kept}." if gone.journal_kept else " It had no journal left."
    lines = [f"Abandoned the interrupted run; nothing was moved.{kept}"]
    lines += [f"  {safe(name)}: {safe(place)}" for name, place in gone.places]
    if gone.runs:
        lines.append(f"Unfinished backup runs now list what they really hold (status abandoned; restorable): {', '.join(gone.runs)}")
    return "\n".join(lines)


def recovery_text(result: Recovery) -> str:
    """One paragraph on what recovery found and finished."""
    if result.op == "torn":
        return "Recovered: an interrupted run had not moved anything yet; its journal was removed."
    lines = [
        f"Recovered interrupted {result.op} run {result.run_id}: {len(result.already_done)} moves had completed, "
        f"{len(result.finished)} finished now, {len(result.skipped)} skipped."
    ]
    lines += [f"  finished {safe(name)}" for name in result.finished]
    lines += skipped_lines(result.skipped)
    return "\n".join(lines)
