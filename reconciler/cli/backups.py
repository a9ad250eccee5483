"""``ocr-reconcile backups``: list backup runs, and delete or prune them under the store lock. A thin
client of :class:`~.api.Session`, like ``cli.py``; part of the CLI layer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..api.session import Session
from ..base.errors import UsageError
from ..disk.catalogue import BackupRun
from ..disk.retention import Retention
from ..read.patterns import parse_duration
from ..render import plans as render, runs as render_runs
from .support import (
    BackupDirOpt,
    JsonOpt,
    LockTimeoutOpt,
    ManifestOpt,
    StoreOpt,
    YesOpt,
    confirm,
    errors,
    open_store_session,
    output_format,
    report_pending,
)

backups_app = typer.Typer(help="List backup runs, newest first; delete or prune them.", no_args_is_help=False)

DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show the runs that would be deleted; delete nothing.")]


@backups_app.callback(invoke_without_command=True)
def backups(
    ctx: typer.Context,
    manifest: ManifestOpt = None,
    store: StoreOpt = None,
    backup_dir: BackupDirOpt = None,
    fmt: Annotated[str, typer.Option("--format", metavar="text|json", help="Output format.")] = "text",
    as_json: JsonOpt = False,
) -> None:
    """List this store's backup runs, newest first, with their state and what they still hold."""
    if ctx.invoked_subcommand is not None:  # `backups --store DIR delete RUN`: the subcommand uses them
        ctx.obj = {"manifest": manifest, "store": store, "backup_dir": backup_dir}
        return
    with errors(), open_store_session(manifest, store, backup_dir=backup_dir) as session:
        as_json = output_format(fmt, as_json, ("text", "json")) == "json"
        report_pending(session)
        runs = session.backups()
        typer.echo(render.dumps(render_runs.runs_json(runs)) if as_json else render_runs.runs_text(runs, str(session.backup_root())))


@backups_app.command("delete")
def delete(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(metavar="RUN_ID", help="Run ids (or unique prefixes) to delete.", show_default=False)],
    manifest: ManifestOpt = None,
    store: StoreOpt = None,
    backup_dir: BackupDirOpt = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    lock_timeout: LockTimeoutOpt = 0.0,
) -> None:
    """Delete backup runs for good (only what each run's index lists), under the store lock."""
    manifest, store, backup_dir = _inherit(ctx, manifest, store, backup_dir)
    with errors(), open_store_session(manifest, store, backup_dir=backup_dir, lock_timeout=lock_timeout) as session:
        _delete(session.find_runs(run_ids), session, dry_run, yes, "Delete")


@backups_app.command("prune")
def prune(
    ctx: typer.Context,
    manifest: ManifestOpt = None,
    store: StoreOpt = None,
    backup_dir: BackupDirOpt = None,
    keep: Annotated[int | None, typer.Option("--keep", metavar="N", min=0, help="Keep the newest N runs that hold files.")] = None,
    older_than: Annotated[
        str | None, typer.Option("--older-than", metavar="AGE", help="Delete runs older than AGE (90s, 5m, 2h, 30d).")
    ] = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    lock_timeout: LockTimeoutOpt = 0.0,
) -> None:
    """Delete the runs a retention makes surplus: --keep and --older-than, else the manifest's backup.keep
    and backup.max_age."""
    manifest, store, backup_dir = _inherit(ctx, manifest, store, backup_dir)
    with errors(), open_store_session(manifest, store, backup_dir=backup_dir, lock_timeout=lock_timeout) as session:
        if keep is None and older_than is None:
            if session.manifest is None:
                raise UsageError("give --keep N or --older-than AGE, or -m MANIFEST for its backup.keep and backup.max_age")
            retention = session.retention()
        else:
            try:
                retention = Retention(keep, parse_duration(older_than) if older_than is not None else None)
            except ValueError:
                raise UsageError(f"--older-than {older_than!r}: give a number with s, m, h or d (e.g. 30d)") from None
        _delete(session.plan_prune(retention), session, dry_run, yes, "Prune: delete", retention)


def _inherit(ctx: typer.Context, manifest: Path | None, store: Path | None, backup_dir: Path | None) -> tuple[Path | None, ...]:
    """The subcommand's own -m/--store/--backup-dir, else those given to ``backups`` before it."""
    given = ctx.obj if isinstance(ctx.obj, dict) else {}
    return manifest or given.get("manifest"), store or given.get("store"), backup_dir or given.get("backup_dir")


def _delete(runs: list[BackupRun], session: Session, dry_run: bool, yes: bool, what: str, retention: Retention | None = None) -> None:
    """Show ``runs``, then (unless a dry run) confirm and delete them under the store lock."""
    if not runs:
        typer.echo("No backup runs to delete.")
        return
    typer.echo(render_runs.prune_text(runs, retention or Retention(), f"{what}" if not dry_run else f"Dry run: {what.lower()}"))
    if dry_run:
        typer.echo("Dry run: nothing was deleted.")
        return
    confirm(
        f"Delete {render.count(len(runs), 'backup run')} ({render.format_size(sum(r.size for r in runs))}) for good?",
        yes,
        "nothing was deleted",
    )
    deleted = session.delete_runs(runs)
    typer.echo(f"Deleted {render.count(len(deleted), 'backup run')}: {', '.join(deleted)}.")
