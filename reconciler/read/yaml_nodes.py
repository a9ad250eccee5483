"""Reading a manifest's YAML safely, and where each value sits in it, for ``file:line:col: field: why``
messages (``manifest.py``): :func:`read_yaml` refuses aliases, tags and deep nesting before building
anything, and turns every parser or constructor failure into a :class:`ManifestError` with a position.
The other helpers are pure functions over PyYAML's node tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from ..base.errors import ManifestError


def field_path(path: Sequence[str | int]) -> str:
    """Render a JSON path as ``models[2].name``; the empty path is ``(document)``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def node_at(root: yaml.Node, path: Sequence[str | int]) -> yaml.Node:
    """The deepest node along ``path`` (falls back to the last one found)."""
    node = root
    for part in path:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == part:
                    child = value
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node = child
    return node


def pos(node: yaml.Node) -> str:
    return mark(node.start_mark)


def mark(mark: Any) -> str:
    return f"{mark.line + 1}:{mark.column + 1}"


# libyaml (PyYAML's C parser) when this PyYAML has it: ~20x faster on a manifest of thousands of models.
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_CONSTRUCT_ERRORS = (ValueError, OverflowError, TypeError, KeyError, IndexError, AttributeError)


def read_yaml(text: str, source: str, max_depth: int) -> tuple[yaml.Node, Any]:
    """The node tree (for positions) and the document built from it, in one parse. PyYAML's own parser
    words the errors (a document libyaml refuses is parsed again by it) and reads any text with a tab or
    a byte-order mark past the start, where the two parsers are known to disagree: whether libyaml is
    installed never changes which manifests are valid."""
    first: yaml.YAMLError | None = None
    if "\t" not in text and "\ufeff" not in text[1:]:
        try:
            return _compose(text, source, _FAST_LOADER, max_depth)
        except yaml.YAMLError as exc:
            first = exc
    try:
        return _compose(text, source, yaml.SafeLoader, max_depth)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source, text) from None
    except _CONSTRUCT_ERRORS:  # PyYAML's scanner can crash where libyaml reported the problem
        raise _yaml_error(first or yaml.YAMLError("cannot be read"), source, text) from None


def _compose(text: str, source: str, loader_class: type[yaml.SafeLoader], max_depth: int) -> tuple[yaml.Node, Any]:
    """Parse to a node tree, refusing aliases (size bombs), tags and deep nesting before composing."""
    depth = 0
    for event in yaml.parse(text, Loader=loader_class):
        tag = getattr(event, "tag", None)
        if isinstance(event, yaml.AliasEvent) or tag is not None:
            shown = f"aliases (*{getattr(event, 'anchor', '')})" if tag is None else f"tags ({tag.replace('tag:yaml.org,2002:', '!!')})"
            raise ManifestError([f"{source}:{mark(event.start_mark)}: (document): YAML {shown} are not allowed in manifests"])
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > max_depth:
                raise ManifestError([f"{source}:{mark(event.start_mark)}: (document): nesting deeper than {max_depth} levels"])
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ManifestError([f"{source}:1:1: (document): the manifest is empty"])
        try:
            return node, loader.construct_document(node)
        except _CONSTRUCT_ERRORS as exc:  # e.g. an impossible date, an integer of 5,000 digits
            at, path = _unbuildable(loader, node) or (node, ())
            raise ManifestError([f"{source}:{pos(at)}: {field_path(path)}: {one_line(str(exc))[:200]}"]) from None
    finally:
        loader.dispose()


def _unbuildable(
    loader: yaml.SafeLoader, node: yaml.Node, path: tuple[str | int, ...] = ()
) -> tuple[yaml.Node, tuple[str | int, ...]] | None:
    """The first scalar under ``node`` that cannot be built, with its field path; None if there is none."""
    if isinstance(node, yaml.ScalarNode):
        loader.constructed_objects, loader.recursive_objects = {}, {}  # left over from the failed build
        try:
            loader.construct_object(node)
        except (*_CONSTRUCT_ERRORS, yaml.YAMLError):
            return node, path
        return None
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            found = _unbuildable(loader, key, path) or _unbuildable(loader, value, (*path, str(key.value)))
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found = _unbuildable(loader, item, (*path, index))
            if found:
                return found
    return None


def _yaml_error(exc: yaml.YAMLError, source: str, text: str = "") -> ManifestError:
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML forbids: its place, from the offset
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        return ManifestError([f"{source}:{line}:{col}: (document): invalid YAML: {one_line(str(exc)).split(': special')[0]}"])
    if isinstance(exc, yaml.MarkedYAMLError):
        at = exc.problem_mark or exc.context_mark
        where = mark(at) if at else "1:1"
        said = ", ".join(str(part) for part in (exc.context, exc.problem) if part)  # "expected …, but found …"
        if "constructor for the tag" in said:
            said = f"YAML tags are not allowed in manifests ({said})"
        return ManifestError([f"{source}:{where}: (document): invalid YAML: {one_line(said)}"])
    return ManifestError([f"{source}: (document): invalid YAML: {one_line(str(exc))}"])


def one_line(text: str) -> str:
    return " ".join(text.split())
