"""Saved plans and store snapshots: write, read back, verify, and compare with a fresh scan.

Files written here are JSON documents with a ``format_version`` (only major version 1 is read), a
``kind`` (``saved-plan`` or ``snapshot``) and a ``checksum`` of their body, so a corrupt or
hand-edited file is refused, as Terraform refuses a plan file from another version. This module
decides nothing about the store; it only says whether the world still matches a document.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import jsonschema

from . import __version__
from .errors import PlanFileError
from .manifest import load_schema
from .render import PLAN_FORMAT_VERSION, facts_doc, iso_time, store_doc
from .scan import FileFacts, StoreScan

MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
SUPPORTED_MAJOR = "1"
PLAN_SCHEMA = "plan.schema.json"


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def checksum(body: dict[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``body`` (without its ``checksum`` field)."""
    return "sha256:" + hashlib.sha256(_canonical({k: v for k, v in body.items() if k != "checksum"})).hexdigest()


def write_document(path: Path, body: dict[str, Any]) -> None:
    """Write ``body`` with its checksum, atomically (temp file, fsync, rename)."""
    doc = {**body, "checksum": checksum(body)}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def saved_plan(doc: dict[str, Any]) -> dict[str, Any]:
    """A plan document as saved by ``plan --out``: the plan plus its kind and creation time."""
    return {**doc, "kind": "saved-plan", "created": iso_time(time.time_ns())}


def read_document(path: Path, kind: str) -> dict[str, Any]:
    """Read and verify a saved plan or snapshot; raise PlanFileError naming the file and the problem."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise PlanFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise PlanFileError(f"{path}: larger than {MAX_DOCUMENT_BYTES} bytes; refusing to read it")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PlanFileError(f"{path}: corrupt {kind} file (not JSON: {' '.join(str(exc).split())[:120]})") from None
    if not isinstance(doc, dict):
        raise PlanFileError(f"{path}: corrupt {kind} file (not a JSON object)")
    version = doc.get("format_version")
    if not isinstance(version, str) or version.split(".")[0] != SUPPORTED_MAJOR:
        raise PlanFileError(
            f"{path}: format_version {version!r} is not supported (this is ocr-reconcile {__version__}, reading {SUPPORTED_MAJOR}.x)"
        )
    if doc.get("kind") != kind:
        raise PlanFileError(f"{path}: is a {doc.get('kind') or 'plain plan'} document, not a {kind}")
    if doc.get("checksum") != checksum(doc):
        raise PlanFileError(f"{path}: checksum mismatch: the file is corrupt or was edited by hand")
    problem = schema_problem(doc)
    if problem:
        raise PlanFileError(f"{path}: {problem}")
    return doc


def schema_problem(doc: dict[str, Any]) -> str:
    """The first way ``doc`` breaks ``schemas/plan.schema.json``, or ""."""
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(load_schema(PLAN_SCHEMA)).iter_errors(doc))
    if error is None:
        return ""
    where = "/".join(str(p) for p in error.absolute_path) or "(document)"
    return f"does not match the plan schema at {where}: {' '.join(error.message.split())[:200]}"


def fingerprint_differences(doc: dict[str, Any], scan: StoreScan) -> list[str]:
    """Every way ``scan`` differs from the files recorded in a saved plan, one line each."""
    out = []
    if doc["store"]["path"] != scan.root:
        out.append(f"store path changed: {doc['store']['path']} -> {scan.root}")
    saved = {c["name"]: c["before"] for c in doc["changes"] if c["before"] is not None}
    fresh = {f.name: facts_doc(f) for f in scan.files}
    out += [f"added: {name}" for name in sorted(fresh.keys() - saved.keys())]
    out += [f"removed: {name}" for name in sorted(saved.keys() - fresh.keys())]
    for name in sorted(saved.keys() & fresh.keys()):
        was, now = saved[name], fresh[name]
        if was["size"] != now["size"]:
            out.append(f"resized: {name} ({was['size']} -> {now['size']} bytes)")
        elif any(was[k] != now[k] for k in ("kind", "inode", "mtime_ns", "link_target")) or (
            was["sha256"] is not None and was["sha256"] != now["sha256"]
        ):
            out.append(f"replaced: {name} (same size, different file)")
    return out


def snapshot_doc(scan: StoreScan, host: str | None, hashed: bool) -> dict[str, Any]:
    """A store inventory for fleet plans: what ``plan --state`` needs instead of a live store."""
    return {
        "format_version": PLAN_FORMAT_VERSION,
        "kind": "snapshot",
        "tool_version": __version__,
        "host": host or socket.gethostname(),
        "created": iso_time(time.time_ns()),
        "hashed": hashed,
        "store": store_doc(scan),
        "files": [{"name": f.name, **facts_doc(f)} for f in scan.files],
        "warnings": list(scan.warnings),
    }


def scan_from_snapshot(doc: dict[str, Any]) -> StoreScan:
    """Rebuild the StoreScan a snapshot recorded (device numbers are not recorded: 0)."""
    files = tuple(
        FileFacts(
            name=f["name"],
            kind=f["kind"],
            size=f["size"],
            mtime_ns=f["mtime_ns"],
            inode=f["inode"],
            dev=0,
            link_target=f["link_target"],
            symlinked_folder=f["symlinked_folder"],
            engine_visible=f["engine_visible"],
            sha256=f["sha256"],
        )
        for f in doc["files"]
    )
    engine = doc["store"]["engine"]
    return StoreScan(
        root=doc["store"]["path"],
        backend=doc["store"]["backend"],
        files=files,
        engine_licensed=engine["licensed"] if engine else None,
        engine_listed=engine["listed"] if engine else None,
        warnings=tuple(doc["warnings"]),
    )
