"""Test hooks for the reliability suite. Inert unless their environment variables are set.

- ``OCR_RECONCILE_CRASH_AT=K``: at the K-th durable step of a mutating command (see :func:`step`),
  the process kills itself with SIGKILL: a real kill -9, no cleanup, no ``finally``.
- ``OCR_RECONCILE_FAULT=eio-on-copy|enospc-on-copy``: the cross-filesystem copy fails with that
  errno after writing its first chunk (for machines where no small filesystem can be mounted).
- ``OCR_RECONCILE_HOLD_LOCK=DIR``: right after taking the store lock, the process creates the empty
  file ``DIR/locked.<pid>`` and holds the lock until the file ``DIR/release`` exists (checked every
  10 ms; after 120 s without it, it gives up waiting, says so on stderr and carries on, so that a
  broken test cannot hang forever). Tests use it to collide with a held lock on events, not sleeps:
  wait for ``locked.*``, run the contenders, then create ``release``.

In-process tests may also register a callable with :func:`hooked` to run at a named step or
event (a folder swapped for a link mid-copy, a file appearing before the final rename): the real
code runs, and the test acts at an exact point, without timing. Never set these in production;
they exist so that every crash point can be addressed by number and
every lock collision can be staged without depending on timing.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

CRASH_ENV = "OCR_RECONCILE_CRASH_AT"
FAULT_ENV = "OCR_RECONCILE_FAULT"
HOLD_LOCK_ENV = "OCR_RECONCILE_HOLD_LOCK"
HOLD_LOCK_CAP_SECONDS = 120.0
HOLD_LOCK_POLL_SECONDS = 0.01
LOCKED_PREFIX = "locked."
RELEASE_NAME = "release"

_steps = 0
_hooks: dict[str, Callable[[], object]] = {}


@contextmanager
def hooked(name: str, action: Callable[[], object]) -> Iterator[None]:
    """Run ``action`` at every :func:`step` or :func:`event` called ``name`` within the block (tests only)."""
    _hooks[name] = action
    try:
        yield
    finally:
        del _hooks[name]


def event(name: str) -> None:
    """A point a test may act at (see :func:`hooked`) that is not a durable step."""
    action = _hooks.get(name)
    if action is not None:
        action()


def step(name: str) -> None:
    """Mark one durable step (after its fsync). With ``OCR_RECONCILE_CRASH_AT=K``, die at the K-th."""
    global _steps
    event(name)
    _steps += 1
    target = os.environ.get(CRASH_ENV)
    if target and target.isdigit() and int(target) == _steps:
        sys.stderr.write(f"ocr-reconcile: crash hook: SIGKILL at step {_steps} ({name})\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def copy_fault() -> OSError | None:
    """The error the copy should fail with, if a fault is injected."""
    fault = os.environ.get(FAULT_ENV, "")
    if fault == "eio-on-copy":
        return OSError(errno.EIO, os.strerror(errno.EIO) + " (injected)")
    if fault == "enospc-on-copy":
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + " (injected)")
    return None


def pause_after_lock() -> None:
    """Called with the store lock held. With ``OCR_RECONCILE_HOLD_LOCK=DIR``: announce
    ``DIR/locked.<pid>``, then hold the lock until ``DIR/release`` exists (at most 120 s)."""
    folder = os.environ.get(HOLD_LOCK_ENV)
    if not folder:
        return
    with open(os.path.join(folder, f"{LOCKED_PREFIX}{os.getpid()}"), "w"):
        pass
    release = os.path.join(folder, RELEASE_NAME)
    deadline = time.monotonic() + HOLD_LOCK_CAP_SECONDS
    while not os.path.exists(release):
        if time.monotonic() >= deadline:
            sys.stderr.write(f"ocr-reconcile: hold-lock hook: no {release} after {HOLD_LOCK_CAP_SECONDS:g} s; carrying on\n")
            sys.stderr.flush()
            return
        time.sleep(HOLD_LOCK_POLL_SECONDS)
