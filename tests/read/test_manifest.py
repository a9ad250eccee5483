"""Manifest loading and validation: table-driven good and bad cases, one message per problem."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import given, strategies as st

from reconciler.base.errors import ManifestError
from reconciler.read.manifest import MAX_MANIFEST_BYTES, load_manifest, manifest_schema, parse_manifest
from reconciler.read.patterns import explain_name

from ..conftest import EXAMPLE_MANIFEST

HEAD = "apiVersion: ocr-reconcile/v1\nkind: ModelState\nmetadata: {name: t}\n"


def problems(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    with pytest.raises(ManifestError) as info:
        parse_manifest(data, "m.yaml")
    return list(info.value.problems)


def test_example_manifest_is_valid() -> None:
    manifest = load_manifest(EXAMPLE_MANIFEST)
    assert manifest.name == "ocr-workers"
    assert [m.name for m in manifest.models] == ["Llama-3.2-3B-Instruct-Q4_K_M.gguf", "qwen/Qwen2.5-1.5B-Instruct-Q4_K_M.gguf"]
    assert manifest.whitelist == ("custom_*", "*/tokenizer.json")
    assert (manifest.prune, manifest.backup_keep, manifest.backend, manifest.store_path) == (True, 5, "auto", None)


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "m.yaml"
    path.parent.mkdir()
    path.write_text(HEAD + "models: []\nstore: {path: ../store}\nbackup: {dir: bk}\n")
    manifest = load_manifest(path)
    assert manifest.store_path == tmp_path / "store"
    assert manifest.backup_dir == tmp_path / "sub" / "bk"
    assert manifest.models == () and manifest.whitelist == () and manifest.prune is True


BAD_NAMES = [
    ("/etc/passwd", "absolute path"),
    ("../escape.gguf", "'..'"),
    ("sub/..", "'..'"),
    ("a//b", "empty part"),
    ("sub/", "empty part"),
    ("a\x00b", "NUL"),
    ("a\\b.gguf", "backslash"),
    ("a/b/c.gguf", "at most one folder level"),
    ("./x", "'.'"),
    ("a\nb", "control characters"),
    ("model\u202egguf.exe", "bidirectional-override"),
    ("zero\u200bwidth", "invisible"),
]


@pytest.mark.parametrize(("name", "why"), BAD_NAMES)
def test_bad_model_names_are_rejected_with_reason(name: str, why: str) -> None:
    text = HEAD + f"models:\n  - name: ok.gguf\n  - name: {_yaml_str(name)}\n"
    [line] = problems(text)
    assert line.startswith("m.yaml:6:11: models[1].name: "), line
    assert why in line


@pytest.mark.parametrize(("name", "why"), BAD_NAMES)
def test_bad_whitelist_patterns_are_rejected(name: str, why: str) -> None:
    [line] = problems(HEAD + f"models: []\nwhitelist: [{_yaml_str(name)}]\n")
    assert line.startswith("m.yaml:5:13: whitelist[0]: ") and why in line


def _yaml_str(value: str) -> str:
    """A YAML double-quoted scalar for ``value`` (JSON escapes are valid YAML escapes)."""
    return json.dumps(value)


CASES = [
    # (manifest text, expected problem lines: each "line:col: field: fragment")
    (HEAD + "models:\n  - name: a.gguf\n  - name: a.gguf\n", ["6:11: models[1].name: duplicate model name 'a.gguf' (first as models[0])"]),
    (
        HEAD + "models:\n  - name: A.gguf\n  - name: a.GGUF\n",
        ['6:11: models[1].name: "a.GGUF" and models[0].name "A.gguf" differ only by case'],
    ),
    (
        HEAD + 'models:\n  - name: "caf\\u00e9"\n  - name: "cafe\\u0301"\n',
        ['6:11: models[1].name: "cafe\\u0301" and models[0].name "caf\\u00e9" differ only by case or Unicode'],
    ),
    (HEAD.replace("ocr-reconcile/v1", "v2") + "models: []\n", ["1:13: apiVersion: must be 'ocr-reconcile/v1'"]),
    ("kind: ModelState\nmetadata: {name: t}\nmodels: []\n", ["1:1: (document): missing required field 'apiVersion'"]),
    (HEAD + "models: []\nprune: maybe\n", ["5:8: prune: must be of type boolean"]),
    (HEAD + "models: []\nstore: {backend: docker}\n", ["5:18: store.backend: must be one of auto, aspose, directory"]),
    (HEAD + "models: []\nbackup: {keep: 0}\n", ["5:16: backup.keep: 0 is less than the minimum of 1"]),
    (HEAD + "models: []\nextra: 1\n", ["5:1: extra: unknown field"]),
    (HEAD + "models: []\nlimits: {max_delete: -1}\n", ["5:22: limits.max_delete: -1 is less than the minimum of 0"]),
    (
        HEAD + "models: []\nlimits: {max_delete_bytes: 10 XB}\n",
        ['5:28: limits.max_delete_bytes: "10 XB" must be a size such as 50 GiB or 500MB'],
    ),
    (HEAD + "models:\n  - name: a\n    sha: x\n", ["6:5: models[0].sha: unknown field"]),
    (
        HEAD + "models:\n  - name: a\n    sha256: ABC\n",
        ['6:13: models[0].sha256: "ABC" must be 64 lower-case hex digits (0-9, a-f), quoted'],
    ),
    (HEAD + "models: [a.gguf]\n", ["4:10: models[0]: a model is a mapping: write '- name: a.gguf'"]),
    (HEAD + "models: []\nprune: true\nprune: false\n", ["6:1: prune: duplicate key (first at line 5)"]),
    ("- a\n- b\n", ["1:1: (document): the manifest must be a mapping"]),
    ("just a string\n", ["1:1: (document): the manifest must be a mapping"]),
    ("", ["1:1: (document): the manifest is empty"]),
    (HEAD + "models: [\n", ["(document): invalid YAML"]),
    (HEAD + "models: &m []\nwhitelist: *m\n", ["5:12: (document): YAML aliases (*m) are not allowed"]),
    (HEAD + "models: !!python/object:os.system {}\n", ["(document): YAML tags (!!python/object:os.system) are not allowed in manifests"]),
    (HEAD + "models: []\n---\nmodels: []\n", ["invalid YAML: expected a single document in the stream, but found another document"]),
    (HEAD + "models: " + "[" * 40 + "]" * 40 + "\n", ["(document): nesting deeper than 32 levels"]),
    (HEAD + "models: []\n1: x\n", ["5:1: (document): mapping keys must be plain strings"]),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_bad_manifests(text: str, expected: list[str]) -> None:
    got = problems(text)
    assert len(got) == len(expected), got
    for line, fragment in zip(got, expected, strict=True):
        assert "\n" not in line
        assert line.startswith("m.yaml:")
        assert fragment in line, (line, fragment)


def test_every_problem_is_reported_not_just_the_first() -> None:
    text = HEAD + "models:\n  - name: /abs\n  - name: ../up\n  - name: a/b/c\nprune: 3\nstore: {backend: x, colour: red}\n"
    got = problems(text)
    fields = [line.split(": ")[1] for line in got]
    assert fields == ["models[0].name", "models[1].name", "models[2].name", "prune", "store.backend", "store.colour"]


def test_alias_bomb_is_refused_before_expansion() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(20)
    )
    [line] = problems(bomb)
    assert "aliases" in line


def test_non_utf8_names_the_byte_position() -> None:
    [line] = problems(HEAD.encode() + b"models:\n  - name: caf\xe9\n")
    assert line == "m.yaml:5:14: (document): not valid UTF-8 (byte 0xe9)"


def test_oversized_file(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(HEAD.encode() + b"#" * MAX_MANIFEST_BYTES)
    with pytest.raises(ManifestError, match=r"larger than 1048576 bytes \(1 MiB\)"):
        load_manifest(path)


def test_missing_and_directory_paths(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such file"):
        load_manifest(tmp_path / "nope.yaml")
    with pytest.raises(ManifestError, match="is a directory"):
        load_manifest(tmp_path)


NAME_PATTERN = manifest_schema()["$defs"]["modelName"]["pattern"]


@given(st.text(alphabet=st.sampled_from(list("ab./\\\x00\n-_*\u202e\u200b\u00e9")), max_size=12))
def test_explanation_agrees_with_the_schema(name: str) -> None:
    """The schema decides validity; explain_name must give a reason exactly when it refuses."""
    schema_ok = name != "" and re.search(NAME_PATTERN, name) is not None
    assert schema_ok == (explain_name(name) == "") or name == ""


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(manifest_schema())


@pytest.mark.parametrize(
    ("text", "expected"),
    [(12, 12), ("12", 12), ("10 GiB", 10 * 2**30), ("500MB", 500 * 10**6), ("1.5 KiB", 1536), ("7 B", 7)],
)
def test_limits_sizes(text: int | str, expected: int) -> None:
    value = f"'{text}'" if isinstance(text, str) else str(text)
    manifest = parse_manifest((HEAD + f"models: []\nlimits: {{max_delete: 3, max_delete_bytes: {value}}}\n").encode(), "m.yaml")
    assert (manifest.max_delete, manifest.max_delete_bytes) == (3, expected)


def test_an_unquoted_all_digit_hash_is_explained() -> None:
    """YAML reads 64 decimal digits as a number: say so, and that quotes fix it."""
    digits = "1234567890" * 6 + "1234"
    with pytest.raises(ManifestError) as caught:
        parse_manifest((HEAD + f"models:\n  - name: a\n    sha256: {digits}\n").encode(), "m.yaml")
    [line] = caught.value.problems
    assert line.startswith("m.yaml:6:13: models[0].sha256: must be 64 hex digits in quotes ('…'): YAML read ") and "as a number" in line


def test_a_list_over_its_limit_is_one_short_line() -> None:
    """The schema's own message would print all 10,001 entries."""
    text = HEAD + "models:\n" + "".join(f"  - name: m{i}.gguf\n" for i in range(10_001))
    [line] = problems(text)
    assert line == "m.yaml:5:3: models: has 10,001 entries; at most 10,000 allowed"


YAML_TEXTS = [
    EXAMPLE_MANIFEST.read_text(),
    *(text for text, _ in CASES),
    HEAD + "models: [\n",
    HEAD + "a: b: c\n",
    HEAD + "\tmodels: []\n",
    HEAD + "models:\t[]\n",  # libyaml accepts a tab here, PyYAML does not: PyYAML's parser reads it
    HEAD + "prune: true \t# comment\n",
    HEAD + "\ufeff\nprune: true\n",  # a byte-order mark past the start
]


@pytest.mark.parametrize("text", YAML_TEXTS)
def test_the_c_parser_reads_every_manifest_as_pyyaml_does(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path (libyaml) gives the same document, positions and messages as PyYAML's own parser."""
    from reconciler.read import yaml_nodes

    def outcome() -> object:
        try:
            return parse_manifest(text.encode(), "m.yaml")
        except ManifestError as exc:
            return exc.problems

    fast = outcome()
    monkeypatch.setattr(yaml_nodes, "_FAST_LOADER", yaml.SafeLoader)
    assert outcome() == fast


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        (HEAD + "prune: !!bool maybe\n", "4:8", "YAML tags (!!bool) are not allowed"),
        (HEAD + "prune: !!int ''\n", "4:8", "YAML tags (!!int) are not allowed"),
        (HEAD + "prune: !!timestamp x\n", "4:8", "YAML tags (!!timestamp) are not allowed"),
        (HEAD + "!!bool prune: t\n", "4:1", "YAML tags (!!bool) are not allowed"),
        (HEAD + "x: 2001-13-99\n", "4:4", "x: month must be in 1..12"),
        (HEAD + "prune: " + "9" * 5000 + "\n", "4:8", "prune: Exceeds the limit"),
        (HEAD + "# a NUL \x00 in a comment\nprune: true\n", "4:9", "invalid YAML: unacceptable character #x0000"),
        (HEAD + 'models: [{name: "\\U00110000.gguf"}]\n', "4:", "invalid YAML"),
    ],
)
def test_every_unreadable_value_is_one_line_with_its_place(text: str, where: str, fragment: str) -> None:
    """From a hostile pass: tags, impossible dates, huge numbers, forbidden characters and bad escapes
    made tracebacks or placeless messages."""
    [line] = problems(text)
    assert line.startswith(f"m.yaml:{where}") and fragment in line, line


def test_a_hundred_thousand_unknown_fields_are_counted_quickly_not_listed() -> None:
    """Each unknown key used to be searched for in the whole mapping (288 s for 100,000 keys)."""
    text = HEAD + "".join(f"k{i}: 1\n" for i in range(100_000))
    got = problems(text)
    assert len(got) == 101 and got[-1] == "m.yaml: (document): … and 99,901 more problems"  # and models is missing
