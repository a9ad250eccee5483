"""Name patterns and quantities of the manifest: whitelist globs (with gitignore's ``**``), the names
of downloads still in progress, ``5m``/``30d`` durations and ``50 GiB`` sizes.

Pure functions: no disk, no clock. The plan (``plan.py``) uses the matchers; the manifest loader
(``manifest.py``) uses :func:`pattern_problems` to refuse malformed patterns with a clear message.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import yaml

from .yaml_nodes import field_path, node_at, pos

# Names of downloads that are still being written (browsers, curl -C, wget, huggingface_hub, rsync).
DEFAULT_PARTIAL = ("*.part", "*.partial", "*.incomplete", "*.download", "*.crdownload", "*.tmp")
DEFAULT_MIN_AGE = "5m"
# Zero-width, bidi-override and BOM characters: the schema's name pattern refuses them too.
INVISIBLE = frozenset(
    [chr(c) for c in range(0x200B, 0x2010)]
    + [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2060, 0x2065)]
    + [chr(c) for c in range(0x2066, 0x206A)]
    + ["\ufeff"]
)


def explain_name(name: str) -> str:
    """Say in words why ``name`` is not a valid model name or pattern ("" if nothing obvious).

    Only for messages: validity itself is the schema's ``modelName`` pattern.
    """
    if name.startswith("/"):
        return "must be relative to the store, not an absolute path"
    if "\x00" in name:
        return "must not contain a NUL byte"
    if any(ord(c) < 0x20 or c == "\x7f" for c in name):
        return "must not contain control characters"
    if any(c in INVISIBLE for c in name):
        return "must not contain invisible or bidirectional-override characters"
    if "\\" in name:
        return "must not contain a backslash (use '/')"
    parts = name.split("/")
    if "" in parts:
        return "must not have an empty part ('//' or a trailing '/')"
    if ".." in parts:
        return "must not contain '..'"
    if "." in parts:
        return "must not contain '.' as a part"
    if len(parts) > 2:
        return "may have at most one folder level (the engine lists the store and its immediate subfolders)"
    return ""


# What a value of each field must look like, in words: the schema's patterns are not for people.
PATTERN_WORDS = {
    "sha256": "must be 64 lower-case hex digits (0-9, a-f), quoted",
    "max_delete_bytes": "must be a size such as 50 GiB or 500MB (a number, then B, KB, MB, GB, TB or KiB, MiB, GiB, TiB)",
    "min_age": "must be a duration such as 90s, 5m, 2h or 1d (or a number of seconds)",
    "max_age": "must be a duration such as 12h or 30d (or a number of seconds)",
    "name": "must start with a letter or digit, then up to 62 letters, digits, '.', '_' or '-'",
    "path": "must not contain a NUL byte",
    "patterns": "is matched against the last part of a name only: it must not contain '/' (nor control characters)",
}
_DURATION = re.compile(r"^\s*([0-9]+)\s*([smhd]?)\s*$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def glob_match(pattern: str, name: str) -> bool:
    """Match a whitelist glob against a store-relative name, part by part.

    ``*``, ``?`` and ``[...]`` never cross ``/``, so ``custom_*`` matches top-level names only and
    ``*/tokenizer.json`` one folder down. A part that is ``**`` matches any number of folder levels,
    none included, as in gitignore: ``**`` keeps everything, ``**/tokenizer.json`` matches at any
    depth. Case-sensitive, like the Linux filesystem.
    """
    return _match(_parts(pattern), name.split("/"))


_Part = Callable[[str], object] | None  # a compiled part's match; None for "**"


@functools.lru_cache(maxsize=4096)
def _parts(pattern: str) -> tuple[_Part, ...]:
    return tuple(None if part == "**" else re.compile(fnmatch.translate(part)).match for part in pattern.split("/"))


def _match(parts: Sequence[_Part], names: list[str]) -> bool:
    if not parts:
        return not names
    first = parts[0]
    if first is None:
        return any(_match(parts[1:], names[i:]) for i in range(len(names) + 1))
    return bool(names) and first(names[0]) is not None and _match(parts[1:], names[1:])


def base_match(patterns: tuple[str, ...], name: str) -> str | None:
    """The first pattern matching the last part of ``name`` (a partial-download name), or None."""
    base = name.rpartition("/")[2]
    if _any_of(patterns)(base) is None:  # one regex for all: most names match none
        return None
    return next((p for p in patterns if fnmatch.fnmatchcase(base, p)), None)


@functools.lru_cache(maxsize=64)
def _any_of(patterns: tuple[str, ...]) -> Callable[[str], object]:
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns) or "(?!)").match


def pattern_problem(pattern: str) -> str:
    """Why ``pattern`` is not a usable glob ("" when it is): an unclosed ``[``, or ``**`` that is not
    a whole part."""
    for part in pattern.split("/"):
        if "**" in part and part != "**":
            return "uses '**' inside a name: it must be a whole part (like '**/tokenizer.json'); use '*' within a name"
        i = 0
        while i < len(part):
            if part[i] == "[":
                end = part.find("]", i + 2 if part[i + 1 : i + 2] in ("!", "]") else i + 1)
                if end == -1:
                    if "]" in pattern[pattern.find(part) + len(part) :]:
                        return "has a '[…]' class with '/' in it: a class matches one character within a name, never '/'"
                    return "has a '[' that is never closed (write '[[]' for a literal '[')"
                i = end
            i += 1
    return ""


def parse_duration(value: int | str) -> int:
    """Seconds from an int (seconds) or a string such as ``90s``, ``5m``, ``2h`` or ``30d``."""
    if isinstance(value, int):
        return value
    found = _DURATION.match(value)
    if not found:
        raise ValueError(f"not a duration: {value!r}")
    return int(found.group(1)) * _SECONDS[found.group(2)]


def pattern_problems(doc: dict[str, Any], root: yaml.Node, source: str) -> Iterator[str]:
    """``file:line:col: field: why`` for each malformed glob of the whitelist and ``in_progress``."""
    places: list[tuple[tuple[str | int, ...], Any]] = []
    whitelist = doc.get("whitelist")
    if isinstance(whitelist, list):
        places += [(("whitelist", i), p) for i, p in enumerate(whitelist)]
    in_progress = doc.get("in_progress")
    patterns = in_progress.get("patterns") if isinstance(in_progress, dict) else None
    if isinstance(patterns, list):
        places += [(("in_progress", "patterns", i), p) for i, p in enumerate(patterns)]
    for path, pattern in places:
        problem = pattern_problem(pattern) if isinstance(pattern, str) else ""
        if problem:
            yield f"{source}:{pos(node_at(root, path))}: {field_path(path)}: {pattern!r} {problem}"


_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(value: int | str) -> int:
    """Bytes from an int or a size string such as ``10 GiB`` or ``500MB`` (schema-validated form)."""
    if isinstance(value, int):
        return value
    text = value.strip().replace(" ", "")
    number = text.rstrip("KMGTiB")
    unit = text[len(number) :].upper() or "B"
    if unit not in _UNITS or not number:
        raise ValueError(f"not a size: {value!r}")
    return int(float(number) * _UNITS[unit])
