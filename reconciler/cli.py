"""The ``ocr-reconcile`` command: parse arguments, call the core, render, map errors to exit codes.

Thin on purpose: no decisions live here. Exit codes (pinned in tests): 0 success / nothing to do,
1 error, 2 changes pending (``plan``) or left pending (``apply`` skipped files), 3 cannot converge
(declared models missing), 130 interrupted. Usage errors exit 1 too, so that 2 only ever means
"changes pending".
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from . import __version__, render
from .apply import apply_plan, check_backup_root, default_backup_root, find_run, list_runs, restore_run
from .errors import CannotConvergeError, ConfirmationRefused, ManifestError, ReconcilerError
from .manifest import Manifest, load_manifest
from .plan import Plan, make_plan
from .scan import StoreScan, scan_store
from .stores import BACKENDS, engine_default_path, open_store

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_CANNOT_CONVERGE = 3
EXIT_INTERRUPTED = 130

log = logging.getLogger("reconciler")


class _Group(TyperGroup):
    """Runs every command non-standalone so that all exits go through one mapping."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, windows_expand_args=windows_expand_args, **extra)
        except typer.TyperException as exc:  # usage errors: exit 1, not click's 2
            show = getattr(exc, "show", None)
            if callable(show):
                show()
            else:
                typer.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(EXIT_ERROR)
        except typer.Exit as exc:
            sys.exit(exc.exit_code)
        except (typer.Abort, KeyboardInterrupt):
            typer.echo("Interrupted.", err=True)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(rv if isinstance(rv, int) else EXIT_OK)


app = typer.Typer(
    cls=_Group,
    help="Make an Aspose OCR AI model folder match a declared manifest: validate, plan, apply, restore.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ManifestArg = Annotated[Path, typer.Argument(help="Manifest YAML file.", show_default=False)]
StoreOpt = Annotated[Path | None, typer.Option("--store", help="Model folder; overrides store.path.")]
BackendOpt = Annotated[str | None, typer.Option("--backend", help=f"Override store.backend ({'|'.join(BACKENDS)}).")]
LicenseOpt = Annotated[Path | None, typer.Option("--license", help="Aspose license file to apply (lifts the evaluation filter).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
BackupDirOpt = Annotated[Path | None, typer.Option("--backup-dir", help="Backup folder; overrides backup.dir.")]
ManifestOpt = Annotated[Path | None, typer.Option("--manifest", "-m", help="Manifest to take the store and backup settings from.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ocr-reconcile {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log engine and store steps to stderr.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="ocr-reconcile: %(message)s", stream=sys.stderr, force=True
    )


@contextmanager
def _errors() -> Iterator[None]:
    """Map the core's error hierarchy to one message per line and the class's exit code."""
    try:
        yield
    except ReconcilerError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:  # a bug: say so in one line, no traceback
        log.debug("internal error", exc_info=True)
        typer.echo(f"error: internal error: {type(exc).__name__}: {exc} (please report it)", err=True)
        raise typer.Exit(EXIT_ERROR) from None


@contextmanager
def _scanned(manifest: Manifest | None, store: Path | None, backend: str | None, license_file: Path | None) -> Iterator[StoreScan]:
    """Open the store (engine freed on every exit path) and scan it."""
    chosen = backend or (manifest.backend if manifest else "auto")
    path = store or (manifest.store_path if manifest else None)
    pinned = {m.name for m in manifest.models if m.sha256} if manifest else set()
    with open_store(chosen, path, license_file) as opened:
        yield scan_store(opened, pinned)


def _backup_root(manifest: Manifest | None, store_root: str, backup_dir: Path | None) -> Path:
    root = backup_dir or (manifest.backup_dir if manifest else None) or default_backup_root(store_root)
    return check_backup_root(store_root, root)


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Manifest files to check.", show_default=False)]) -> None:
    """Check manifests against the schema; print every problem as file:line:col: field: why."""
    failed = 0
    for path in files:
        try:
            load_manifest(path)
        except ManifestError as exc:
            failed += 1
            for line in exc.problems:
                typer.echo(f"error: {line}", err=True)
        else:
            typer.echo(f"ok: {path}")
    if failed:
        typer.echo(f"{failed} of {len(files)} manifests invalid.", err=True)
        raise typer.Exit(EXIT_ERROR)


def _plan_exit(plan: Plan) -> int:
    if not plan.converges:
        return EXIT_CANNOT_CONVERGE
    return EXIT_CHANGES if plan.has_changes else EXIT_OK


@app.command()
def plan(
    manifest_file: ManifestArg,
    store: StoreOpt = None,
    backend: BackendOpt = None,
    license_file: LicenseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what apply would do. Changes nothing. Exit 0 no changes, 2 changes pending, 3 cannot converge."""
    with _errors():
        manifest = load_manifest(manifest_file)
        with _scanned(manifest, store, backend, license_file) as scan:
            result = make_plan(manifest, scan)
        typer.echo(render.dumps(render.plan_json(result)) if as_json else render.plan_text(result))
    raise typer.Exit(_plan_exit(result))


@app.command()
def apply(
    manifest_file: ManifestArg,
    store: StoreOpt = None,
    backend: BackendOpt = None,
    license_file: LicenseOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Re-plan, show the plan, confirm, then move unmanaged files to a backup run."""
    with _errors():
        manifest = load_manifest(manifest_file)
        with _scanned(manifest, store, backend, license_file) as scan:
            result = make_plan(manifest, scan)
            backup_root = _backup_root(manifest, scan.root, None)
            typer.echo(render.plan_text(result))
            if not result.converges:
                raise CannotConvergeError("declared models are missing; nothing was moved")
            if not result.has_changes:
                raise typer.Exit(EXIT_OK)
            _confirm(f"Move {len(result.to_delete)} files ({render.format_size(result.bytes_freed)}) to {backup_root}?", yes)
            outcome = apply_plan(result, backup_root, manifest.backup_keep)
        typer.echo(render.apply_text(outcome, f" -m {manifest_file}" + (f" --store {store}" if store else "")))
    raise typer.Exit(EXIT_CHANGES if outcome.skipped else EXIT_OK)


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfirmationRefused("standard input is not a terminal; pass --yes to apply without asking")
    if not typer.confirm(question, default=False):
        raise ConfirmationRefused("not confirmed; nothing was moved")


@app.command("list")
def list_(
    manifest_file: Annotated[Path | None, typer.Argument(help="Optional manifest to classify files against.", show_default=False)] = None,
    store: StoreOpt = None,
    backend: BackendOpt = None,
    license_file: LicenseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what the store holds: name, size, declared/whitelisted/unmanaged, engine visibility."""
    with _errors():
        manifest = load_manifest(manifest_file) if manifest_file else None
        with _scanned(manifest, store, backend, license_file) as scan:
            pass
        typer.echo(render.dumps(render.list_json(scan, manifest)) if as_json else render.list_text(scan, manifest))


def _settings(manifest_file: Path | None, store: Path | None, backup_dir: Path | None) -> tuple[str, Path]:
    """Store root and backup root for commands that need no engine (backups, restore)."""
    manifest = load_manifest(manifest_file) if manifest_file else None
    store_root = str((store or (manifest.store_path if manifest else None) or Path(engine_default_path())).absolute())
    return store_root, _backup_root(manifest, store_root, backup_dir)


@app.command()
def backups(
    manifest: ManifestOpt = None,
    store: StoreOpt = None,
    backup_dir: BackupDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List backup runs, newest first, with their sizes."""
    with _errors():
        _, backup_root = _settings(manifest, store, backup_dir)
        runs = list_runs(backup_root)
        typer.echo(render.dumps(render.runs_json(runs)) if as_json else render.runs_text(runs, str(backup_root)))


@app.command()
def restore(
    run_id: Annotated[str, typer.Argument(help="Backup run id (or a unique prefix).", show_default=False)],
    names: Annotated[list[str] | None, typer.Argument(help="Names to restore (default: the whole run).", show_default=False)] = None,
    manifest: ManifestOpt = None,
    store: StoreOpt = None,
    backup_dir: BackupDirOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Move a different file in the way to a new backup run, then restore.")] = False,
) -> None:
    """Put backed-up files back into the store; never overwrites a different file unless --force."""
    with _errors():
        _, backup_root = _settings(manifest, store, backup_dir)
        run = find_run(backup_root, run_id)  # restores into the store recorded in the run, unless --store
        result = restore_run(run, names or [], force, store_root=str(store.absolute()) if store else None)
        typer.echo(render.restore_text(run.run_id, result))


def main() -> None:
    """Console-script entry point."""
    app()
