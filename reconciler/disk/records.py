"""The plain values of a journaled run: what a run is (:class:`Op`), why one entry moves
(:class:`Role`), one intended move (:class:`Move`) and the whole run as journaled before it starts
(:class:`RunHeader`). Values only: this module moves nothing and imports none of the modules that do
(``moves``, ``copying``, ``transfer``), so every one of them, and the API that builds runs, can import it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

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

    def to_json(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "role": self.role.value, "facts": asdict(self.facts)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Move:
        return cls(data["src"], data["dst"], Role(data["role"]), FileFacts(**data["facts"]))


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

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op.value,
            "run_id": self.run_id,
            "run_dir": self.run_dir,
            "store": self.store,
            "manifest": asdict(self.manifest),
            "created_ns": self.created_ns,
            "moves": [m.to_json() for m in self.moves],
            "keep": self.keep,
            "displaced_run_dir": self.displaced_run_dir,
            "token": self.token,
            "max_age_s": self.max_age_s,
            "store_id": list(self.store_id) if self.store_id else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunHeader:
        return cls(
            op=Op(data["op"]),
            run_id=str(data.get("run_id") or Path(data["run_dir"]).name),
            run_dir=data["run_dir"],
            store=data["store"],
            manifest=Provenance.from_json(data.get("manifest")),
            created_ns=int(data["created_ns"]),
            moves=tuple(Move.from_json(m) for m in data["moves"]),
            keep=data.get("keep"),
            displaced_run_dir=data.get("displaced_run_dir"),
            token=str(data.get("token") or ""),
            max_age_s=data.get("max_age_s"),
            store_id=(int(data["store_id"][0]), int(data["store_id"][1])) if data.get("store_id") else None,
        )
