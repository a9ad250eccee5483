"""The ``ocr-reconcile`` command: parse arguments, call the core, render, map errors to exit codes.

Thin on purpose: no decisions live here. Exit codes (pinned in tests): 0 success / nothing to do,
1 error, 2 changes pending (``plan``) or left pending (``apply`` skipped files), 3 cannot converge
(declared models missing), 130 interrupted. Usage errors exit 1 too, so that 2 only ever means
"changes pending".
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from . import __version__, render
from .apply import (
    apply_plan,
    check_backup_root,
    default_backup_root,
    find_run,
    list_runs,
    pending_run,
    recover,
    refuse_unapplicable,
    restore_run,
)
from .errors import ConfirmationRefused, ManifestError, ReconcilerError, StalePlanError, UsageError
from .journal import store_lock
from .manifest import Manifest, load_manifest
from .plan import Action, Guards, Plan, guards_for, make_plan
from .planfile import checksum, fingerprint_differences, read_document, saved_plan, scan_from_snapshot, snapshot_doc, write_document
from .scan import Everything, StoreScan, resolve_root, scan_store
from .stores import BACKENDS, engine_default_path, open_store

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_CANNOT_CONVERGE = 3
EXIT_GUARD = 4
EXIT_STALE_PLAN = 5
EXIT_LOCKED = 6
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
JsonOpt = Annotated[bool, typer.Option("--json", help="Same as --format json.")]
FormatOpt = Annotated[str, typer.Option("--format", help="Output format: text, json or markdown.")]
MaxDeleteOpt = Annotated[
    int | None, typer.Option("--max-delete", min=0, help="Refuse to move more files than this (stricter of this and limits.max_delete).")
]
LockTimeoutOpt = Annotated[float, typer.Option("--lock-timeout", min=0, help="Wait this many seconds for another run's store lock.")]
AllowEmptyOpt = Annotated[
    bool, typer.Option("--allow-empty", help="Allow a plan that moves every file, or whose manifest declares no models.")
]
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
def _scanned(
    manifest: Manifest | None,
    store: Path | None,
    backend: str | None,
    license_file: Path | None,
    hash_all: bool = False,
    lock_timeout: float | None = None,
) -> Iterator[StoreScan]:
    """Open the store (engine freed on every exit path) and scan it, hashing pinned models (or all).

    With ``lock_timeout`` (mutating commands) the store lock is held for the whole block and an
    interrupted run is recovered first; otherwise an interrupted run is only reported.
    """
    chosen = backend or (manifest.backend if manifest else "auto")
    path = store or (manifest.store_path if manifest else None)
    pinned = {m.name for m in manifest.models if m.sha256} if manifest else set()
    with open_store(chosen, path, license_file) as opened:
        root, _ = resolve_root(opened.get_local_path())
        with store_lock(root, lock_timeout) if lock_timeout is not None else nullcontext():
            if lock_timeout is not None:
                _recover(root)
            else:
                _report_pending(root)
            yield scan_store(opened, Everything() if hash_all else pinned)


def _recover(root: str) -> None:
    result = recover(root)
    if result is not None:
        typer.echo(render.recovery_text(result), err=True)


def _report_pending(root: str) -> None:
    header = pending_run(root)
    if header is not None:
        typer.echo(
            f"warning: an interrupted {header.get('op', 'run')} ({header.get('run_id', '?')}) was found on {root}; "
            "run 'ocr-reconcile recover' (apply and restore do it first)",
            err=True,
        )


def _backup_root(manifest: Manifest | None, store_root: str, backup_dir: Path | None) -> Path:
    root = backup_dir or (manifest.backup_dir if manifest else None) or default_backup_root(store_root)
    return check_backup_root(store_root, root)


def _format(fmt: str, as_json: bool) -> str:
    if fmt not in render.FORMATS:
        raise UsageError(f"--format must be one of {', '.join(render.FORMATS)} (got {fmt!r})")
    return "json" if as_json else fmt


def _colour() -> bool:
    return render.use_colour(sys.stdout.isatty())


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


def _plan_exit(summaries: list[dict[str, Any]]) -> int:
    if not all(s["converges"] for s in summaries):
        return EXIT_CANNOT_CONVERGE
    return EXIT_CHANGES if any(s["has_changes"] for s in summaries) else EXIT_OK


def _state_files(state: Path | None, extra: list[Path]) -> list[Path]:
    """``--state`` files: the option's value (a file, a folder of *.json, or a quoted glob) plus the
    shell-expanded rest of ``--state snapshots/*.json``, which arrives as extra arguments."""
    if state is None:
        if extra:
            raise UsageError(f"unexpected extra arguments: {' '.join(map(str, extra))}")
        return []
    paths: list[Path] = []
    for item in [state, *extra]:
        if item.is_dir():
            paths += sorted(item.glob("*.json"))
        elif any(ch in str(item) for ch in "*?["):
            paths += sorted(Path().glob(str(item))) if not item.is_absolute() else sorted(Path("/").glob(str(item)[1:]))
        else:
            paths.append(item)
    if not paths:
        raise UsageError(f"--state {state}: no snapshot files found")
    return paths


@app.command()
def plan(
    manifest_file: ManifestArg,
    more_states: Annotated[list[Path] | None, typer.Argument(help="More snapshot files (the shell's expansion of --state *.json).")] = None,
    store: StoreOpt = None,
    backend: BackendOpt = None,
    license_file: LicenseOpt = None,
    fmt: FormatOpt = "text",
    as_json: JsonOpt = False,
    out: Annotated[Path | None, typer.Option("--out", help="Save the plan (JSON, checksummed) for apply PLANFILE.")] = None,
    state: Annotated[Path | None, typer.Option("--state", help="Plan against snapshot files instead of the live store.")] = None,
    max_delete: MaxDeleteOpt = None,
    allow_empty: AllowEmptyOpt = False,
) -> None:
    """Show what apply would do. Changes nothing. Exit 0 no changes, 2 changes pending, 3 cannot converge."""
    with _errors():
        fmt = _format(fmt, as_json)
        snapshots = _state_files(state, more_states or [])
        manifest = load_manifest(manifest_file)
        guards = guards_for(manifest, max_delete, allow_empty)
        if snapshots:
            if out is not None:
                raise UsageError("--out saves a plan for one live store; it cannot be combined with --state")
            docs = []
            for path in snapshots:
                snap = read_document(path, "snapshot")
                docs.append(render.plan_doc(make_plan(manifest, scan_from_snapshot(snap), guards), host=snap["host"]))
            doc = render.fleet_doc(docs)
            summaries = [d["summary"] for d in docs]
        else:
            with _scanned(manifest, store, backend, license_file) as scan:
                doc = render.plan_doc(make_plan(manifest, scan, guards))
            summaries = [doc["summary"]]
            if out is not None:
                write_document(out, saved_plan(doc))
        typer.echo(render.render_plan(doc, fmt, _colour()), nl=fmt != "markdown")
        if out is not None:
            typer.echo(f"Saved plan to {out}. Apply exactly this plan with: ocr-reconcile apply {out}", err=True)
    raise typer.Exit(_plan_exit(summaries))


@app.command()
def apply(
    source: Annotated[Path, typer.Argument(help="Manifest (YAML), or a plan saved by plan --out (.json).", show_default=False)],
    store: StoreOpt = None,
    backend: BackendOpt = None,
    license_file: LicenseOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    max_delete: MaxDeleteOpt = None,
    allow_empty: AllowEmptyOpt = False,
    lock_timeout: LockTimeoutOpt = 0.0,
) -> None:
    """Re-plan (or load a saved plan), show it, confirm, then move unmanaged files to a backup run.

    Holds the store lock throughout, and first finishes any run a crash interrupted."""
    with _errors():
        if source.suffix == ".json":
            if store or backend or max_delete is not None or allow_empty:
                raise UsageError(
                    "a saved plan is applied exactly as saved: --store, --backend, --max-delete and --allow-empty go with plan"
                )
            saved = read_document(source, "saved-plan")
            manifest = _manifest_of(saved)
            store, backend = Path(saved["store"]["path"]), saved["store"]["backend"]
            guards = Guards(saved["guards"]["max_delete"], saved["guards"]["max_delete_bytes"], saved["guards"]["allow_empty"])
        else:
            saved = None
            manifest = load_manifest(source)
            guards = guards_for(manifest, max_delete, allow_empty)
        with _scanned(manifest, store, backend, license_file, lock_timeout=lock_timeout) as scan:
            result = make_plan(manifest, scan, guards)
            if saved is not None:
                _check_fresh(saved, scan, result)
            backup_root = _backup_root(manifest, scan.root, None)
            typer.echo(render.plan_text(render.plan_doc(result), _colour()))
            refuse_unapplicable(result, backup_root)
            if not result.has_changes:
                raise typer.Exit(EXIT_OK)
            _confirm(f"Move {len(result.to_delete)} files ({render.format_size(result.bytes_freed)}) to {backup_root}?", yes)
            outcome = apply_plan(result, backup_root, manifest.backup_keep)
        typer.echo(render.apply_text(outcome, f" -m {manifest.source}" + (f" --store {store}" if store else "")))
    raise typer.Exit(EXIT_CHANGES if outcome.skipped else EXIT_OK)


def _manifest_of(saved: dict[str, Any]) -> Manifest:
    """The manifest a saved plan was made from, refusing (stale) if it is gone or was edited."""
    path = Path(saved["manifest"]["path"])
    try:
        manifest = load_manifest(path)
    except ManifestError:
        raise StalePlanError([f"manifest {path} is missing or no longer valid"]) from None
    if manifest.sha256 != saved["manifest"]["sha256"]:
        raise StalePlanError([f"manifest edited: {path} (sha256 {saved['manifest']['sha256'][:12]}… -> {manifest.sha256[:12]}…)"])
    return manifest


def _check_fresh(saved: dict[str, Any], scan: StoreScan, fresh: Plan) -> None:
    """Refuse a saved plan when the store changed, or when re-planning would not give the same plan."""
    differences = fingerprint_differences(saved, scan)
    if saved["store"]["backend"] != scan.backend:
        differences.append(f"backend changed: {saved['store']['backend']} -> {scan.backend}")
    if not differences:
        was = [(c["name"], c["actions"]) for c in saved["changes"]]
        now = [(c.name, [c.action.value]) for c in fresh.changes]
        if was != now:
            differences.append("re-planning gives a different plan (another ocr-reconcile version?); make the plan again")
    if differences:
        raise StalePlanError(differences)


@app.command()
def show(
    plan_file: Annotated[Path, typer.Argument(help="A plan saved by plan --out.", show_default=False)],
    fmt: FormatOpt = "text",
    as_json: JsonOpt = False,
) -> None:
    """Render a saved plan without applying it; warn (exit 0 all the same) when it is stale."""
    with _errors():
        fmt = _format(fmt, as_json)
        saved = read_document(plan_file, "saved-plan")
        typer.echo(render.render_plan(saved, fmt, _colour()), nl=fmt != "markdown")
        for line in _staleness(saved):
            typer.echo(f"warning: {line}", err=True)


def _staleness(saved: dict[str, Any]) -> list[str]:
    """Why a saved plan would be refused now (read with the directory backend: no engine needed)."""
    try:
        manifest = _manifest_of(saved)
        with open_store("directory", Path(saved["store"]["path"])) as opened:
            scan = scan_store(opened, {m.name for m in manifest.models if m.sha256})
        _report_pending(scan.root)
        _check_fresh({**saved, "store": {**saved["store"], "backend": "directory"}}, scan, make_plan(manifest, scan))
    except StalePlanError as exc:
        return ["this plan is stale; apply would refuse it:", *exc.differences]
    except ReconcilerError as exc:
        return [f"cannot check whether this plan is stale: {exc}"]
    return []


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfirmationRefused("standard input is not a terminal; pass --yes to apply without asking")
    if not typer.confirm(question, default=False):
        raise ConfirmationRefused("not confirmed; nothing was moved")


@app.command()
def check(
    manifest_file: ManifestArg,
    store: StoreOpt = None,
    backend: BackendOpt = None,
    license_file: LicenseOpt = None,
) -> None:
    """Read-only drift check for monitoring: exit 0 converged, 2 drift (to move or missing), 1 error."""
    with _errors():
        manifest = load_manifest(manifest_file)
        with _scanned(manifest, store, backend, license_file) as scan:
            result = make_plan(manifest, scan)
        missing = [c.name for c in result.of(Action.MISSING)]
        if result.converges and not result.has_changes:
            typer.echo(f"OK: {scan.root} matches {manifest.source} ({len(scan.files)} files)")
            raise typer.Exit(EXIT_OK)
        parts = [f"{len(result.to_delete)} to move to backup ({render.format_size(result.bytes_freed)})"]
        parts += [f"{len(missing)} missing ({', '.join(missing[:5])}{', …' if len(missing) > 5 else ''})"] if missing else []
        typer.echo(f"DRIFT: {scan.root} differs from {manifest.source}: {'; '.join(parts)}")
    raise typer.Exit(EXIT_CHANGES)


@app.command()
def snapshot(
    manifest: ManifestOpt = None,
    store: StoreOpt = None,
    backend: BackendOpt = None,
    license_file: LicenseOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the snapshot here (default: stdout).")] = None,
    hash_files: Annotated[bool, typer.Option("--hash", help="Record the sha256 of every file (reads every byte).")] = False,
    host: Annotated[str | None, typer.Option("--host", help="Host name to record (default: this machine's).")] = None,
) -> None:
    """Record the store's inventory for fleet plans (plan --state). Changes nothing."""
    with _errors():
        loaded = load_manifest(manifest) if manifest else None
        with _scanned(loaded, store, backend, license_file, hash_all=hash_files) as scan:
            pass
        body = snapshot_doc(scan, host, hash_files)
        if out is None:
            typer.echo(render.dumps({**body, "checksum": checksum(body)}))
        else:
            write_document(out, body)
            typer.echo(f"Snapshot of {scan.root} ({len(scan.files)} files) written to {out}.", err=True)


@app.command("list")
def list_(
    manifest_file: Annotated[Path | None, typer.Argument(help="Optional manifest to classify files against.", show_default=False)] = None,
    store: StoreOpt = None,
    backend: BackendOpt = None,
    license_file: LicenseOpt = None,
    fmt: FormatOpt = "text",
    as_json: JsonOpt = False,
) -> None:
    """Show what the store holds: name, size, declared/whitelisted/unmanaged, engine visibility."""
    with _errors():
        fmt = _format(fmt, as_json)
        manifest = load_manifest(manifest_file) if manifest_file else None
        with _scanned(manifest, store, backend, license_file) as scan:
            pass
        typer.echo(render.render_list(render.list_doc(scan, manifest), fmt), nl=fmt != "markdown")


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
        store_root, backup_root = _settings(manifest, store, backup_dir)
        if os.path.isdir(store_root):
            _report_pending(resolve_root(store_root)[0])
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
    lock_timeout: LockTimeoutOpt = 0.0,
) -> None:
    """Put backed-up files back into the store; never overwrites a different file unless --force."""
    with _errors():
        _, backup_root = _settings(manifest, store, backup_dir)
        target = find_run(backup_root, run_id).store if store is None else str(store)  # the run's store, unless --store
        root, _ = resolve_root(target)
        with store_lock(root, lock_timeout, command="restore"):
            _recover(root)
            run = find_run(backup_root, run_id)
            result = restore_run(run, names or [], force, store_root=root)
        typer.echo(render.restore_text(run.run_id, result))


@app.command("recover")
def recover_(
    manifest: ManifestOpt = None,
    store: StoreOpt = None,
    lock_timeout: LockTimeoutOpt = 0.0,
) -> None:
    """Finish a run that a crash interrupted (apply and restore do this first by themselves)."""
    with _errors():
        store_root, _ = _settings(manifest, store, None)
        root, _ = resolve_root(store_root)
        with store_lock(root, lock_timeout, command="recover"):
            result = recover(root)
        typer.echo(render.recovery_text(result) if result else f"Nothing to recover on {root}.")


def main() -> None:
    """Console-script entry point."""
    app()
