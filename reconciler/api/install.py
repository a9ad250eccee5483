"""Installs: put a plan's declared-but-absent models (and replacements of mismatched ones) in place.

Runs after the apply's moves (which free space first, and move a replaced file to the backup run): each
model is downloaded and verified into the downloads folder beside the store (``fetch.py``; several at
once, each resumable), then every verified file is moved into the store in one journaled run (op
``install``), exactly as safe as a restore: a rename that never replaces (a file that appeared meanwhile
wins, and is reported), a verified copy where the store is on another filesystem, and ``recover``
finishing a run that was killed. Nothing unverified ever reaches the store. Decides nothing: the plan
says what to install.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from ..base.errors import ApplyError, InstallError, UsageError
from ..base.layout import downloads_path
from ..base.progress import Progress, Silent
from ..decide.plan import Change, Plan
from ..disk.catalogue import Entry, Provenance, new_run_id, open_backup_root
from ..disk.journal import StoreLock
from ..disk.records import Move, Op, Role, RunHeader
from ..disk.transfer import execute
from ..read.scan import stat_entry
from .fetch import VERIFIED, Budget, Wanted, fetch


@dataclass(frozen=True)
class InstallResult:
    """What an install did: the models now in the store, those skipped (something appeared in their
    place), and those that could not be fetched or verified (``(name, why)``: nothing of them entered)."""

    installed: tuple[Entry, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    failed: tuple[tuple[str, str], ...] = ()

    @property
    def bytes_installed(self) -> int:
        return sum(e.size for e in self.installed)


def install_models(plan: Plan, lock: StoreLock, progress: Progress | None = None) -> InstallResult:
    """Download, verify and move in the plan's installs (after its moves), with what the plan carries:
    each change's source, pin and size, and the plan's download settings. Raises ApplyError if the
    install run had to stop; a model that cannot be fetched is reported in ``failed``."""
    wanted = [_wanted(c) for c in plan.installs]
    if not wanted:
        return InstallResult()
    settings = plan.sources
    if settings is None or not plan.scan.live:
        raise UsageError("this plan was read from a document; apply the fresh plan, which carries its download settings")
    lock.check(plan.scan.root)
    root = plan.scan.root
    folder = downloads_path(root)
    shown = progress or Silent()
    with open_backup_root(folder, "downloads folder") as downloads:
        budget = Budget(plan.guards.max_install_bytes, downloads.fd)
        told, stopping = threading.Lock(), threading.Event()
        shown.begin(f"downloading {len(wanted)} model{'s' if len(wanted) != 1 else ''}", sum(w.size or 0 for w in wanted))
        parts = {want.name: shown.part(want.name, want.size or 0) for want in wanted}  # one bar each, under the total

        def one(want: Wanted) -> str:
            def advance(done: int) -> None:
                if stopping.is_set():  # Ctrl-C in the main thread: each download stops at its next chunk, resumable
                    raise KeyboardInterrupt
                with told:
                    parts[want.name].advance(done)

            try:
                fetch(want, downloads, settings, budget, advance)
            except InstallError as exc:
                return exc.problem
            except OSError as exc:
                return f"{exc.strerror or exc} in {folder}"
            return ""

        with ThreadPoolExecutor(max_workers=max(1, min(settings.parallel, len(wanted)))) as pool:
            futures = [pool.submit(one, want) for want in wanted]
            try:
                problems = [future.result() for future in futures]
            except BaseException:
                stopping.set()
                raise
        shown.end()
    failed = tuple((w.name, why) for w, why in zip(wanted, problems, strict=True) if why)
    ready = [w for w, why in zip(wanted, problems, strict=True) if not why]
    if not ready:
        return InstallResult(failed=failed)
    verified = folder / VERIFIED
    moves = []
    for want in ready:
        facts = stat_entry(os.fspath(verified), want.name)
        if facts is None:
            failed += ((want.name, "its verified download vanished before it could be moved in"),)
            continue
        facts = replace(facts, sha256=want.sha256)  # verified: a copy into the store checks it again on its one pass
        moves.append(Move(os.fspath(verified / want.name), os.path.join(root, want.name), Role.INSTALL, facts))
    ref = plan.manifest
    header = RunHeader(
        op=Op.INSTALL,
        run_id=new_run_id(),
        run_dir=os.fspath(verified),
        store=root,
        manifest=Provenance(ref.source, ref.sha256, ref.name),
        created_ns=time.time_ns(),
        moves=tuple(moves),
    )
    outcome = execute(header, lock, progress)
    if outcome.error:
        raise ApplyError(outcome.error)
    return InstallResult(outcome.moved, outcome.skipped, failed)


def _wanted(change: Change) -> Wanted:
    # a source always has a pin (the manifest refuses one without), and make_plan records both
    assert change.source is not None and change.pin is not None, f"install of {change.name!r} without a source and pin"
    return Wanted(change.name, change.source, change.pin, change.download)
