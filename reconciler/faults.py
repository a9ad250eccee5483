"""Test hooks for the reliability suite. Inert unless their environment variables are set.

- ``OCR_RECONCILE_CRASH_AT=K``: at the K-th durable step of a mutating command (see :func:`step`),
  the process kills itself with SIGKILL: a real kill -9, no cleanup, no ``finally``.
- ``OCR_RECONCILE_FAULT=eio-on-copy|enospc-on-copy``: the cross-filesystem copy fails with that
  errno after writing its first chunk (for machines where no small filesystem can be mounted).
- ``OCR_RECONCILE_PAUSE_AFTER_LOCK=SECONDS``: sleep while holding the store lock (to let other
  processes collide with it).

Never set these in production; they exist so that every crash point can be addressed by number.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time

CRASH_ENV = "OCR_RECONCILE_CRASH_AT"
FAULT_ENV = "OCR_RECONCILE_FAULT"
PAUSE_ENV = "OCR_RECONCILE_PAUSE_AFTER_LOCK"

_steps = 0


def step(name: str) -> None:
    """Mark one durable step (after its fsync). With ``OCR_RECONCILE_CRASH_AT=K``, die at the K-th."""
    global _steps
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
    seconds = os.environ.get(PAUSE_ENV)
    if seconds:
        time.sleep(float(seconds))
