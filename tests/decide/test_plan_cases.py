"""Data-driven planner cases, in the manner of pyinfra's ``tests/operations/<op>/*.json``: one folder
per behaviour under ``tests/decide/cases/plan/``, each turned into one test (``tests/decide/cases/plan/README.md``
says how to add one).

A case is ``manifest.yaml`` (a real manifest, validated by the schema), ``scan.json`` (the scanned
facts), ``expected.json`` (the changes, the summary and the broken guards) and, optionally,
``args.json`` (what a caller passes to :func:`guards_for`). Any other file, a missing file or an
unknown field fails the case: nothing in a case folder is silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from reconciler.decide.plan import Action, Plan, guards_for, make_plan
from reconciler.read.manifest import Manifest, parse_manifest
from reconciler.read.scan import FileFacts, StoreScan

CASES_DIR = Path(__file__).resolve().parent / "cases" / "plan"
# Relative paths in a case's manifest (a source, a mirror) resolve against this folder, not the
# checkout's, so that expected.json is the same on every machine.
MANIFEST_DIR = Path("/etc/ocr-reconcile")
# The cases that exist when this was written: discovery finding fewer means cases are lost.
MIN_CASES = 38

REQUIRED = ("manifest.yaml", "scan.json", "expected.json")
OPTIONAL = ("args.json",)
ARGS = {"max_delete", "allow_empty"}  # guards_for's caller arguments
SCAN_REQUIRED = {"root", "backend", "scanned_ns", "files"}
SCAN_FIELDS = {f.name for f in dataclasses.fields(StoreScan)}
FACT_FIELDS = {f.name for f in dataclasses.fields(FileFacts)}
EXPECTED_KEYS = {"changes", "summary", "violations"}
CHANGE_KEYS = {"name", "action", "reason"}
FETCH_KEYS = {"source", "download"}  # install and replace only
FETCHING = (Action.INSTALL, Action.REPLACE)
BYTE_KEYS = ("bytes_freed", "bytes_to_download")


class CaseError(Exception):
    """A case folder or file that is not in the expected form."""


def case_names() -> list[str]:
    """Every case folder, by name. Anything else in the folder but the README is an error (a case
    that is not a folder would otherwise never run)."""
    if not CASES_DIR.is_dir():
        raise CaseError(f"{CASES_DIR} is missing")
    names, strays = [], []
    for entry in sorted(os.listdir(CASES_DIR)):
        if (CASES_DIR / entry).is_dir():
            names.append(entry)
        elif entry != "README.md":
            strays.append(entry)
    if strays:
        raise CaseError(f"{CASES_DIR} holds files that are not case folders: {strays}")
    return names


CASES = case_names()


def _object(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CaseError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(loaded, dict):
        raise CaseError(f"{path}: must be a JSON object")
    return loaded


def _keys(where: str, got: dict[str, Any], allowed: set[str], required: set[str] | frozenset[str] = frozenset()) -> None:
    unknown, missing = sorted(set(got) - allowed), sorted(required - set(got))
    if unknown:
        raise CaseError(f"{where}: unknown field(s) {unknown} (allowed: {sorted(allowed)})")
    if missing:
        raise CaseError(f"{where}: missing field(s) {missing}")


def check_folder(folder: Path) -> None:
    """Refuse a case folder with a file missing or a file it does not know."""
    present = set(os.listdir(folder))
    missing = [n for n in REQUIRED if n not in present]
    unknown = sorted(present - set(REQUIRED) - set(OPTIONAL))
    if missing or unknown:
        raise CaseError(f"{folder}: missing {missing}, unknown {unknown} (a case holds {list(REQUIRED)}, optionally {list(OPTIONAL)})")


def load_manifest(folder: Path) -> Manifest:
    path = folder / "manifest.yaml"
    return parse_manifest(path.read_bytes(), os.path.relpath(path, CASES_DIR.parent.parent.parent), base_dir=MANIFEST_DIR)


def load_scan(folder: Path) -> StoreScan:
    """``scan.json`` as a StoreScan. A file entry names only the fields that matter: ``kind`` is
    ``file``, ``size`` and ``mtime_ns`` 0, ``inode`` its position from 1, ``dev`` 1, the rest None."""
    path = folder / "scan.json"
    raw = _object(path)
    _keys(str(path), raw, SCAN_FIELDS, SCAN_REQUIRED)
    if not isinstance(raw["files"], list):
        raise CaseError(f"{path}: files must be a list")
    files = []
    for index, entry in enumerate(raw["files"]):
        if not isinstance(entry, dict):
            raise CaseError(f"{path}: files[{index}] must be an object")
        _keys(f"{path}: files[{index}]", entry, FACT_FIELDS, {"name"})
        defaults = {"kind": "file", "size": 0, "mtime_ns": 0, "inode": index + 1, "dev": 1}
        files.append(FileFacts(**{**defaults, **entry}))
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise CaseError(f"{path}: a name is listed twice")
    scan_fields = {k: v for k, v in raw.items() if k != "files"}
    if "warnings" in scan_fields:
        scan_fields["warnings"] = tuple(scan_fields["warnings"])
    return StoreScan(files=tuple(files), **scan_fields)


def load_args(folder: Path) -> dict[str, Any] | None:
    path = folder / "args.json"
    if not path.exists():
        return None
    args = _object(path)
    _keys(str(path), args, ARGS)
    return args


def load_expected(folder: Path) -> dict[str, Any]:
    path = folder / "expected.json"
    expected = _object(path)
    _keys(str(path), expected, EXPECTED_KEYS, EXPECTED_KEYS)
    for index, change in enumerate(expected["changes"]):
        fetching = change.get("action") in {a.value for a in FETCHING}
        _keys(f"{path}: changes[{index}]", change, CHANGE_KEYS | (FETCH_KEYS if fetching else set()), CHANGE_KEYS)
    names = [c["name"] for c in expected["changes"]]
    if names != sorted(names):
        raise CaseError(f"{path}: changes must be sorted by name (code-point order), as a plan is")
    _keys(f"{path}: summary", expected["summary"], {a.value for a in Action} | set(BYTE_KEYS), set(BYTE_KEYS))
    if any(n == 0 for k, n in expected["summary"].items() if k not in BYTE_KEYS):
        raise CaseError(f"{path}: summary lists the actions that occur; leave out a count of 0")
    return expected


def observed(plan: Plan) -> dict[str, Any]:
    """The plan in expected.json's form."""
    changes = []
    for change in plan.changes:
        row: dict[str, Any] = {"name": change.name, "action": change.action.value, "reason": change.reason}
        if change.action in FETCHING:
            row |= {"source": change.source, "download": change.download}
        changes.append(row)
    summary: dict[str, Any] = {a.value: n for a, n in plan.summary.counts if n}
    summary |= {"bytes_freed": plan.summary.bytes_freed, "bytes_to_download": plan.summary.bytes_to_download}
    return {"changes": changes, "summary": summary, "violations": [v.guard.value for v in plan.violations]}


def diff(expected: dict[str, Any], actual: dict[str, Any]) -> str:
    def lines(value: dict[str, Any]) -> list[str]:
        return json.dumps(value, indent=2, ensure_ascii=False).splitlines()

    return "\n".join(difflib.unified_diff(lines(expected), lines(actual), "expected.json", "make_plan", lineterm=""))


@pytest.mark.parametrize("case", CASES)
def test_plan_case(case: str) -> None:
    folder = CASES_DIR / case
    check_folder(folder)
    manifest, scan, args = load_manifest(folder), load_scan(folder), load_args(folder)
    expected = load_expected(folder)
    if manifest.name != case:
        raise CaseError(f"{folder}/manifest.yaml: metadata.name is {manifest.name!r}; name it after its folder")

    plan = make_plan(manifest, scan) if args is None else make_plan(manifest, scan, guards_for(manifest, **args))

    actual = observed(plan)
    assert actual == expected, f"case {case}: the plan differs from expected.json\n{diff(expected, actual)}"
    # What expected.json does not spell out: each change carries its scanned entry, an install its pin.
    by_name = {f.name: f for f in scan.files}
    for change in plan.changes:
        assert change.before == by_name.get(change.name), f"case {case}: {change.name}: before is not its scanned entry"
        if change.action in FETCHING:
            assert change.pin == manifest.declared[change.name].sha256, f"case {case}: {change.name}: pin is not the manifest's"


def test_every_case_folder_is_collected() -> None:
    """A case that silently stops being collected fails here: discovery must find every folder on
    disk, and at least as many as existed when the floor was set."""
    on_disk = sorted(p.name for p in CASES_DIR.iterdir() if p.is_dir())
    assert on_disk == CASES
    assert len(CASES) >= MIN_CASES, f"{len(CASES)} plan cases found under {CASES_DIR}, fewer than the {MIN_CASES} that exist"


def _copy_case(name: str, into: Path) -> Path:
    folder = into / name
    folder.mkdir()
    for file in os.listdir(CASES_DIR / name):
        (folder / file).write_bytes((CASES_DIR / name / file).read_bytes())
    return folder


_SCAN = '{"root": "/s", "backend": "directory", "scanned_ns": null, "files": [%s]}'


@pytest.mark.parametrize(
    ("file", "text", "why"),
    [
        ("expected.json", None, r"missing \['expected.json'\]"),
        ("expected.yaml", "{}", r"unknown \['expected.yaml'\]"),
        ("args.json", '{"max_deletes": 1}', r"unknown field\(s\) \['max_deletes'\]"),
        ("scan.json", '{"root": "/s", "backend": "directory", "files": []}', r"missing field\(s\) \['scanned_ns'\]"),
        ("scan.json", _SCAN % '{"name": "a", "sha": "x"}', r"files\[0\]: unknown field\(s\) \['sha'\]"),
        ("scan.json", _SCAN % '{"name": "a"}, {"name": "a"}', "a name is listed twice"),
        ("expected.json", '{"changes": [], "summary": {}}', r"missing field\(s\) \['violations'\]"),
        (
            "expected.json",
            '{"changes": [], "summary": {"bytes_freed": 0, "bytes_to_download": 0, "delete": 0}, "violations": []}',
            "count of 0",
        ),
    ],
    ids=["missing-file", "unknown-file", "unknown-arg", "scan-without-time", "unknown-fact", "twice", "no-violations", "zero-count"],
)
def test_a_malformed_case_fails_loudly(tmp_path: Path, file: str, text: str | None, why: str) -> None:
    """A case folder with a file missing, a file too many or a field misspelt is an error, never a skip."""
    folder = _copy_case("guard-max-delete-from-caller", tmp_path)
    if text is None:
        (folder / file).unlink()
    else:
        (folder / file).write_text(text, encoding="utf-8")
    with pytest.raises(CaseError, match=why):
        check_folder(folder)
        load_scan(folder), load_args(folder), load_expected(folder)
