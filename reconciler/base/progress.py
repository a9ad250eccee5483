"""The progress seam: long work (hashing files) reports how far it got through a :class:`Progress`,
and a front end decides how to show it (the CLI: a Rich bar on a terminal, plain lines otherwise).
The core never prints; :class:`Silent` is the default."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives the progress of one piece of work: :meth:`begin`, :meth:`advance` (bytes done), :meth:`end`."""

    def begin(self, label: str, total_bytes: int) -> None: ...

    def advance(self, done_bytes: int) -> None: ...

    def end(self) -> None: ...

    def part(self, label: str, total_bytes: int) -> Progress:
        """One part of the work begun (one download of several): its own bytes; they count in the total too."""
        ...


class Silent:
    """Shows nothing: the library's default."""

    def begin(self, label: str, total_bytes: int) -> None:
        pass

    def advance(self, done_bytes: int) -> None:
        pass

    def end(self) -> None:
        pass

    def part(self, label: str, total_bytes: int) -> Progress:
        return self
