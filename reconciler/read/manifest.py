"""Load a YAML manifest, validate it against ``schemas/manifest.schema.json``, return a frozen value.

Reading is the only I/O here. Every problem found is reported, each as one line
``file:line:col: field.path: why``, in a single :class:`ManifestError`. The JSON Schema is the one
definition of validity; the Python checks below only add what a schema cannot say (YAML-level
hazards, duplicate keys, duplicate model names) and friendlier wording for schema failures.
Do not use this module to decide anything about the store: that is ``plan.py``'s job.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:  # imported where validation runs: `--help` and `--version` never pay for jsonschema
    import jsonschema

from ..base.errors import ManifestError
from .patterns import DEFAULT_MIN_AGE, DEFAULT_PARTIAL, PATTERN_WORDS, explain_name, parse_duration, parse_size, pattern_problems
from .sources import SourceSettings, resolve as resolve_source, settings as source_settings, source_problems
from .yaml_nodes import field_path, node_at, one_line, pos, read_yaml

MAX_MANIFEST_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_PROBLEMS = 100  # listed; the rest are counted


def fold(name: str) -> str:
    """The name a case-insensitive, Unicode-normalising filesystem would see (NFC, casefolded)."""
    return unicodedata.normalize("NFC", name).casefold()


@dataclass(frozen=True)
class ModelSpec:
    """One declared model: a store-relative name, an optional SHA-256 pin, and where its bytes come from
    when it is absent (``source``, canonical: ``file://``, ``http(s)://`` or ``hf://``; always pinned)."""

    name: str
    sha256: str | None = None
    source: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class ManifestRef:
    """What a plan records of its manifest: enough to name it, find it and tell if it was edited.

    ``models`` is how many models it declares (the empty-manifest guard needs it). Not a manifest:
    nothing can be planned from it.
    """

    name: str
    source: str
    path: str
    sha256: str
    models: int


@dataclass(frozen=True)
class Manifest:
    """A validated manifest. Paths are already resolved against the manifest's folder.

    ``store_path`` None means "ask the engine" (``get_local_path()``); ``backup_dir`` None means
    "beside the store". ``sha256`` is the hash of the manifest file's bytes, for plan provenance.
    """

    source: str
    sha256: str
    name: str
    backend: str
    store_path: Path | None
    models: tuple[ModelSpec, ...]
    whitelist: tuple[str, ...]
    prune: bool
    backup_dir: Path | None
    backup_keep: int | None
    max_delete: int | None = None
    max_delete_bytes: int | None = None
    backup_max_age_s: int | None = None  # backup.max_age
    partial_patterns: tuple[str, ...] = DEFAULT_PARTIAL  # in_progress.patterns
    min_age_s: int = parse_duration(DEFAULT_MIN_AGE)  # in_progress.min_age
    sources: SourceSettings = field(default_factory=SourceSettings)
    max_install_bytes: int | None = None

    @property
    def ref(self) -> ManifestRef:
        return ManifestRef(self.name, self.source, os.path.abspath(self.source), self.sha256, len(self.models))

    @property
    def pinned(self) -> frozenset[str]:
        """Names of the models with a sha256 pin: the files a scan must hash."""
        return frozenset(m.name for m in self.models if m.sha256)

    @cached_property
    def declared(self) -> dict[str, ModelSpec]:
        """Declared models by name, for lookups and membership tests."""
        return {m.name: m for m in self.models}

    @cached_property
    def folded(self) -> dict[str, str]:
        """Declared names by their :func:`fold` key, to spot look-alikes on disk."""
        return {fold(m.name): m.name for m in self.models}


def schema_path(name: str) -> Path:
    """Where a schema file lives: inside the installed package, else in the source tree."""
    package = Path(__file__).resolve().parent.parent  # reconciler/
    for candidate in (package / "schemas" / name, package.parent / "schemas" / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{name} is not installed next to the reconciler package")


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A parsed JSON Schema from ``schemas/`` (cached; never mutate the returned dict)."""
    loaded: dict[str, Any] = json.loads(schema_path(name).read_text(encoding="utf-8"))
    return loaded


def manifest_schema() -> dict[str, Any]:
    """The manifest JSON Schema: the single definition of a valid manifest."""
    return load_schema("manifest.schema.json")


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate the manifest file at ``path``; raise ManifestError listing every problem."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as fh:
            data = fh.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise ManifestError([f"{source}: no such file"]) from None
    except IsADirectoryError:
        raise ManifestError([f"{source}: is a directory, not a manifest file"]) from None
    except OSError as exc:
        raise ManifestError([f"{source}: cannot read: {exc.strerror or exc}"]) from None
    return parse_manifest(data, source, base_dir=Path(source).resolve().parent)


def parse_manifest(data: bytes, source: str, base_dir: Path | None = None) -> Manifest:
    """Validate manifest ``data`` (the file's bytes); ``source`` names it in messages.

    ``base_dir`` resolves relative paths in the manifest (default: the current directory).
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError([f"{source}: file is larger than {MAX_MANIFEST_BYTES} bytes (1 MiB); refusing to parse it"])
    text = _decode(data, source)
    node, doc = read_yaml(text, source, MAX_DEPTH)
    problems = list(_structure_problems(node, source))
    if not isinstance(doc, dict):
        raise ManifestError([f"{source}:{pos(node)}: (document): the manifest must be a mapping of fields", *problems])
    problems += _schema_problems(doc, node, source)
    problems += _duplicate_model_problems(doc, node, source)
    problems += pattern_problems(doc, node, source)
    problems += source_problems(doc, node, source)
    if problems:
        ordered = sorted(problems, key=lambda line: _position_key(line, source))
        more = [f"{source}: (document): … and {len(ordered) - MAX_PROBLEMS:,} more problems"] if len(ordered) > MAX_PROBLEMS else []
        raise ManifestError(ordered[:MAX_PROBLEMS] + more)
    return _build(doc, data, source, base_dir or Path.cwd())


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise ManifestError([f"{source}:{line}:{col}: (document): not valid UTF-8 (byte 0x{data[exc.start]:02x})"]) from None


def _position_key(line: str, source: str) -> tuple[int, int]:
    """(line, column) of a ``source:line:col: ...`` message, for sorting problems in file order."""
    parts = line[len(source) + 1 :].split(":", 2)
    try:
        return int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        return 0, 0


def _structure_problems(node: yaml.Node, source: str, path: tuple[str | int, ...] = ()) -> Iterator[str]:
    """YAML-level problems the schema cannot see: duplicate keys and non-string keys."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, yaml.Node] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag != "tag:yaml.org,2002:str":
                yield f"{source}:{pos(key)}: {field_path(path)}: mapping keys must be plain strings"
                continue
            if key.value in seen:
                first = seen[key.value].start_mark.line + 1
                yield f"{source}:{pos(key)}: {field_path((*path, key.value))}: duplicate key (first at line {first})"
            seen.setdefault(key.value, key)
            yield from _structure_problems(value, source, (*path, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _structure_problems(item, source, (*path, index))


def _schema_problems(doc: dict[str, Any], root: yaml.Node, source: str) -> Iterator[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(manifest_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: (node_at(root, e.absolute_path).start_mark.index, str(e.message)))
    said: set[tuple[Any, ...]] = set()
    for error in errors:
        path = tuple(error.absolute_path)
        if path in said and error.validator in ("minLength", "pattern"):
            continue  # one mistake, one message: an empty string breaks both
        said.add(path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            parent = node_at(root, path)
            keys = {k.value: k for k, _ in parent.value} if isinstance(parent, yaml.MappingNode) else {}  # once: 100,000 keys stay linear
            for key in sorted(k for k in error.instance if isinstance(k, str) and k not in allowed):
                where = keys.get(key) or parent
                hint = ", ".join(sorted(allowed))
                yield f"{source}:{pos(where)}: {field_path((*path, key))}: unknown field (allowed here: {hint})"
            continue
        node = node_at(root, path)
        yield f"{source}:{pos(node)}: {field_path(path)}: {_message(error)}"


def _message(error: jsonschema.ValidationError) -> str:
    value = error.instance
    if error.validator == "required":
        return f"missing required field {error.message.split(' is a required')[0]}"
    if error.validator == "const":
        return f"must be {error.validator_value!r} (got {_short(value)})"
    field = error.absolute_path[-1] if error.absolute_path else None
    if error.validator == "pattern" and isinstance(value, str):
        why = explain_name(value) if error.validator_value == manifest_schema()["$defs"]["modelName"]["pattern"] else ""
        key = str(error.absolute_path[-2]) if isinstance(field, int) and len(error.absolute_path) > 1 else str(field)
        return f"{_short(value)} {why or PATTERN_WORDS.get(key, 'is not in the expected form')}"
    if error.validator == "type":
        expected = error.validator_value
        names = " or ".join(expected) if isinstance(expected, list) else str(expected)
        if field == "sha256" and isinstance(value, (int, float)):
            return f"must be 64 hex digits in quotes ('…'): YAML read {_short(value)} as a number"
        if isinstance(field, int) and isinstance(value, str) and error.absolute_path[0] == "models":
            return f"a model is a mapping: write '- name: {value}' (got the bare string {_short(value)})"
        return f"must be of type {names} (got {_short(value)})"
    if error.validator == "enum":
        choices = error.validator_value if isinstance(error.validator_value, list) else []
        return f"must be one of {', '.join(map(str, choices))} (got {_short(value)})"
    if error.validator in _LIMITS and isinstance(value, (list, str)):
        unit, bound = _LIMITS[error.validator]
        return f"has {len(value):,} {unit}; {bound} {error.validator_value:,} allowed"
    return one_line(error.message)[:300]  # never the whole value: a long list would fill the screen


_LIMITS = {"maxItems": ("entries", "at most"), "minItems": ("entries", "at least"), "maxLength": ("characters", "at most")}


def _duplicate_model_problems(doc: dict[str, Any], root: yaml.Node, source: str) -> list[str]:
    models = doc.get("models")
    if not isinstance(models, list):
        return []
    problems: list[str] = []
    first: dict[str, tuple[int, str]] = {}
    for index, entry in enumerate(models):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        where = f"{source}:{pos(node_at(root, ('models', index, 'name')))}: models[{index}].name"
        if fold(name) in first:
            at, other = first[fold(name)]
            if other == name:
                problems.append(f"{where}: duplicate model name {name!r} (first as models[{at}])")
            else:
                problems.append(
                    f"{where}: {_short(name)} and models[{at}].name {_short(other)} differ only by case or Unicode normalisation "
                    "(one file on a case-insensitive or normalising filesystem)"
                )
        else:
            first[fold(name)] = (index, name)
    return problems


def _build(doc: dict[str, Any], data: bytes, source: str, base_dir: Path) -> Manifest:
    store = doc.get("store") or {}
    backup = doc.get("backup") or {}
    limits = doc.get("limits") or {}
    in_progress = doc.get("in_progress") or {}
    fetch = source_settings(doc, base_dir)

    def model(m: dict[str, Any]) -> ModelSpec:
        pinned = m.get("sha256")
        where = resolve_source(m.get("source"), m["name"], fetch.mirror, base_dir) if pinned else None
        return ModelSpec(m["name"], pinned, where, m.get("size"))

    return Manifest(
        source=source,
        sha256=hashlib.sha256(data).hexdigest(),
        name=doc["metadata"]["name"],
        backend=store.get("backend", "auto"),
        store_path=_resolve(store.get("path"), base_dir),
        models=tuple(model(m) for m in doc["models"]),
        whitelist=tuple(doc.get("whitelist", ())),
        prune=doc.get("prune", True),
        backup_dir=_resolve(backup.get("dir"), base_dir),
        backup_keep=backup.get("keep", 5),
        max_delete=limits.get("max_delete"),
        max_delete_bytes=parse_size(limits["max_delete_bytes"]) if limits.get("max_delete_bytes") is not None else None,
        backup_max_age_s=parse_duration(backup["max_age"]) if backup.get("max_age") is not None else None,
        partial_patterns=tuple(in_progress.get("patterns", DEFAULT_PARTIAL)),
        min_age_s=parse_duration(in_progress.get("min_age", DEFAULT_MIN_AGE)),
        sources=fetch,
        max_install_bytes=parse_size(limits["max_install_bytes"]) if limits.get("max_install_bytes") is not None else None,
    )


def _resolve(value: str | None, base_dir: Path) -> Path | None:
    if value is None:
        return None
    return Path(os.path.normpath(base_dir / Path(value).expanduser()))


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
