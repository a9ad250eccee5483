"""Plan, fleet-plan and snapshot documents: build them from values, write and read them back as values.

The JSON shapes are versioned (``docs/plan-format.md``, ``schemas/plan.schema.json``). Files written
here carry a ``format_version`` (only major version 1 is read), a ``kind`` (``saved-plan`` or
``snapshot``) and a ``checksum`` of their body, so a corrupt or hand-edited file is refused, as
Terraform refuses a plan file from another version. Reading gives frozen values (:class:`SavedPlan`,
:class:`Snapshot`), never raw dicts. This module decides nothing about the store; it only says
whether the world still matches a document. Change ``PLAN_FORMAT_VERSION`` with the document
(the major number for breaking changes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..base.errors import PlanFileError, UsageError
from ..base.jsonout import Lazy, json_text
from ..base.version import __version__
from ..read.manifest import ManifestRef, load_schema
from ..read.scan import FileFacts, StoreScan
from ..read.sources import SourceSettings, shown
from .plan import Action, Change, FleetPlan, Guards, Plan, assemble

PLAN_FORMAT_VERSION = "1.3"
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
SUPPORTED_MAJOR = "1"
PLAN_SCHEMA = "plan.schema.json"
SAVED_PLAN, SNAPSHOT = "saved-plan", "snapshot"


def iso_time(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))


# -- values -> documents ------------------------------------------------------------------------------


def facts_doc(facts: FileFacts) -> dict[str, Any]:
    """One scanned entry: its identity (the plan's fingerprint) and what the engine showed."""
    return {
        "kind": facts.kind,
        "size": facts.size,
        "mtime_ns": facts.mtime_ns,
        "inode": facts.inode,
        "link_target": facts.link_target,
        "symlinked_folder": facts.symlinked_folder,
        "engine_visible": facts.engine_visible,
        "sha256": facts.sha256,
    }


def store_doc(scan: StoreScan) -> dict[str, Any]:
    engine = None
    if scan.engine_listed is not None:
        engine = {"licensed": scan.engine_licensed, "listed": scan.engine_listed, "hid_files": scan.engine_hidden > 0}
    return {"path": scan.root, "backend": scan.backend, "engine": engine, "inode": scan.root_inode}


def plan_doc(plan: Plan, lazy: bool = False) -> dict[str, Any]:
    """The versioned plan document. ``host`` is the snapshot's host (null for a live store).
    ``lazy``: its changes are a :class:`Lazy` array, for :func:`write_json` only."""
    summary = plan.summary
    return {
        "format_version": PLAN_FORMAT_VERSION,
        "tool_version": __version__,
        "host": plan.scan.host,
        "manifest": {
            "name": plan.manifest.name,
            "source": plan.manifest.source,
            "path": plan.manifest.path,
            "sha256": plan.manifest.sha256,
            "models": plan.manifest.models,
        },
        "store": store_doc(plan.scan),
        "summary": {
            **{action.value: n for action, n in summary.counts},
            "bytes_freed": summary.bytes_freed,
            "bytes_to_download": summary.bytes_to_download,
            "has_changes": summary.has_changes,
            "converges": summary.converges,
        },
        "guards": {
            "max_delete": plan.guards.max_delete,
            "max_delete_bytes": plan.guards.max_delete_bytes,
            "allow_empty": plan.guards.allow_empty,
            "max_install_bytes": plan.guards.max_install_bytes,
            "violations": [v.message for v in plan.violations],
            "violation_details": [{"guard": v.guard.value, "message": v.message} for v in plan.violations],
        },
        "changes": (Lazy if lazy else list)(map(_change_doc, plan.changes)),
        "sources": sources_doc(plan.sources) if plan.sources is not None else None,
        "warnings": list(plan.scan.warnings),
    }


def sources_doc(s: SourceSettings) -> dict[str, Any]:
    mirror = shown(s.mirror) if s.mirror is not None else None
    return {"mirror": mirror, "timeout_s": s.timeout_s, "retries": s.retries, "parallel": s.parallel, "on_mismatch": s.on_mismatch}


def _change_doc(c: Change) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": c.name, "actions": [c.action.value], "reason": c.reason}
    doc["before"] = facts_doc(c.before) if c.before is not None else None
    if c.source is not None:
        doc |= {"source": shown(c.source), "download": c.download, "pin": c.pin}
    return doc


def fleet_doc(fleet: FleetPlan, lazy: bool = False) -> dict[str, Any]:
    """Plans for many hosts (one per snapshot), in one document (``lazy``: as for :func:`plan_doc`)."""
    return {
        "format_version": PLAN_FORMAT_VERSION,
        "tool_version": __version__,
        "kind": "fleet-plan",
        "hosts": (Lazy if lazy else list)(plan_doc(p, lazy) for p in fleet.hosts),
    }


def snapshot_doc(snapshot: Snapshot) -> dict[str, Any]:
    """A store inventory for fleet plans: what ``plan --state`` needs instead of a live store."""
    scan = snapshot.scan
    return {
        "format_version": PLAN_FORMAT_VERSION,
        "kind": SNAPSHOT,
        "tool_version": __version__,
        "host": scan.host,
        "created": snapshot.created,
        "hashed": snapshot.hashed,
        "store": store_doc(scan),
        "files": [{"name": f.name, **facts_doc(f)} for f in scan.files],
        "warnings": list(scan.warnings),
    }


# -- documents -> values ------------------------------------------------------------------------------


def _facts(name: str, data: dict[str, Any]) -> FileFacts:
    """Facts read back from a document (device numbers are not recorded: 0)."""
    return FileFacts(
        name=name,
        kind=data["kind"],
        size=data["size"],
        mtime_ns=data["mtime_ns"],
        inode=data["inode"],
        dev=0,
        link_target=data["link_target"],
        symlinked_folder=data["symlinked_folder"],
        engine_visible=data["engine_visible"],
        sha256=data["sha256"],
    )


def _scan(store: dict[str, Any], files: tuple[FileFacts, ...], warnings: list[str], host: str | None) -> StoreScan:
    engine = store["engine"]
    return StoreScan(
        root=store["path"],
        backend=store["backend"],
        files=files,
        engine_licensed=engine["licensed"] if engine else None,
        engine_listed=engine["listed"] if engine else None,
        warnings=tuple(warnings),
        host=host,
        live=False,
        root_inode=store.get("inode"),  # format 1.3
    )


def plan_from_doc(doc: dict[str, Any]) -> Plan:
    """The Plan a (schema-valid) plan document records; guard violations are recomputed."""
    changes = [
        Change(
            c["name"],
            Action(c["actions"][0]),
            c["reason"],
            _facts(c["name"], c["before"]) if c["before"] else None,
            c.get("source"),
            c.get("download"),
            c.get("pin"),  # format 1.3
        )
        for c in doc["changes"]
    ]
    m = doc["manifest"]
    declared = m.get("models")
    if declared is None:  # format 1.0 did not record it: count what the plan shows as declared
        declared = sum(1 for c in changes if c.action.blocks or c.reason == "declared")
    ref = ManifestRef(m["name"], m["source"], m["path"], m["sha256"], declared)
    files = tuple(c.before for c in changes if c.before is not None)
    g = doc["guards"]
    plan = assemble(
        ref,
        _scan(doc["store"], files, doc["warnings"], doc["host"]),
        changes,
        Guards(g["max_delete"], g["max_delete_bytes"], g["allow_empty"], g.get("max_install_bytes")),
    )
    return replace(plan, sources=_sources(doc.get("sources")))


def _sources(data: dict[str, Any] | None) -> SourceSettings | None:
    """The download settings a document records (format 1.3); None for an older one (not recorded)."""
    if data is None:
        return None
    return SourceSettings(data["mirror"], data["timeout_s"], data["retries"], data["parallel"], data["on_mismatch"])


@dataclass(frozen=True)
class SavedPlan:
    """A plan read back from ``plan --out``: the plan as it was, when it was made, by which version.

    Render it or :meth:`~.api.Session.verify` it against the store; never apply it directly.
    """

    plan: Plan
    created: str
    tool_version: str
    path: str

    @classmethod
    def from_doc(cls, doc: dict[str, Any], path: str) -> SavedPlan:
        return cls(plan_from_doc(doc), str(doc.get("created", "")), doc["tool_version"], path)

    def to_doc(self) -> dict[str, Any]:
        """The saved-plan document (current format version), without its checksum."""
        return {**plan_doc(self.plan), "tool_version": self.tool_version, "kind": SAVED_PLAN, "created": self.created}


@dataclass(frozen=True)
class Snapshot:
    """A store inventory read back from ``snapshot``: its scan (``scan.host`` set) and provenance."""

    scan: StoreScan
    created: str
    hashed: bool
    path: str

    def to_doc(self) -> dict[str, Any]:
        """The snapshot document, without its checksum (as :meth:`SavedPlan.to_doc`)."""
        return snapshot_doc(self)

    def to_text(self) -> str:
        """The snapshot document with its checksum, as JSON text (what :func:`save_snapshot` writes; a
        name that is not UTF-8 stays a ``\\u`` escape, so any carrier of text can hold it)."""
        return json_text(with_checksum(snapshot_doc(self)))

    @classmethod
    def from_doc(cls, doc: dict[str, Any], path: str) -> Snapshot:
        files = tuple(_facts(f["name"], f) for f in doc["files"])
        return cls(_scan(doc["store"], files, doc["warnings"], doc["host"]), doc["created"], doc["hashed"], path)


# -- files --------------------------------------------------------------------------------------------


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def checksum(body: dict[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``body`` (without its ``checksum`` field)."""
    return "sha256:" + hashlib.sha256(_canonical({k: v for k, v in body.items() if k != "checksum"})).hexdigest()


def with_checksum(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "checksum": checksum(body)}


def write_document(path: str | os.PathLike[str], body: dict[str, Any]) -> None:
    """Write ``body`` with its checksum, atomically: a new temporary file of our own beside ``path``
    (O_EXCL, never a link), fsync, rename over ``path``. UsageError when it cannot be written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{time.time_ns()}.tmp")
    data = json_text(with_checksum(body)).encode("utf-8") + b"\n"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            with open(fd, "wb", closefd=False) as fh:
                fh.write(data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        where = f"folder {path.parent} does not exist" if isinstance(exc, FileNotFoundError) else exc.strerror or str(exc)
        raise UsageError(f"cannot write {path}: {where}") from None


def save_plan(path: str | os.PathLike[str], plan: Plan) -> None:
    """Write ``plan`` for ``apply PLANFILE``: the plan document plus its kind and creation time."""
    write_document(path, SavedPlan(plan, iso_time(time.time_ns()), __version__, os.fspath(path)).to_doc())


def load_plan(path: str | os.PathLike[str]) -> SavedPlan:
    """Read and verify a saved plan; PlanFileError names the file and the problem."""
    return SavedPlan.from_doc(read_document(path, SAVED_PLAN), os.fspath(path))


def save_snapshot(path: str | os.PathLike[str], snapshot: Snapshot) -> None:
    """Write a snapshot document (with its checksum) for ``plan --state``."""
    write_document(path, snapshot_doc(snapshot))


def load_snapshot(path: str | os.PathLike[str]) -> Snapshot:
    """Read and verify a snapshot; PlanFileError names the file and the problem."""
    return Snapshot.from_doc(read_document(path, SNAPSHOT), os.fspath(path))


def read_document(path: str | os.PathLike[str], kind: str) -> dict[str, Any]:
    """Read and verify a saved plan or snapshot document; raise PlanFileError naming the file and the problem."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise PlanFileError(str(path), f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise PlanFileError(str(path), f"larger than {MAX_DOCUMENT_BYTES} bytes; refusing to read it")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PlanFileError(str(path), f"corrupt {kind} file (not JSON: {' '.join(str(exc).split())[:120]})") from None
    if not isinstance(doc, dict):
        raise PlanFileError(str(path), f"corrupt {kind} file (not a JSON object)")
    version = doc.get("format_version")
    if not isinstance(version, str) or version.split(".")[0] != SUPPORTED_MAJOR:
        raise PlanFileError(
            str(path), f"format_version {version!r} is not supported (this is ocr-reconcile {__version__}, reading {SUPPORTED_MAJOR}.x)"
        )
    if doc.get("kind") != kind:
        raise PlanFileError(str(path), f"is a {doc.get('kind') or 'plain plan'} document, not a {kind}")
    if doc.get("checksum") != checksum(doc):
        raise PlanFileError(str(path), "checksum mismatch: the file is corrupt or was edited by hand")
    problem = schema_problem(doc) or install_problem(doc)
    if problem:
        raise PlanFileError(str(path), problem)
    return doc


def install_problem(doc: dict[str, Any]) -> str:
    """Why a plan document from format 1.3 on lacks what its installs need ("" when it has it): each
    install or replace names its source, pin and size, and the document its download settings. A field
    an older document never had is never required."""
    if doc.get("kind") != SAVED_PLAN or int(str(doc["format_version"]).split(".")[1]) < 3:
        return ""
    installs = [c for c in doc["changes"] if c["actions"][0] in (Action.INSTALL.value, Action.REPLACE.value)]
    for c in installs:
        missing = [k for k in ("source", "pin", "download") if k not in c or (k != "download" and c[k] is None)]
        if missing:
            return f"install of {c['name']!r} lacks {', '.join(missing)} (format {doc['format_version']} records them)"
    if installs and not isinstance(doc.get("sources"), dict):
        return f"has installs but no download settings (format {doc['format_version']} records them in 'sources')"
    return ""


def schema_problem(doc: dict[str, Any]) -> str:
    """The first way ``doc`` breaks ``schemas/plan.schema.json``, or ""."""
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(load_schema(PLAN_SCHEMA)).iter_errors(doc))
    if error is None:
        return ""
    where = "/".join(str(p) for p in error.absolute_path) or "(document)"
    return f"does not match the plan schema at {where}: {' '.join(error.message.split())[:200]}"
