"""Pure planning: table-driven cases over hand-built scans, compared with ==."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from reconciler.decide.plan import Action, Change, make_plan
from reconciler.read.manifest import Manifest, parse_manifest
from reconciler.read.patterns import glob_match
from reconciler.read.scan import FileFacts, StoreScan

SHA_A = "a" * 64
SHA_B = "b" * 64


def manifest(models: list[Any], whitelist: list[str] | None = None, prune: bool = True) -> Manifest:
    doc = {
        "apiVersion": "ocr-reconcile/v1",
        "kind": "ModelState",
        "metadata": {"name": "t"},
        "models": [m if isinstance(m, dict) else {"name": m} for m in models],
        "whitelist": whitelist or [],
        "prune": prune,
    }
    return parse_manifest(yaml.safe_dump(doc).encode(), "t.yaml")


def facts(name: str, size: int = 10, kind: str = "file", via: str | None = None, sha: str | None = None) -> FileFacts:
    return FileFacts(name, kind, size, 1, hash(name) & 0xFFFF, 1, symlinked_folder=via, sha256=sha)


def scan(*files: FileFacts) -> StoreScan:
    return StoreScan(root="/s", backend="directory", files=tuple(sorted(files, key=lambda f: f.name)))


# (id, manifest, scanned files, expected {name: action})
CASES = [
    ("empty store, nothing declared", manifest([]), [], {}),
    ("declared and present", manifest(["a.gguf"]), [facts("a.gguf")], {"a.gguf": Action.KEEP}),
    ("declared, absent", manifest(["a.gguf"]), [], {"a.gguf": Action.MISSING}),
    (
        "undeclared is deleted",
        manifest(["a.gguf"]),
        [facts("a.gguf"), facts("old.gguf")],
        {"a.gguf": Action.KEEP, "old.gguf": Action.DELETE},
    ),
    ("prune off ignores", manifest([], prune=False), [facts("old.gguf")], {"old.gguf": Action.IGNORE}),
    (
        "whitelist top level",
        manifest([], ["custom_*"]),
        [facts("custom_x"), facts("sub/custom_x")],
        {"custom_x": Action.KEEP, "sub/custom_x": Action.DELETE},
    ),
    (
        "whitelist one level down",
        manifest([], ["*/tokenizer.json"]),
        [facts("q/tokenizer.json"), facts("tokenizer.json")],
        {"q/tokenizer.json": Action.KEEP, "tokenizer.json": Action.DELETE},
    ),
    (
        "case variant of a declared name: missing, never moved",
        manifest(["A.gguf"]),
        [facts("a.gguf")],
        {"A.gguf": Action.MISSING, "a.gguf": Action.IGNORE},
    ),
    (
        "NFD variant of a declared NFC name: never moved",
        manifest(["caf\u00e9.gguf"]),
        [facts("cafe\u0301.gguf")],
        {"caf\u00e9.gguf": Action.MISSING, "cafe\u0301.gguf": Action.IGNORE},
    ),
    (
        "unrelated case is still pruned",
        manifest(["A.gguf"]),
        [facts("A.gguf"), facts("b.gguf")],
        {"A.gguf": Action.KEEP, "b.gguf": Action.DELETE},
    ),
    ("pin matches", manifest([{"name": "a", "sha256": SHA_A}]), [facts("a", sha=SHA_A)], {"a": Action.KEEP}),
    (
        "pin differs: a mismatch, never deleted",
        manifest([{"name": "a", "sha256": SHA_A}]),
        [facts("a", sha=SHA_B)],
        {"a": Action.MISMATCH},
    ),
    ("symlink undeclared is deleted", manifest([]), [facts("l", kind="symlink")], {"l": Action.DELETE}),
    ("special file never moved", manifest([]), [facts("fifo", kind="other")], {"fifo": Action.IGNORE}),
    (
        "files behind a symlinked folder never moved",
        manifest(["ln/a"]),
        [facts("ln/a", via="ln"), facts("ln/b", via="ln")],
        {"ln/a": Action.KEEP, "ln/b": Action.IGNORE},
    ),
    ("declared beats whitelist", manifest(["custom_a"], ["custom_*"]), [facts("custom_a")], {"custom_a": Action.KEEP}),
]


@pytest.mark.parametrize(("case", "m", "files", "expected"), CASES, ids=[c[0] for c in CASES])
def test_plan_cases(case: str, m: Manifest, files: list[FileFacts], expected: dict[str, Action]) -> None:
    plan = make_plan(m, scan(*files))
    assert {c.name: c.action for c in plan.changes} == expected
    assert [c.name for c in plan.changes] == sorted(expected)


def test_plan_totals_and_flags() -> None:
    plan = make_plan(manifest(["keep.gguf", "gone.gguf"]), scan(facts("keep.gguf", 5), facts("x", 100), facts("q/y", 23)))
    assert plan.bytes_freed == 123
    assert plan.has_changes and not plan.converges
    assert [c.name for c in plan.to_delete] == ["q/y", "x"]
    assert plan.of(Action.MISSING) == (Change("gone.gguf", Action.MISSING, "declared but absent from the store"),)


def test_plan_is_deterministic_and_frozen() -> None:
    m = manifest(["a"], ["w*"])
    s = scan(facts("a"), facts("b"), facts("w1"))
    assert make_plan(m, s) == make_plan(m, s)
    with pytest.raises(AttributeError):
        make_plan(m, s).changes = ()  # type: ignore[misc]


def test_engine_hidden_files_are_planned() -> None:
    """'Not listed by the engine' is never 'not on disk': hidden files are still planned."""
    hidden = FileFacts("old.gguf", "file", 7, 1, 2, 1, engine_visible=False)
    shown = FileFacts("a", "file", 7, 1, 3, 1, engine_visible=True)
    s = StoreScan(root="/s", backend="aspose", files=(shown, hidden), engine_licensed=False, engine_listed=1)
    plan = make_plan(manifest(["a"]), s)
    assert plan.scan.engine_hidden == 1
    assert [c.name for c in plan.to_delete] == ["old.gguf"]


@pytest.mark.parametrize(
    ("pattern", "name", "match"),
    [
        ("custom_*", "custom_a", True),
        ("custom_*", "dir/custom_a", False),
        ("*", "a/b", False),
        ("*/*", "a/b", True),
        ("q/*.json", "q/t.json", True),
        ("q/*.json", "Q/t.json", False),
        ("m?.bin", "m1.bin", True),
        ("m[0-9].bin", "mx.bin", False),
    ],
)
def test_glob_match(pattern: str, name: str, match: bool) -> None:
    assert glob_match(pattern, name) is match
