"""Two adaptations of Typer 0.29, in one place so that an upgrade has one file to check. Nothing is
patched on import: the CLI's entry point calls :func:`install` (and the tests' runner does too).

* Coercion without pydantic. Typer 0.29 turns every command-line value into its Python type
  through a pydantic ``TypeAdapter``; importing pydantic and building adapters cost ~80 ms of a
  command's start (``docs/performance.md``). The CLI's parameters are only ``str``, ``Path``,
  ``int``, ``float`` and ``bool`` (optional, or lists of them), which need no schema engine, so
  :func:`_runtime_param` coerces those itself and hands anything else to Typer unchanged. Typer is
  pinned to the releases this is tested with (pyproject.toml); if one renames a hook, nothing breaks
  for users (the patch is skipped and start-up is slower), but ``tests/cli/test_startup.py`` fails, naming it.
* Help without ``<bool>`` after flags and with ``<path>`` for ``list[Path]`` arguments.

Part of the CLI layer; must not be used for anything but parsing this tool's own options.
"""

from __future__ import annotations

import math
import os
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import typer.core
from typer._click.exceptions import BadParameter
from typer.core import TyperArgument, TyperOption

RuntimeParam: Any = getattr(typer.core, "RuntimeParam", object)  # another Typer: keep its coercion (above)

_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off", ""}


def _text(value: Any) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else str(value)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = _text(value).strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise ValueError(f"{_text(value)!r} is not a yes/no value")


def _number(kind: type[int] | type[float], low: float | None, high: float | None) -> Any:
    noun = "a whole number" if kind is int else "a number"

    def convert(value: Any) -> int | float:
        text = _text(value).strip()
        shown = repr(text if len(text) <= 40 else text[:40] + "…")
        try:
            if not text.isascii():  # int() would take '٣' or '３' for 3
                raise ValueError
            number = kind(text) if not isinstance(value, kind) else value
        except ValueError:
            raise ValueError(f"{shown} is not {noun}") from None
        if not math.isfinite(number):
            raise ValueError(f"{shown} is not a finite number")
        if low is not None and number < low:
            raise ValueError(f"{number} is below the minimum, {low:g}")
        if high is not None and number > high:
            raise ValueError(f"{number} is above the maximum, {high:g}")
        return number

    return convert


def _leaf(annotation: Any, info: Any) -> Any:
    """The converter for one value of ``annotation``, or None when Typer should handle it."""
    if info.parser is not None or getattr(info, "click_type", None) is not None:
        return None
    if annotation is str:
        return _text
    if annotation is bool:
        return _boolean
    if annotation is Path and not (info.exists or info.resolve_path or info.path_type):
        return lambda value: value if isinstance(value, Path) else Path(_text(value))
    if annotation in (int, float) and not info.clamp:
        return _number(annotation, info.min, info.max)
    return None


def _converter(annotation: Any, info: Any) -> Any:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _converter(rest[0], info) if len(rest) == 1 else None
    if origin is list:
        (item,) = get_args(annotation) or (None,)
        one = _leaf(item, info)
        return None if one is None else lambda values: [one(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    return _leaf(annotation, info)


@dataclass(frozen=True)
class _Plain(RuntimeParam):  # type: ignore[misc]
    """Coerces a value with a plain converter; errors read as Typer's own ("Invalid value for …")."""

    convert: Any

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            return self.convert(value)
        except ValueError as exc:
            raise BadParameter(str(exc), ctx=ctx, param=param) from None


def _runtime_param(descriptor: Any) -> Any:
    convert = None if descriptor.file_annotation is not None else _converter(descriptor.annotation, descriptor.parameter_info)
    if convert is None:
        return _TYPER_RUNTIME_PARAM(descriptor)
    return _Plain(parameter_info=descriptor.parameter_info, annotation=descriptor.annotation, convert=convert)


def _flag_type(self: TyperOption, ctx: Any) -> str | None:
    """Typer 0.29 shows ``<bool>`` after every flag in --help; a flag takes no value, so show none."""
    return None if self.is_flag else _TYPE_OF_VALUE(self, ctx)


def _element_type(self: TyperArgument, ctx: Any) -> str | None:
    """``<list[Path]>`` for an argument that takes several values: the usage line already says
    ``NAME...``, so show the type of one (``<path>``)."""
    shown = _TYPE_OF_ARGUMENT(self, ctx)
    return f"<{shown[6:-2].lower()}>" if shown and shown.startswith("<list[") else shown


_TYPER_RUNTIME_PARAM: Any = getattr(typer.core, "build_runtime_param", None)
_TYPE_OF_VALUE = TyperOption.display_type_rich
_TYPE_OF_ARGUMENT = TyperArgument.display_type_rich
HOOKS = ("typer.core.build_runtime_param", "TyperOption.display_type_rich", "TyperArgument.display_type_rich")


def install() -> tuple[str, ...]:
    """Adapt Typer (idempotent) and return the hooks adapted: all of :data:`HOOKS` on the Typer
    releases this is tested with; fewer if a release renamed one (that one is left as Typer's)."""
    done = []
    if _TYPER_RUNTIME_PARAM is not None and RuntimeParam is not object and hasattr(RuntimeParam, "_coerce_value"):
        typer.core.build_runtime_param = _runtime_param  # type: ignore[attr-defined]
        done.append(HOOKS[0])
    if callable(_TYPE_OF_VALUE):
        TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]
        done.append(HOOKS[1])
    if callable(_TYPE_OF_ARGUMENT):
        TyperArgument.display_type_rich = _element_type  # type: ignore[method-assign,assignment]
        done.append(HOOKS[2])
    return tuple(done)
