"""The commands that put files back or finish a run: ``restore`` and ``recover``."""

from __future__ import annotations

from typing import Annotated

import typer

from ..base.errors import ExitCode, ReconcilerError
from ..render import runs as render_runs
from .support import BackupDirOpt, LockTimeoutOpt, ManifestOpt, StoreOpt, errors, open_store_session, report_pending, say_recovery


def restore(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="Backup run id (or a unique prefix).", show_default=False)],
    names: Annotated[
        list[str] | None, typer.Argument(metavar="NAME", help="Names to restore (default: the whole run).", show_default=False)
    ] = None,
    manifest: ManifestOpt = None,
    store: StoreOpt = None,
    backup_dir: BackupDirOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Move a different file in the way to a new backup run, then restore.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be restored; change nothing.")] = False,
    lock_timeout: LockTimeoutOpt = 0.0,
) -> None:
    """Put backed-up files back into the store; never overwrites a different file unless --force."""
    with errors(), open_store_session(manifest, store, backup_dir=backup_dir, lock_timeout=lock_timeout) as session:
        target = session.restore_target(session.find_run(run_id))
        if dry_run:
            report_pending(session, target)  # a dry run does not recover: an interrupted run can change its answer
            typer.echo(render_runs.restore_plan_text(session.plan_restore(run_id, names or [], force)))
            return
        with session.lock("restore", target) as held:
            say_recovery(held.recovery)
            planned = session.plan_restore(run_id, names or [], force)
            result = session.restore(planned, held)
        typer.echo(render_runs.restore_text(planned.run.run_id, result))
    raise typer.Exit(ExitCode.CHANGES if result.skipped else ExitCode.OK)


def recover_(
    manifest: ManifestOpt = None,
    store: StoreOpt = None,
    backup_dir: BackupDirOpt = None,
    abandon: Annotated[
        bool,
        typer.Option(
            "--abandon",
            help="For a journal that cannot be read: move nothing, record where each file is, keep the journal "
            "under a new name, and release the store.",
        ),
    ] = False,
    lock_timeout: LockTimeoutOpt = 0.0,
) -> None:
    """Finish a run that a crash interrupted (apply and restore do this first by themselves)."""
    with errors(), open_store_session(manifest, store, backup_dir=backup_dir, lock_timeout=lock_timeout) as session:
        if abandon:
            gone = session.abandon()
            typer.echo(render_runs.abandoned_text(gone) if gone else f"Nothing to abandon on {session.store_root()}.")
            return
        result = session.recover()
        if result is not None:
            typer.echo(render_runs.recovery_text(result))
            return
        orphans = session.unfinished()
        if orphans:
            ids = ", ".join(r.run_id for r in orphans)
            raise ReconcilerError(
                f"no journal to finish, but unfinished backup runs of this store exist ({ids}); "
                "ocr-reconcile recover --abandon makes them restorable"
            )
        typer.echo(f"Nothing to recover on {session.store_root()}.")
