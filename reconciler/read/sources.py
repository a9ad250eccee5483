"""Where a declared model's bytes come from when it is absent: a path or ``file://`` URL (a shared
mount), an ``http(s)://`` URL (an artifact server), or ``hf://<owner>/<repo>/<path>[@<revision>]`` (the
Hugging Face Hub). Pure: parsing, checking and resolving source strings, and the manifest's ``sources``
settings. Fetching is ``fetch.py``'s.

A source never carries credentials (``https://user:pass@host`` is refused): tokens come from the
environment (``HF_TOKEN`` for ``hf://``; ``~/.netrc`` for HTTP servers), so they are never in a
manifest, a plan or a log. Every source needs a sha256 pin: nothing unverified enters the store.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import yaml

from .patterns import parse_duration
from .yaml_nodes import field_path, node_at, pos

SCHEMES = ("file", "http", "https", "hf")
_HF = re.compile(r"^hf://(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)/(?P<path>[^@\s]+?)(?:@(?P<revision>[\w./-]+))?$")
HF_DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class SourceSettings:
    """The manifest's ``sources:`` block: a mirror base that names resolve against, a timeout per read,
    retries with backoff, downloads at once, and what a pin mismatch does (report, or replace)."""

    mirror: str | None = None
    timeout_s: int = 30
    retries: int = 3
    parallel: int = 2
    on_mismatch: str = "report"


def local_path(source: str) -> str:
    """The path of a ``file://`` source (``file://localhost/...`` too)."""
    return source.removeprefix("file://localhost" if source.startswith("file://localhost/") else "file://")


def shown(source: str) -> str:
    """A source as plans and logs show it: a query string (a presigned URL's signature) is masked."""
    head, mark, _ = source.partition("?")
    return head + ("?…" if mark else "")


def source_problem(text: str) -> str:
    """Why ``text`` cannot be a source ("" when it can)."""
    if any(ord(c) < 0x20 or c == "\x7f" for c in text):
        return "must not contain control characters"
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    scheme = parts.scheme if "://" in text else ""
    if not scheme:
        return ""  # a path: absolute, or relative to the mirror (or the manifest's folder)
    if scheme not in SCHEMES:
        return f"has scheme {scheme!r}: use a path, file://, http://, https:// or hf://"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (user:password@): HTTP servers read ~/.netrc, the Hub reads HF_TOKEN"
    if scheme in ("http", "https") and not parts.hostname:
        return "names no host"
    if scheme == "hf" and (not _HF.match(text) or any(part in (".", "..") for part in text.split("@")[0].split("/"))):
        return "must be hf://<owner>/<repo>/<path in the repo>, optionally @<revision> (no '.' or '..' parts)"
    if scheme == "file" and parts.netloc not in ("", "localhost"):
        return "must be file:///absolute/path (no host)"
    return ""


def resolve(given: str | None, name: str, mirror: str | None, base_dir: Path) -> str | None:
    """The canonical source of model ``name``: ``given`` as a URL (a path becomes ``file://``; a relative
    one joins the mirror, else the manifest's folder), or the mirror joined with ``name``; None without
    either."""
    if given is not None and "://" in given:
        return given
    relative = given if given is not None else (name if mirror is not None else None)
    if relative is None:
        return None
    if relative.startswith("/") or relative.startswith("~") or mirror is None:
        return "file://" + os.path.normpath(base_dir / Path(relative).expanduser())
    return join(mirror, relative)


def join(base: str, relative: str) -> str:
    """``relative`` (a '/'-separated name) under ``base``, a mirror given as a path or a URL."""
    if base.startswith("hf://"):
        repo, _, revision = base.partition("@")
        return f"{repo.rstrip('/')}/{relative}" + (f"@{revision}" if revision else "")
    if "://" in base and not base.startswith("file://"):
        return base.rstrip("/") + "/" + quote(relative)
    root = base.removeprefix("file://") or "/"
    return "file://" + os.path.normpath(os.path.join(root, relative))


def hf_download_url(source: str, endpoint: str | None = None) -> str:
    """The Hub's resolve URL for an ``hf://`` source (``HF_ENDPOINT``, default huggingface.co)."""
    found = _HF.match(source)
    if found is None:
        raise ValueError(f"not an hf:// source: {source}")
    base = (endpoint or HF_DEFAULT_ENDPOINT).rstrip("/")
    return f"{base}/{found['repo']}/resolve/{quote(found['revision'] or 'main', safe='')}/{quote(found['path'])}"


def settings(doc: dict[str, Any], base_dir: Path) -> SourceSettings:
    """The ``sources:`` block of a validated manifest."""
    block = doc.get("sources") or {}
    mirror = block.get("mirror")
    if mirror is not None and "://" not in mirror:
        mirror = "file://" + os.path.normpath(base_dir / Path(mirror).expanduser())
    return SourceSettings(
        mirror=mirror,
        timeout_s=parse_duration(block.get("timeout", 30)),
        retries=block.get("retries", 3),
        parallel=block.get("parallel", 2),
        on_mismatch=block.get("on_mismatch", "report"),
    )


def source_problems(doc: dict[str, Any], root: yaml.Node, source: str) -> Iterator[str]:
    """``file:line:col: field: why`` for each unusable source, and for a source without a sha256 pin."""
    block = doc.get("sources")
    mirror = block.get("mirror") if isinstance(block, dict) else None
    if isinstance(mirror, str) and source_problem(mirror):
        yield f"{source}:{pos(node_at(root, ('sources', 'mirror')))}: sources.mirror: {source_problem(mirror)}"
    models = doc.get("models")
    for index, model in enumerate(models if isinstance(models, list) else []):
        if not isinstance(model, dict) or not isinstance(model.get("source"), str):
            continue
        path = ("models", index, "source")
        problem = source_problem(model["source"])
        if problem:
            yield f"{source}:{pos(node_at(root, path))}: {field_path(path)}: {problem}"
        elif not model.get("sha256"):
            why = "needs a sha256 pin beside it: nothing unverified enters the store"
            yield f"{source}:{pos(node_at(root, path))}: {field_path(path)}: {why}"
