"""The ``ocr-reconcile`` command: a thin client of the library API. Each command parses its arguments,
makes one or two API calls, renders the values it gets back (``render/``) and exits with an ``ExitCode``.
No workflow lives here; errors are mapped to one line each plus a hint naming this command's flags."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from ..api.freshness import plan_fleet
from ..api.outcomes import Proposal
from ..base.errors import ExitCode, ManifestError, ReconcilerError, StalePlanError, UsageError
from ..base.version import __version__
from ..decide.plan import FleetPlan, Plan
from ..decide.planfile import load_plan, save_plan, save_snapshot, with_checksum
from ..disk.catalogue import BackupRun
from ..read.manifest import load_manifest
from ..render import check as render_check, plans as render, runs as render_runs
from . import adapt
from .backups import backups_app
from .restore import recover_, restore
from .support import (
    AllowEmptyOpt,
    BackendOpt,
    BackupDirOpt,
    FormatOpt,
    Group,
    JsonOpt,
    LicenseOpt,
    LockTimeoutOpt,
    ManifestArg,
    ManifestOpt,
    MaxDeleteOpt,
    Settings,
    ShowUnchangedOpt,
    StoreOpt,
    YesOpt,
    colour,
    confirm,
    errors,
    open_store_session,
    output_format,
    report_pending,
    say_recovery,
    settings,
    state_files,
    typed,
    view,
)

log = logging.getLogger("reconciler")

app = typer.Typer(
    cls=Group,
    help="Make an Aspose OCR AI model folder match a declared manifest: validate, plan, apply, restore.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ocr-reconcile {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log engine and store steps to stderr.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only outcomes, summaries, warnings and errors.")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Hash pinned models again instead of trusting the hash cache.")] = False,
    color: Annotated[
        str, typer.Option("--color", metavar="auto|always|never", help="Colour the plan (auto: on a terminal, unless NO_COLOR is set).")
    ] = "auto",
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    if color not in ("auto", "always", "never"):
        raise typer.BadParameter(f"must be auto, always or never (got {color!r})", param_hint="--color")
    ctx.obj = Settings(quiet, color, no_cache)
    handler = logging.StreamHandler(sys.stderr)  # ours only: a library's own warnings (urllib3's name URLs) stay out
    handler.setFormatter(logging.Formatter("ocr-reconcile: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO if verbose else logging.WARNING)
    log.propagate = False


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(metavar="MANIFEST", help="Manifest files to check.", show_default=False)],
) -> None:
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
        typer.echo(f"{failed} of {render.count(len(files), 'manifest')} invalid.", err=True)
        raise typer.Exit(ExitCode.ERROR)


# plan's options that name a live store, by parameter name
LIVE_ONLY = {"out": "--out", "store": "--store", "backend": "--backend", "license_file": "--license", "backup_dir": "--backup-dir"}


@app.command()
def plan(
    ctx: typer.Context,
    manifest_file: ManifestArg,
    store: StoreOpt = None,
    backend: BackendOpt = None,
    license_file: LicenseOpt = None,
    fmt: FormatOpt = "text",
    as_json: JsonOpt = False,
    out: Annotated[
        Path | None, typer.Option("--out", metavar="PLAN.json", help="Save the plan (JSON, checksummed) for apply PLANFILE.")
    ] = None,
    state: Annotated[
        list[Path] | None,
        typer.Option(
            "--state",
            metavar="SNAPSHOT",
            help="Plan against snapshot files instead of the live store (repeat it; a file, a folder or a quoted glob).",
        ),
    ] = None,
    max_delete: MaxDeleteOpt = None,
    allow_empty: AllowEmptyOpt = False,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 0 no changes, 2 changes pending, 3 cannot converge, 1 error.")
    ] = False,
    show_unchanged: ShowUnchangedOpt = False,
    backup_dir: BackupDirOpt = None,
) -> None:
    """Show what apply would do. Changes nothing. Exits 0 when the plan was made (see --detailed-exitcode)."""
    with errors():
        fmt = output_format(fmt, as_json)
        snapshots = state_files(state or [])
        if out is not None and out.suffix != ".json":
            raise UsageError(f"--out {out}: a saved plan's name must end in .json (apply tells plans from manifests by it)")
        manifest = load_manifest(manifest_file)
        pruning: list[BackupRun] = []
        if snapshots:
            given = [flag for name, flag in LIVE_ONLY.items() if typed(ctx, name)]
            if given:  # the same settings from OCR_RECONCILE_* variables are for live stores: ignored here
                raise UsageError(f"--state plans snapshots, not a live store: {', '.join(given)} cannot be combined with it")
            result: Plan | FleetPlan = plan_fleet(manifest, snapshots, max_delete, allow_empty)
        else:
            with open_store_session(manifest, store, backend, license_file, backup_dir=backup_dir) as session:
                report_pending(session)
                result = live = session.plan(max_delete, allow_empty)
                pruning = session.would_prune(live)
                retention = session.retention()
            if out is not None:
                save_plan(out, live)
        shown = view(show_unchanged)
        if fmt == "json" and not shown.on_terminal:
            render.write_plan_json(result, sys.stdout)  # streamed: a 100,000-file plan is never one string
        else:
            typer.echo(render.render_plan(result, fmt, shown), nl=fmt != "markdown", color=colour())
        if fmt == "text" and not snapshots and pruning:
            typer.echo(render_runs.after_apply_text(pruning, retention))
        if out is not None:
            typer.echo(f"Saved plan to {out}. Apply exactly this plan with: ocr-reconcile apply {out}", err=True)
    raise typer.Exit(result.detailed_exit_code if detailed_exitcode else ExitCode.OK)


@app.command()
def apply(
    source: Annotated[
        Path,
        typer.Argument(metavar="MANIFEST|PLANFILE", help="Manifest (YAML), or a plan saved by plan --out (.json).", show_default=False),
    ],
    store: StoreOpt = None,
    backend: BackendOpt = None,
    license_file: LicenseOpt = None,
    backup_dir: BackupDirOpt = None,
    yes: YesOpt = False,
    max_delete: MaxDeleteOpt = None,
    allow_empty: AllowEmptyOpt = False,
    lock_timeout: LockTimeoutOpt = 0.0,
    show_unchanged: ShowUnchangedOpt = False,
) -> None:
    """Re-plan (or verify a saved plan), show it, confirm, then move unmanaged files to a backup run.

    A saved plan is what was reviewed: it is applied without asking (once verified unchanged). Holds
    the store lock throughout, and first finishes any run a crash interrupted."""
    with errors():
        if source.suffix == ".json" and (store or backend):
            raise UsageError("a saved plan is applied to the store it was made for: --store and --backend go with plan")
        saved = load_plan(source) if source.suffix == ".json" else None

        def show(proposal: Proposal) -> None:
            typer.echo(render.plan_text(proposal.plan, view(show_unchanged)), color=colour())

        def ask(proposal: Proposal) -> bool:
            if proposal.pruning:
                typer.echo(render_runs.after_apply_text(list(proposal.pruning), proposal.retention))
            # a saved plan is what was reviewed; the runs retention deletes are not in it, so they are asked about
            question = render_runs.apply_question(proposal.plan, proposal.backup_root, list(proposal.pruning))
            confirm(question, yes or (saved is not None and not proposal.pruning))
            return True

        given = None if saved else source
        with open_store_session(
            given, store, backend, license_file, backup_dir=backup_dir, lock_timeout=lock_timeout, saved=saved
        ) as session:
            done = session.converge(ask, show=show, recovered=say_recovery, max_delete=max_delete, allow_empty=allow_empty)
        outcome, result = done.result, done.plan
        if outcome is None:
            raise typer.Exit(ExitCode.OK)
        undo_store = store or (result.scan.root if saved else None)
        undo = f" -m {result.manifest.source}" + (f" --store {undo_store}" if undo_store else "")
        undo += f" --backup-dir {done.proposal.backup_root}" if backup_dir else ""
        sizes = {r.run_id: r.size for r in done.proposal.pruning}
        typer.echo(render_runs.apply_text(outcome, undo, settings().quiet, sizes))
        for name, why in outcome.install.failed:
            typer.echo(f"error: cannot install {render.safe(name)}: {render.safe(why)}", err=True)
    failed, skipped = outcome.install.failed, outcome.skipped or outcome.install.skipped
    raise typer.Exit(ExitCode.ERROR if failed else ExitCode.CHANGES if skipped else ExitCode.OK)


@app.command()
def show(
    plan_file: Annotated[Path, typer.Argument(metavar="PLANFILE", help="A plan saved by plan --out.", show_default=False)],
    fmt: FormatOpt = "text",
    as_json: JsonOpt = False,
    show_unchanged: ShowUnchangedOpt = False,
) -> None:
    """Render a saved plan without applying it; warn (exit 0 all the same) when it is stale."""
    with errors():
        fmt = output_format(fmt, as_json)
        if plan_file.suffix in (".yaml", ".yml"):
            raise UsageError(f"{plan_file} is a manifest; saved plans come from plan --out (a .json file); plan shows a manifest")
        saved = load_plan(plan_file)
        shown = render.dumps(with_checksum(saved.to_doc())) if fmt == "json" else render.render_plan(saved.plan, fmt, view(show_unchanged))
        typer.echo(shown, nl=fmt != "markdown", color=colour())
        try:  # read with the directory backend: no engine needed to tell staleness
            with open_store_session(backend="directory", saved=saved) as session:
                report_pending(session)
                session.verify(saved, same_backend=False, read_only=True)
        except StalePlanError as exc:
            for line in ["this plan is stale; apply would refuse it:", *exc.differences]:
                typer.echo(f"warning: {line}", err=True)
        except ReconcilerError as exc:
            typer.echo(f"warning: cannot check whether this plan is stale: {exc}", err=True)


@app.command()
def check(
    manifest_file: ManifestArg,
    store: StoreOpt = None,
    backend: BackendOpt = None,
    license_file: LicenseOpt = None,
    fmt: Annotated[str, typer.Option("--format", metavar="text|json|prometheus", help="Output format.")] = "text",
    as_json: JsonOpt = False,
) -> None:
    """Read-only drift check for monitoring: exit 0 converged, 2 drift (to move or missing), 1 error.

    --format prometheus writes the node_exporter textfile collector's format."""
    with errors():
        fmt = output_format(fmt, as_json, ("text", "json", "prometheus"))
        try:
            with open_store_session(manifest_file, store, backend, license_file) as session:
                report_pending(session)
                result = session.plan()
        except ReconcilerError:
            if fmt == "prometheus":  # a textfile collector must see the failure, not an empty or stale file
                typer.echo(render_check.check_failed_prometheus(time.time()), nl=False)
            raise
        drift = not result.in_sync
        if fmt == "json":
            typer.echo(render.dumps(render_check.check_doc(result, time.time())))
        elif fmt == "prometheus":
            typer.echo(render_check.check_prometheus(result, time.time()), nl=False)
        else:
            typer.echo(render_check.check_text(result))
    raise typer.Exit(ExitCode.CHANGES if drift else ExitCode.OK)


@app.command()
def snapshot(
    manifest: ManifestOpt = None,
    store: StoreOpt = None,
    backend: BackendOpt = None,
    license_file: LicenseOpt = None,
    out: Annotated[Path | None, typer.Option("--out", metavar="FILE", help="Write the snapshot here (default: stdout).")] = None,
    hash_files: Annotated[bool, typer.Option("--hash", help="Record the sha256 of every file (reads every byte).")] = False,
    host: Annotated[str | None, typer.Option("--host", metavar="NAME", help="Host name to record (default: this machine's).")] = None,
) -> None:
    """Record the store's inventory for fleet plans (plan --state). Changes nothing."""
    with errors():
        if out is not None and out.suffix != ".json":
            raise UsageError(f"--out {out}: a snapshot's name must end in .json (plan --state reads *.json from a folder)")
        with open_store_session(manifest, store, backend, license_file) as session:
            report_pending(session)
            snap = session.snapshot(hash_files, host)
        if out is None:
            typer.echo(render.dumps(with_checksum(snap.to_doc())))
        else:
            save_snapshot(out, snap)
            typer.echo(f"Snapshot of {snap.scan.root} ({render.count(len(snap.scan.files), 'file')}) written to {out}.", err=True)


@app.command("list")
def list_(
    manifest_file: Annotated[
        Path | None, typer.Argument(metavar="MANIFEST", help="Optional manifest to classify files against.", show_default=False)
    ] = None,
    store: StoreOpt = None,
    backend: BackendOpt = None,
    license_file: LicenseOpt = None,
    fmt: FormatOpt = "text",
    as_json: JsonOpt = False,
) -> None:
    """Show what the store holds: name, size, declared/whitelisted/unmanaged, engine visibility."""
    with errors():
        fmt = output_format(fmt, as_json)
        with open_store_session(manifest_file, store, backend, license_file) as session:
            report_pending(session)
            scan = session.scan()
        typer.echo(render.render_list(scan, session.manifest, fmt), nl=fmt != "markdown")


app.command()(restore)
app.command("recover")(recover_)
app.add_typer(backups_app, name="backups")


def main() -> None:
    """Console-script entry point: adapts Typer (``adapt.install``), then runs the app."""
    adapt.install()
    app()
