"""How the CLI shows :class:`~.progress.Progress`: on a terminal, a Rich bar on stderr once the work
has taken a second; otherwise one plain line on stderr every 10 seconds. Never on stdout (which may
carry JSON), and nothing at all with ``--quiet``. Part of the CLI layer."""

from __future__ import annotations

import sys
import time
from typing import Any

from ..render.plans import format_size

SHOW_AFTER_S = 1.0
PLAIN_EVERY_S = 10.0


class TerminalProgress:
    """A :class:`~.progress.Progress` for the command line (Rich is imported only when a bar is shown)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._bar: Any = None
        self._task: Any = None
        self._parts: list[_Part] = []

    def begin(self, label: str, total_bytes: int) -> None:
        self.label, self.total, self.done = label, total_bytes, 0
        self.started = self.last = time.monotonic()
        self._parts = []

    def part(self, label: str, total_bytes: int) -> _Part:
        """A bar of its own under the total's (a download among several), shown with the total's."""
        one = _Part(self, label, total_bytes)
        self._parts.append(one)
        return one

    def advance(self, done_bytes: int) -> None:
        self.done += done_bytes
        if self.quiet:
            return
        now = time.monotonic()
        if sys.stderr.isatty():
            if self._bar is None and now - self.started >= SHOW_AFTER_S:
                from rich.console import Console
                from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

                columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True), TimeRemainingColumn())
                # its own console on stderr: Rich's default console writes to stdout, which may be JSON in a file
                self._bar = Progress(*columns, console=Console(stderr=True), transient=True)
                self._bar.start()
                self._task = self._bar.add_task(self.label, total=self.total or None)
                for one in self._parts:
                    one.task = self._bar.add_task(f"  {one.label}", total=one.total or None)
            if self._bar is not None:
                self._bar.update(self._task, completed=self.done)
                for one in self._parts:
                    if one.task is not None:
                        self._bar.update(one.task, completed=one.done)
        elif now - self.last >= PLAIN_EVERY_S:
            self.last = now
            sys.stderr.write(f"ocr-reconcile: {self.label}: {format_size(self.done)} of {format_size(self.total)}\n")
            sys.stderr.flush()

    def end(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class _Part:
    """One part's bytes: counted in its own bar and in the total (not thread-safe: callers serialise)."""

    def __init__(self, whole: TerminalProgress, label: str, total: int) -> None:
        self.whole, self.label, self.total, self.done = whole, label, total, 0
        self.task: Any = None

    def begin(self, label: str, total_bytes: int) -> None:
        pass

    def advance(self, done_bytes: int) -> None:
        self.done += done_bytes
        self.whole.advance(done_bytes)

    def end(self) -> None:
        pass

    def part(self, label: str, total_bytes: int) -> _Part:
        return self
