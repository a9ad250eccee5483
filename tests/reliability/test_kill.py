"""kill -9 of real `ocr-reconcile` processes, driven deterministically: at every durable step of an
apply (one filesystem and two), at every step of a recovery, at seeded-random steps of stores of varied
size, and from outside at seeded delays. Every kill is followed by the full convergence check
(:func:`common.converge`): each original file exactly once, recover, apply, apply again a no-op."""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import pytest

from reconciler.base.errors import ExitCode
from reconciler.base.layout import INDEX_NAME
from reconciler.disk.journal import read_journal
from reconciler.disk.records import MoveDone, RunHeader

from .common import (
    DEMO_KEPT,
    SMALL_DEMO,
    Cli,
    assert_each_exactly_once,
    big_store,
    converge,
    journal_of,
    originals,
    popen,
    second_filesystem,
    wait_for,
    write_manifest,
)

KILLED = -signal.SIGKILL
CRASH_AT = "OCR_RECONCILE_CRASH_AT"
SEED = 20261124


def apply_steps(moves: int, cross: bool) -> int:
    """Durable steps of an apply of ``moves`` files: journal begun, run folder's index created; per file
    renamed, then one group commit recording them all (one filesystem), or copy written + copy renamed
    + source unlinked + recorded (across filesystems); final index written, old runs pruned, journal removed."""
    return 2 + (moves * 4 if cross else moves + 1) + 3


class Case(NamedTuple):
    manifest: Path
    store: Path
    backup_root: Path
    before: dict[str, str]


def make_case(folder: Path, backup_root: Path, stale: int = 0, size: int = 4096, layout: dict[str, int | str] | None = None) -> Case:
    """A demo store (small files unless ``layout`` says otherwise) plus ``stale`` extra stale files."""
    store = big_store(folder / "models", stale=stale, size=size, layout=layout or SMALL_DEMO)
    return Case(write_manifest(folder, store, backup_root), store, backup_root, originals(store))


def crash_apply(cli: Cli, case: Case, step: int, context: str) -> bool:
    """Run apply with the crash hook at ``step``. True if it was killed there; False if it completed."""
    result = cli.run("apply", str(case.manifest), "--yes", env={CRASH_AT: str(step)})
    if result.returncode != KILLED:
        assert result.returncode == ExitCode.OK, f"{context}: {result.stdout}{result.stderr}"
        assert_each_exactly_once(case.before, case.store, case.backup_root, f"{context}: ran to the end")
        return False
    assert f"SIGKILL at step {step} " in result.stderr, f"{context}: {result.stderr}"
    return True


def kill_at_every_step(cli: Cli, tmp_path: Path, backup_base: Path, label: str) -> int:
    """Kill an apply of the demo store at step 1, 2, ... until one completes; converge after each kill."""
    step = 1
    while True:
        case = make_case(tmp_path / f"{label}-{step}", backup_base / f"{label}-{step}")
        if not crash_apply(cli, case, step, f"{label}, step {step}"):
            return step - 1
        converge(cli, *case, context=f"{label}: killed at step {step}")
        step += 1


def test_kill_at_every_step_same_filesystem(cli: Cli, tmp_path: Path) -> None:
    """A kill -9 after each of the 10 durable steps of an apply (backup on the store's filesystem)
    loses and duplicates nothing, and recover + apply converge."""
    steps = kill_at_every_step(cli, tmp_path, tmp_path / "backups", "same-fs")
    print(f"\nkill at every step, same filesystem: {steps} steps")
    assert steps == apply_steps(len(DEMO_KEPT), cross=False) == 10


def test_kill_at_every_step_cross_filesystem(cli: Cli, tmp_path: Path) -> None:
    """The same across filesystems (copy, verify, rename, unlink): 21 steps, including the one instant
    where a file exists twice (renamed into place, original not yet unlinked)."""
    with second_filesystem() as other:
        if other is None:
            pytest.skip("no second filesystem (/dev/shm tmpfs) on this machine: cross-filesystem kills cannot run")
        steps = kill_at_every_step(cli, tmp_path, other, "cross-fs")
    print(f"\nkill at every step, across filesystems: {steps} steps")
    assert steps == apply_steps(len(DEMO_KEPT), cross=True) == 21


# An apply killed mid-run, then recover killed at each of its own steps. One filesystem: killed after
# its 3rd rename (none recorded yet: the group commit comes after the 4th), recover records the 3 from
# the disk (no crash step of its own), renames the 4th, commits, writes the index, prunes, removes the
# journal. Across filesystems: killed after the 2nd move's unlink, before its record; recover records
# it, copies the other 2 (4 steps each), then the same 3 final steps.
# filesystem -> (apply's crash step, recover's step count)
RECOVERY_CASES = {"same": (5, 1 + 1 + 3), "cross": (9, 2 * 4 + 3)}


@pytest.mark.parametrize("filesystem", sorted(RECOVERY_CASES))
def test_kill_recovery_itself_at_every_step(cli: Cli, tmp_path: Path, filesystem: str) -> None:
    """A crash during apply, then a crash during recover at each of recover's own steps: the next
    recover still finishes the run, nothing lost or doubled."""
    apply_step, recover_steps = RECOVERY_CASES[filesystem]
    with second_filesystem() as other:
        if filesystem == "cross" and other is None:
            pytest.skip("no second filesystem (/dev/shm tmpfs) on this machine")
        base = other if filesystem == "cross" and other is not None else tmp_path / "backups"
        step = 1
        while True:
            case = make_case(tmp_path / f"r{step}", base / f"r{step}")
            assert crash_apply(cli, case, apply_step, f"apply before recover step {step}")
            second = cli.run("recover", "-m", str(case.manifest), env={CRASH_AT: str(step)})
            if second.returncode != KILLED:
                assert second.returncode == ExitCode.OK, second.stderr
                converge(cli, *case, context=f"{filesystem}: recover ran to the end")
                break
            assert f"SIGKILL at step {step} " in second.stderr, second.stderr
            converge(cli, *case, context=f"{filesystem}: recover killed at step {step}")
            step += 1
    print(f"\nkill recovery itself ({filesystem} filesystem, apply killed at step {apply_step}): {step - 1} steps")
    assert step - 1 == recover_steps


CRASH_TRIALS = 30


def test_kill_at_seeded_random_steps(cli: Cli, tmp_path: Path) -> None:
    """Seeded-random kills through the crash hook: for each trial a store with 4 to 20 files to move
    (the demo's 4 plus 0 to 16) of 64 B to 1.2 MB (more than one copy chunk), the backup on the same or another filesystem, a step
    drawn from all of the apply's steps, and in about a third of the trials a second kill of the
    recover that follows, at a drawn step of its own. The apply must die at exactly the drawn step
    (this checks the step model on stores of every size), then converge. Same seed, same kills."""
    rng = random.Random(SEED)
    tally: Counter[str] = Counter()
    with second_filesystem() as other:
        for trial in range(CRASH_TRIALS):
            cross = rng.random() < 0.5 and other is not None  # always drawn: the same draws with or without /dev/shm
            stale = rng.choice([0, 1, 3, 8, 16])
            size = rng.choice([64, 4096, 65536, 1_200_000])
            total = apply_steps(4 + stale, cross)
            step = rng.randint(1, total)
            base = other if cross and other is not None else tmp_path / "backups"
            context = f"trial {trial} ({4 + stale} files of {size} B, {'cross' if cross else 'same'} fs): step {step} of {total}"
            case = make_case(tmp_path / f"t{trial}", base / f"t{trial}", stale=stale, size=size)
            assert crash_apply(cli, case, step, context), f"{context}: the apply has fewer steps than modelled"
            tally["cross-fs" if cross else "same-fs"] += 1
            if rng.random() < 0.35:
                again = cli.run("recover", "-m", str(case.manifest), env={CRASH_AT: str(rng.randint(1, total))})
                assert again.returncode in (KILLED, ExitCode.OK), f"{context}: {again.stderr}"
                tally["recover killed too" if again.returncode == KILLED else "recover survived its drawn step"] += 1
            converge(cli, *case, context=context)
    print(f"\nseeded crash-hook kills: {CRASH_TRIALS} trials, {dict(tally)}")


REAL_KILLS = 12


def classify(case: Case) -> str:
    """Where an external kill landed, read from the disk: a journal left behind means mid-run (with how
    many moves were recorded); no journal means before the run (store untouched, no backup run) or
    after it (a complete backup run, the store converged). Anything else is a broken invariant."""
    found = read_journal(journal_of(case.store))
    if found is not None:
        header, records = found
        done = sum(1 for r in records if isinstance(r, MoveDone))
        return f"mid-run ({done} of {len(header.moves) if isinstance(header, RunHeader) else 0} moves recorded)"
    runs = [p for p in case.backup_root.iterdir() if p.is_dir()] if case.backup_root.exists() else []
    if not runs:
        assert originals(case.store) == case.before, "no journal, no backup run, yet the store changed"
        return "before the run"
    [run] = runs
    index = json.loads((run / INDEX_NAME).read_text())
    assert index["status"] == "complete", f"no journal, yet the backup run is {index['status']}"
    assert set(originals(case.store)) == DEMO_KEPT, "no journal and a complete run, yet the store did not converge"
    return "after the run"


def kill_from_outside(case: Case, delay: float, from_journal: bool) -> None:
    """Start the console script's apply and SIGKILL it ``delay`` s after its start, or after its journal
    appears (``from_journal``; or after the run ended, if it ended first)."""
    proc = popen("apply", str(case.manifest), "--yes")
    try:
        if from_journal:
            journal = journal_of(case.store)
            wait_for(lambda: journal.exists() or proc.poll() is not None, "the journal or the end of the run")
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()


def test_real_sigkill_at_seeded_delays(cli: Cli, tmp_path: Path) -> None:
    """kill -9 sent from outside to the real console script (exec'd, not the fork server) at seeded
    delays, half counted from the process start and half from the moment its journal appears, on stores
    of 44 to 124 files (about 1 ms of work each here). Where each kill landed (before / mid-run / after)
    is read from the journal and reported, never counted against a quota: the machine's speed decides
    the mix. Whatever it is, the disk must be in one of those states and converge."""
    rng = random.Random(SEED + 1)
    landed: Counter[str] = Counter()
    print()
    with second_filesystem() as other:
        for trial in range(REAL_KILLS):
            cross = other is not None and trial % 2 == 0
            base = other if cross and other is not None else tmp_path / "backups"
            stale = rng.choice([40, 80, 120])
            size = rng.choice([16384, 65536, 262144])
            case = make_case(tmp_path / f"k{trial}", base / f"k{trial}", stale=stale, size=size, layout=SMALL_DEMO)
            from_journal = trial % 4 >= 2
            delay = rng.uniform(0.0, 0.04) if from_journal else rng.uniform(0.12, 0.3)
            kill_from_outside(case, delay, from_journal)
            where = classify(case)
            landed[where.split(" (")[0]] += 1
            what = f"{4 + stale} files of {size} B, {'cross' if cross else 'same'} fs"
            print(f"real kill {trial}: {what}, {delay:.3f} s after {'journal' if from_journal else 'start'}: {where}")
            converge(cli, *case, context=f"real kill {trial}, {where}")
    print(f"real kills: {REAL_KILLS}, landed {dict(landed)}")  # reported, never asserted: the machine decides the mix
