"""Where a value sits in a YAML file, for ``file:line:col: field: why`` messages (``manifest.py``).

Pure helpers over PyYAML's node tree; they read nothing and decide nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml


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


def key_node(mapping: yaml.Node, key: str) -> yaml.Node | None:
    if isinstance(mapping, yaml.MappingNode):
        for k, _ in mapping.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return k
    return None


def pos(node: yaml.Node) -> str:
    return mark(node.start_mark)


def mark(mark: Any) -> str:
    return f"{mark.line + 1}:{mark.column + 1}"
