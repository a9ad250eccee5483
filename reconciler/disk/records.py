"""The plain values of a journaled run: what a run is (:class:`Op`), why one entry moves
(:class:`Role`), one intended move (:class:`Move`), the whole run as journaled before it starts
(:class:`RunHeader`), and every other record a journal holds (:class:`MoveDone`, :class:`MoveSkipped`,
:class:`RunAbandoned`; :class:`TornHeader` and :class:`UnreadableHeader` for a header that is not a run).

Values only: this module moves nothing, reads and writes no file, and imports none of the modules that
do (``moves``, ``copying``, ``transfer``), so every one of them, and the API that builds runs, can import
it. How a record is written as a JSON line, and read back, is ``journal.py``'s alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from ..base.layout import temp_name
from ..read.scan import FileFacts
from .catalogue import Provenance


class Op(str, Enum):
    """What a run is: an apply (store -> new backup run) or a restore (backup run -> store)."""

    APPLY = "apply"
    RESTORE = "restore"
    INSTALL = "install"


class Role(str, Enum):
    """Why one entry moves: to a backup run, back into the store, or out of a restore's way."""

    BACKUP = "backup"
    RESTORE = "restore"
    DISPLACE = "displace"
    INSTALL = "install"  # a verified download (from the downloads folder's ``verified/``) into the store


@dataclass(frozen=True)
class Move:
    """One intended move of one entry; ``facts`` is the identity it must still have when moved."""

    src: str
    dst: str
    role: Role
    facts: FileFacts

    @property
    def name(self) -> str:
        return self.facts.name

    @property
    def key(self) -> str:
        """Journal key: a name can be both displaced and restored in one run."""
        return f"{self.role.value}:{self.name}"


@dataclass(frozen=True)
class RunHeader:
    """Everything a run will do, journaled before it starts. ``run_dir`` is the new run's folder for
    an apply and the source run's folder for a restore; ``displaced_run_dir`` receives the files a
    forced restore moves out of the way; ``keep`` prunes older runs after a complete apply."""

    op: Op
    run_id: str
    run_dir: str
    store: str
    manifest: Provenance
    created_ns: int
    moves: tuple[Move, ...]
    keep: int | None = None
    displaced_run_dir: str | None = None
    token: str = ""  # names the run's temporary files (:meth:`temp`)
    max_age_s: int | None = None  # with ``keep``: the retention applied after a complete apply
    store_id: tuple[int, int] | None = None  # the store folder's (device, inode) when the run began

    def temp(self, index: int) -> str:
        """The temporary name move ``index`` copies to, beside its destination."""
        return temp_name(self.token, index)


@dataclass(frozen=True)
class MoveDone:
    """The journal record of a completed move (written by a run, or by recovery from the disk): how
    it moved (``rename`` or ``copy``), the sha256 of the moved bytes when known without reading them
    again, and the placed entry's (device, inode, size, mtime_ns) when it could be seen. For a rename,
    ``sha256`` is the scan's (if it hashed): never take it for a hash of the bytes now in place."""

    key: str  # :attr:`Move.key`
    method: str
    sha256: str | None
    identity: tuple[int, int, int, int] | None


@dataclass(frozen=True)
class MoveSkipped:
    """The journal record of a move that was not made, and why (the entry stays where it was)."""

    key: str  # :attr:`Move.key`
    why: str


@dataclass(frozen=True)
class RunAbandoned:
    """The last record of a journal that ``recover --abandon`` kept aside: a journal holding one is
    never replayed (it is refused when read)."""

    ns: int  # when it was abandoned


@dataclass(frozen=True)
class TornHeader:
    """What a journal with no complete line reads as: the crash came while its header was written,
    before any move. Not a run: it names no move and no run folder."""


@dataclass(frozen=True)
class UnreadableHeader:
    """A header line that starts a journal but cannot be read as a run: ``op`` and ``run_id`` are
    what it says of itself (for the read-only report of a pending run), ``why`` the refusal that
    recovery raises. Never acted on."""

    op: str
    run_id: str | None
    why: str


Header: TypeAlias = RunHeader | TornHeader | UnreadableHeader  # the first line of a journal
Record: TypeAlias = MoveDone | MoveSkipped | RunAbandoned  # every line after it
