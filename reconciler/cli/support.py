"""The CLI's plumbing, kept apart so that ``cli.py`` holds only commands: the option types shared by
commands, the error-to-message mapping (the one place that adds flag hints to the core's errors),
and small helpers for prompts, formats and ``--state`` files. Part of the CLI layer: nothing below
the CLI imports it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shlex
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer._click.core import ParameterSource
from typer._click.globals import get_current_context  # Typer vendors click; pinned in pyproject.toml
from typer.core import TyperGroup

from ..api.session import Session, open_session
from ..base.errors import (
    ConfirmationRefused,
    ExitCode,
    GuardError,
    JournalError,
    LockedError,
    ManifestError,
    OutputError,
    PendingRunError,
    ReconcilerError,
    RelativeStoreError,
    RestoreConflictError,
    StalePlanError,
    StoreNotFound,
    UnknownRunError,
    UsageError,
)
from ..base.layout import JOURNAL_SUFFIX
from ..read.stores import BACKENDS
from ..render import plans as render, runs as render_runs
from .progress import TerminalProgress

log = logging.getLogger("reconciler")

if TYPE_CHECKING:
    from ..disk.recovery import Recovery


class Group(TyperGroup):
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
        for stream in (sys.stdout, sys.stderr):  # a name the terminal's encoding lacks is escaped, not a crash
            with contextlib.suppress(AttributeError, ValueError):
                stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        plain, sys.stdout = sys.stdout, PipeSafe(sys.stdout)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, windows_expand_args=windows_expand_args, **extra)
        except typer.TyperException as exc:  # usage errors: one line, exit 1 (not click's usage block and 2)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None and getattr(exc, "cmd", True) else ""
            typer.echo(f"error: {' '.join(exc.format_message().split())}{hint}", err=True)
            sys.exit(ExitCode.ERROR)
        except typer.Exit as exc:
            sys.exit(exc.exit_code)
        except (typer.Abort, KeyboardInterrupt):
            typer.echo("Interrupted.", err=True)
            sys.exit(ExitCode.INTERRUPTED)
        finally:
            sys.stdout.flush()
            sys.stdout = plain
        if rv == ExitCode.INTERRUPTED:  # Typer 0.29 turns a Ctrl-C into a silent return of 130
            typer.echo("Interrupted.", err=True)
        sys.exit(rv if isinstance(rv, int) else ExitCode.OK)


class PipeSafe:
    """Standard output, flushed line by line (a log keeps every line up to a kill), that goes quiet
    once its reader has gone (``plan | head -1``): a broken pipe is not an error, the command's work
    goes on and its exit code reflects the work. Only :meth:`Group.main` installs it."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._gone = False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                self._stream.write(text)
                if "\n" in text:
                    self._stream.flush()
            except BrokenPipeError:
                self._silence()
            except OSError as exc:  # e.g. > /dev/full: one error line, and a quiet exit
                self._silence()
                raise OutputError(f"cannot write the output: {exc.strerror or exc}") from None
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._silence()
            except OSError as exc:
                self._silence()
                raise OutputError(f"cannot write the output: {exc.strerror or exc}") from None

    def _silence(self) -> None:
        self._gone = True
        try:  # so that the interpreter's own flush at exit finds no reader gone either
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


ManifestArg = Annotated[Path, typer.Argument(metavar="MANIFEST", help="Manifest YAML file.", show_default=False)]
StoreOpt = Annotated[
    Path | None, typer.Option("--store", metavar="DIR", envvar="OCR_RECONCILE_STORE", help="Model folder; overrides store.path.")
]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend", metavar="|".join(BACKENDS), envvar="OCR_RECONCILE_BACKEND", help=f"Override store.backend ({'|'.join(BACKENDS)})."
    ),
]
LicenseOpt = Annotated[
    Path | None,
    typer.Option(
        "--license", metavar="FILE", envvar="OCR_RECONCILE_LICENSE", help="Aspose license file to apply (lifts the evaluation filter)."
    ),
]
ShowUnchangedOpt = Annotated[bool, typer.Option("--show-unchanged", help="List unchanged (kept) files too, not only their count.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Same as --format json.")]
FormatOpt = Annotated[str, typer.Option("--format", metavar="text|json|markdown", help="Output format.")]
MaxDeleteOpt = Annotated[
    int | None,
    typer.Option("--max-delete", metavar="N", min=0, help="Refuse to move more files than this (stricter of this and limits.max_delete)."),
]
LockTimeoutOpt = Annotated[
    float, typer.Option("--lock-timeout", metavar="SECONDS", min=0, help="Wait this many seconds for another run's store lock.")
]
AllowEmptyOpt = Annotated[
    bool, typer.Option("--allow-empty", help="Allow a plan that moves every file, or whose manifest declares no models.")
]
BackupDirOpt = Annotated[
    Path | None, typer.Option("--backup-dir", metavar="DIR", envvar="OCR_RECONCILE_BACKUP_DIR", help="Backup folder; overrides backup.dir.")
]
ManifestOpt = Annotated[
    Path | None, typer.Option("--manifest", "-m", metavar="MANIFEST", help="Manifest to take the store and backup settings from.")
]


def _hint(exc: ReconcilerError) -> str:
    """How to get past ``exc`` with this command's flags ("" when there is nothing to add)."""
    if isinstance(exc, StoreNotFound):
        return "; pass --store to restore elsewhere" if exc.for_restore else " (create it, or set store.path / --store)"
    if isinstance(exc, LockedError):
        return "; retry, or pass --lock-timeout SECONDS to wait"
    if isinstance(exc, RelativeStoreError):
        return " (or pass --store DIR, or set OCR_RECONCILE_STORE)"
    if isinstance(exc, JournalError):
        return " (ocr-reconcile recover --abandon releases the store without moving anything; see docs/reliability.md)"
    if isinstance(exc, PendingRunError):
        return f"; run ocr-reconcile recover --store {shlex.quote(exc.journal.removesuffix(JOURNAL_SUFFIX))} first"
    if isinstance(exc, UnknownRunError) and not exc.candidates:
        if not os.path.isdir(exc.backup_root):
            return "; no such folder: no apply has moved files out of this store, or the store is another (-m MANIFEST or --store)"
        return " (see: ocr-reconcile backups)"
    if isinstance(exc, RestoreConflictError) and not exc.unmovable:
        return " (--force moves it to a new backup run first)"
    return ""


def messages(exc: ReconcilerError) -> list[str]:
    """The lines printed for ``exc``, each prefixed with ``error:`` by the caller."""
    if isinstance(exc, GuardError):
        return ["; ".join(render.violation_text(v) for v in exc.violations) + "; nothing was moved"]
    if isinstance(exc, ManifestError):
        lines = list(exc.problems)
    elif isinstance(exc, StalePlanError):
        lines = [f"{exc.subject} is stale; nothing was changed:", *exc.differences]
    else:
        lines = [str(exc)]  # one line: a newline inside a path is escaped when printed, never a line break
    lines = [line for line in lines if line] or [type(exc).__name__]
    lines[-1] += _hint(exc)
    return lines


@contextmanager
def errors() -> Iterator[None]:
    """Map the core's error hierarchy to one message per line and the class's exit code."""
    try:
        yield
    except ReconcilerError as exc:
        for line in messages(exc):
            typer.echo(f"error: {render.safe(line)}", err=True)  # a path with a newline stays on its line
        raise typer.Exit(exc.exit_code) from None
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:  # a bug: say so in one line, no traceback
        log.debug("internal error", exc_info=True)
        typer.echo(f"error: internal error: {type(exc).__name__}: {exc} (please report it)", err=True)
        raise typer.Exit(ExitCode.ERROR) from None


def report_pending(session: Session, root: str | None = None) -> None:
    """Warn about an interrupted run on ``root`` (default: the session's store); read-only commands
    do not recover it."""
    try:
        root = root or session.store_root()
    except StoreNotFound:
        return
    pending = session.pending(root)
    if pending is not None:
        typer.echo(
            f"warning: an interrupted {pending.op} ({pending.run_id or '?'}) was found on {root}; "
            f"run 'ocr-reconcile recover --store {shlex.quote(root)}' (apply and restore do it first)",
            err=True,
        )


def say_recovery(recovery: Recovery | None) -> None:
    """Tell what finishing an interrupted run did, on stderr (before the plan)."""
    if recovery is not None:
        typer.echo(render_runs.recovery_text(recovery), err=True)


def output_format(fmt: str, as_json: bool, formats: tuple[str, ...] = render.FORMATS) -> str:
    """The format asked for with ``--format`` (one of ``formats``) or ``--json``; UsageError otherwise."""
    if fmt not in formats:
        raise UsageError(f"--format must be one of {', '.join(formats)} (got {fmt!r})")
    if as_json and fmt not in ("text", "json"):
        raise UsageError(f"--json and --format {fmt} ask for different formats; give one")
    return "json" if as_json else fmt


@dataclass(frozen=True)
class Settings:
    """The global options (``--quiet``, ``--color``, ``--no-cache``) of one invocation: the app's
    callback puts them on the Typer context (``ctx.obj``); read them with :func:`settings`."""

    quiet: bool = False
    color: str = "auto"
    no_cache: bool = False


def settings() -> Settings:
    """This invocation's global options, from the current context (the defaults outside a command)."""
    ctx = get_current_context(silent=True)
    found = ctx.find_object(Settings) if ctx is not None else None
    return found or Settings()


@contextmanager
def open_store_session(*args: Any, **kwargs: Any) -> Iterator[Session]:
    """:func:`~.api.open_session` with this invocation's global options (``--no-cache``, ``--quiet``);
    its progress display is closed on every exit path (a bar left running would hide the cursor)."""
    kwargs.setdefault("hash_cache", not settings().no_cache)
    progress = kwargs.setdefault("progress", TerminalProgress(settings().quiet))
    try:
        with open_session(*args, **kwargs) as session:
            yield session
    finally:
        progress.end()


def colour() -> bool:
    return render.use_colour(sys.stdout.isatty(), settings().color)


def view(show_unchanged: bool = False) -> render.View:
    """How this invocation shows a plan as text."""
    return render.View(colour(), show_unchanged, settings().quiet, sys.stdout.isatty())


def say(text: str) -> None:
    """Informational output: printed unless ``--quiet``."""
    if not settings().quiet:
        typer.echo(text)


def state_files(states: list[Path]) -> list[Path]:
    """The snapshot files of every ``--state`` (repeated): each a file, a folder of ``*.json``, or a
    quoted glob."""
    paths: list[Path] = []
    for item in states:
        if item.is_dir():
            found = sorted(item.glob("*.json"))
        elif any(ch in str(item) for ch in "*?["):
            found = sorted(Path().glob(str(item))) if not item.is_absolute() else sorted(Path("/").glob(str(item)[1:]))
        else:
            found = [item]
        if not found:
            raise UsageError(f"--state {item}: no snapshot files found")
        paths += found
    return paths


def _wait_for_input_or_signal(prompt: str) -> None:
    """Show ``prompt``, then block until standard input has a line, in a way a Ctrl-C always ends.

    Measured (1 in 25 prompts on a loaded machine): once the engine's .NET runtime is loaded, its
    signal handling can take a SIGINT on another thread and pass it on to Python's handler there, so
    Python's flag is set but the main thread's ``read()`` is never interrupted and the prompt waits
    for ever. Waiting in ``select`` on stdin and Python's wakeup fd wakes on either, and Python then
    raises KeyboardInterrupt as usual.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous = signal.set_wakeup_fd(write_end)  # before the prompt: a Ctrl-C can only follow it
    try:
        typer.echo(prompt, nl=False)
        select.select([sys.stdin, read_end], [], [])
    except KeyboardInterrupt:  # as click's own prompt does: "Interrupted." and exit 130 follow
        typer.echo(err=True)
        raise typer.Abort() from None
    finally:
        signal.set_wakeup_fd(previous)
        os.close(read_end)
        os.close(write_end)


YesOpt = Annotated[bool, typer.Option("--yes", "-y", "--auto-approve", help="Do not ask for confirmation (--auto-approve: the same).")]


def confirm(question: str, yes: bool, unchanged: str = "nothing was moved") -> None:
    """Ask ``question`` on a terminal; refuse (ConfirmationRefused, saying ``unchanged``) off one or on no."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfirmationRefused(f"standard input is not a terminal; pass --yes to go ahead without asking; {unchanged}")
    _wait_for_input_or_signal(f"{question} [y/N]: ")
    if not typer.confirm("", default=False, show_default=False, prompt_suffix=""):
        raise ConfirmationRefused(f"not confirmed; {unchanged}")


def typed(ctx: typer.Context, name: str) -> bool:
    """Whether parameter ``name`` was given on the command line (not from a variable or its default)."""
    return ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
