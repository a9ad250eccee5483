"""JSON text for the tool's documents: indented for people, compact for machines, and streamed
(:func:`write_json`) so that a plan of 100,000 files is written without being held whole. Names that
are not UTF-8 (surrogates) are written with ``\\u`` escapes, so they read back to the same name."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, TextIO


def json_text(data: Any, compact: bool = False) -> str:
    """JSON, indented (or ``compact``: one line, for machines), UTF-8 as is; with ``\\u`` escapes when a
    file name is not UTF-8 (surrogates), so that it can be written, and read back to the same name."""
    shape: dict[str, Any] = {"separators": (",", ":")} if compact else {"indent": 2}
    text = json.dumps(data, ensure_ascii=False, **shape)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data, ensure_ascii=True, **shape)
    return text


class Lazy:
    """A JSON array whose items are made one batch at a time as :func:`write_json` writes them, so that
    a plan of 100,000 files never sits in memory as one document. Not for ``json.dumps``."""

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = items


BATCH = 1000  # items encoded per call of the C encoder: its speed, in bounded memory


def write_json(value: Any, out: TextIO) -> None:
    """Write ``value`` as compact JSON (as :func:`json_text` with ``compact``), streaming its :class:`Lazy`
    arrays; a batch holding a name that is not UTF-8 is written with ``\\u`` escapes."""
    if isinstance(value, Lazy):
        out.write("[")
        for i, (nested, part) in enumerate(_batches(value.items)):
            out.write("," if i else "")
            if nested:
                write_json(part, out)
            else:
                out.write(json_text(part, compact=True)[1:-1])
        out.write("]")
    elif isinstance(value, dict) and _holds_lazy(value):
        out.write("{")
        for i, (key, item) in enumerate(value.items()):
            out.write(("," if i else "") + json.dumps(key) + ":")
            write_json(item, out)
        out.write("}")
    else:
        out.write(json_text(value, compact=True))


def _batches(items: Iterable[Any]) -> Iterator[tuple[bool, Any]]:
    """``(False, [up to BATCH items])`` for plain items, ``(True, item)`` for one holding a Lazy array."""
    batch: list[Any] = []
    for item in items:
        if isinstance(item, dict) and _holds_lazy(item):
            if batch:
                yield False, batch
                batch = []
            yield True, item
        else:
            batch.append(item)
            if len(batch) == BATCH:
                yield False, batch
                batch = []
    if batch:
        yield False, batch


def _holds_lazy(doc: dict[str, Any]) -> bool:
    return any(isinstance(v, Lazy) for v in doc.values())
