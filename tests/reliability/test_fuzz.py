"""Fuzzing hostile manifests and plan files, in-process through the library API, with a sample through the
real CLI process: a one-line error or a valid result, never a traceback, and nothing on disk changes."""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import pytest

from reconciler import ExitCode, ManifestError, ReconcilerError, load_plan, open_session, save_plan
from reconciler.base.layout import lock_path
from reconciler.decide.planfile import checksum
from reconciler.read.manifest import parse_manifest

from ..conftest import EXAMPLE_MANIFEST, run_cli, tree_digest

CLI_SAMPLE = 20  # how many hostile inputs of each kind also go through the real `ocr-reconcile` process

MANIFESTS = 10_000
HOSTILE_NAMES = [
    "../etc/passwd",
    "/etc/shadow",
    "a/../../b",
    "..",
    ".",
    "./x",
    "a//b",
    "a/",
    "a\\b",
    "a\x00b",
    "a\nb",
    "\t",
    "x\u202egguf.exe",
    "zero\u200bwidth",
    "\ufeffbom",
    "a/b/c",
    "q/../../x",
    "~/x",
    "$HOME/x",
    "C:\\x",
    "caf\u00e9",
    "cafe\u0301",
    "A.gguf",
    "a.GGUF",
    "",
    " ",
    "*",
    "**/x",
    "[",
    "\ud800",
    "%2e%2e/x",
    "\u2024\u2024/x",
]
HOSTILE_VALUES = [
    "null",
    "~",
    "[]",
    "{}",
    "1e309",
    "-1",
    "0x10",
    "true",
    "2026-11-24",
    "!!binary aGk=",
    "&a [*a]",
    "*undefined",
    "!!python/object/apply:os.system [ls]",
    "'" + "x" * 5000 + "'",
    "[" * 40 + "]" * 40,
    "{a: {b: {c: {d: 1}}}}",
    "|\n  block",
]


def mutate(rng: random.Random, base: str) -> bytes:
    lines = base.splitlines()
    kind = rng.randrange(9)
    if kind == 0:  # a hostile model name
        lines.insert(12, f"  - name: {json.dumps(rng.choice(HOSTILE_NAMES))}")
    elif kind == 1:  # a hostile value anywhere
        i = rng.randrange(len(lines))
        if ":" in lines[i]:
            lines[i] = lines[i].split(":", 1)[0] + ": " + rng.choice(HOSTILE_VALUES)
    elif kind == 2:  # delete or duplicate a line
        i = rng.randrange(len(lines))
        if rng.random() < 0.5:
            del lines[i]
        else:
            lines.insert(i, lines[i])
    elif kind == 3:  # an alias bomb
        lines += ["x0: &x0 [a, a, a, a, a, a, a, a]"] + [f"x{k}: &x{k} [*x{k - 1}, *x{k - 1}, *x{k - 1}]" for k in range(1, 12)]
    elif kind == 4:  # deep nesting
        lines.append("deep: " + "[" * rng.randrange(20, 200) + "]" * 0)
    elif kind == 5:  # raw byte flips (non-UTF-8 included)
        data = bytearray("\n".join(lines).encode())
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    elif kind == 6:  # wrong types at the top
        key = rng.choice(["models", "whitelist", "prune", "store", "backup", "metadata", "limits", "kind"])
        lines.append(f"{key}: {rng.choice(HOSTILE_VALUES)}")
    elif kind == 7:  # a hostile whitelist pattern
        lines.append(f"whitelist: [{json.dumps(rng.choice(HOSTILE_NAMES))}]")
    else:  # indentation chaos
        i = rng.randrange(len(lines))
        lines[i] = " " * rng.randrange(0, 7) + lines[i].lstrip()
    return "\n".join(lines).encode("utf-8", errors="surrogatepass")


def test_ten_thousand_hostile_manifests(store: Path, tmp_path: Path) -> None:
    rng = random.Random(4)
    base = EXAMPLE_MANIFEST.read_text()
    outcomes: Counter[str] = Counter()
    refused: list[bytes] = []
    for _ in range(MANIFESTS):
        data = mutate(rng, base)
        try:
            parse_manifest(data, "fuzz.yaml")
            outcomes["accepted"] += 1
        except ManifestError as exc:
            outcomes["refused"] += 1
            assert exc.problems and all(p and "\n" not in p and p.startswith("fuzz.yaml") for p in exc.problems), exc.problems
            refused.append(data)
    assert outcomes["refused"] > MANIFESTS // 2 and outcomes["accepted"] > 0, outcomes

    # every 10th refused manifest through the library API against a real store: ManifestError, nothing changed;
    # a sample of those through the real CLI process: exit 1, one-line errors, no traceback, nothing changed
    before = tree_digest(tmp_path)
    bad = tmp_path / "fuzz.yaml"
    through_api = refused[::10]
    for data in through_api:
        bad.write_bytes(data)
        with pytest.raises(ManifestError), open_session(bad, store, "directory") as session:
            session.apply(session.plan())
    for data in through_api[:: max(1, len(through_api) // CLI_SAMPLE)]:
        bad.write_bytes(data)
        result = run_cli("apply", str(bad), "--yes", "--store", str(store))
        assert result.returncode == ExitCode.ERROR, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr and all(line.startswith("error: ") for line in result.stderr.splitlines()), result.stderr
    bad.unlink()
    assert tree_digest(tmp_path) == before
    summary = f"{outcomes['refused']} refused, {outcomes['accepted']} accepted; {len(through_api)} refused ones through the API"
    print(f"\nfuzz: {MANIFESTS} manifests, {summary}, a sample of {CLI_SAMPLE} through the CLI")


def test_hostile_plan_files_change_nothing(store: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(EXAMPLE_MANIFEST.read_text().replace("path: null", f"path: {store}").replace("backend: auto", "backend: directory"))
    plan_file = tmp_path / "plan.json"
    with open_session(manifest) as session:
        save_plan(plan_file, session.plan())
    original = json.loads(plan_file.read_text())
    rng = random.Random(7)
    before = tree_digest(store)
    codes: Counter[int] = Counter()
    for trial in range(400):
        doc = json.loads(json.dumps(original))
        target = rng.choice(doc["changes"])
        what = rng.randrange(6)
        if what == 0:
            target["name"] = rng.choice(HOSTILE_NAMES)
        elif what == 1:
            target["actions"] = [rng.choice(["delete", "keep", "rm -rf", ""])]
        elif what == 2:
            doc["store"]["path"] = rng.choice(["/", "/etc", str(tmp_path), "../.."])
        elif what == 3:
            doc["manifest"]["path"] = rng.choice(["/etc/passwd", str(tmp_path / "nope.yaml"), ""])
        elif what == 4:
            doc["changes"].append({"name": rng.choice(HOSTILE_NAMES), "actions": ["delete"], "reason": "x", "before": target["before"]})
        else:
            doc["format_version"] = rng.choice(["2.0", "1", "0.9", "", "1.0.0"])
        if {k: v for k, v in doc.items() if k != "checksum"} == {k: v for k, v in original.items() if k != "checksum"}:
            continue  # the mutation changed nothing: not a hostile file
        if rng.random() < 0.8:
            doc["checksum"] = checksum(doc)  # an attacker recomputes it
        plan_file.write_text(json.dumps(doc))
        try:  # what `apply PLANFILE` does, through the library API
            with open_session(saved=load_plan(plan_file)) as session, session.lock() as held:
                session.apply(session.plan(), held)
        except ReconcilerError as exc:
            codes[exc.exit_code] += 1
            assert exc.exit_code in (ExitCode.ERROR, ExitCode.STALE_PLAN), (trial, exc)
        else:
            raise AssertionError(f"trial {trial}: a hostile plan file was applied")
        if trial % (400 // CLI_SAMPLE) == 0:  # a sample through the real CLI process
            result = run_cli("apply", str(plan_file), "--yes")
            assert result.returncode in (ExitCode.ERROR, ExitCode.STALE_PLAN), (trial, result.stdout, result.stderr)
            assert result.stderr and all(line.startswith("error: ") for line in result.stderr.splitlines()), result.stderr
    assert tree_digest(store) == before
    for target in ("/etc", str(tmp_path), os.path.abspath("../..")):  # no lock file beside a store the plan only named
        assert not lock_path(target).exists(), target
    assert not Path(".ocr-reconcile.lock").exists()
    assert sum(codes.values()) > 350
    print(f"\nhostile plan files: {sum(codes.values())} tried, exit codes { {int(k): v for k, v in codes.items()} }, store unchanged")
