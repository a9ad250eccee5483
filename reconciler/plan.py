"""Decide: diff a manifest against a store scan. Pure: no I/O, no clock, no engine.

The result, :class:`Plan`, is a frozen value: rendering shows it, ``apply.py`` consumes it and
decides nothing new. ``Change.reason`` explains a decision to humans and must never steer apply;
apply branches on ``Change.action`` alone.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from enum import Enum

from .manifest import Manifest, fold
from .scan import FileFacts, StoreScan


class Action(str, Enum):
    """What happens to one name. Closed set: apply handles exactly these."""

    KEEP = "keep"  # declared and present, or whitelisted: never touched
    DELETE = "delete"  # undeclared, unwhitelisted, prune on: moved to the backup
    IGNORE = "ignore"  # unmanaged but left in place (prune off, outside the store, not a file)
    MISSING = "missing"  # declared but absent or differing from its pin: cannot converge

    @property
    def symbol(self) -> str:
        return _SYMBOLS[self]


_SYMBOLS = {Action.KEEP: "=", Action.DELETE: "-", Action.IGNORE: "~", Action.MISSING: "!"}


@dataclass(frozen=True)
class Change:
    """The decision for one name. ``before`` is the scanned entry (None when absent)."""

    name: str
    action: Action
    reason: str
    before: FileFacts | None = None

    @property
    def size(self) -> int:
        return self.before.size if self.before is not None else 0


@dataclass(frozen=True)
class Guards:
    """Limits on one apply. None means no limit. ``allow_empty`` lifts the truncated-manifest guard."""

    max_delete: int | None = None
    max_delete_bytes: int | None = None
    allow_empty: bool = False


@dataclass(frozen=True)
class Plan:
    """Every decision for one manifest against one scan, sorted by name.

    ``scan`` is kept so a plan can be rendered and checked against the store later; do not use it
    to make new decisions at apply time.
    """

    manifest: Manifest
    scan: StoreScan
    changes: tuple[Change, ...]
    guards: Guards = Guards()

    def of(self, action: Action) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action is action)

    @property
    def to_delete(self) -> tuple[Change, ...]:
        return self.of(Action.DELETE)

    @property
    def bytes_freed(self) -> int:
        """Bytes the store loses when the plan is applied (a symlink frees only its own size)."""
        return sum(c.size for c in self.to_delete)

    @property
    def has_changes(self) -> bool:
        return bool(self.to_delete)

    @property
    def violations(self) -> tuple[str, ...]:
        """Guards this plan breaks; apply refuses a plan with any. Empty when nothing moves."""
        moving, total = len(self.to_delete), len(self.scan.files)
        if not moving:
            return ()
        out = []
        limit = self.guards.max_delete
        if limit is not None and moving > limit:
            out.append(f"{moving} files would move, over max_delete {limit}")
        cap = self.guards.max_delete_bytes
        if cap is not None and self.bytes_freed > cap:
            out.append(f"{self.bytes_freed} bytes would move, over max_delete_bytes {cap}")
        if not self.guards.allow_empty:
            if not self.manifest.models:
                out.append("the manifest declares no models (truncated?); pass --allow-empty if that is meant")
            elif moving == total:
                out.append(f"every file in the store ({total}) would move; pass --allow-empty if that is meant")
        return tuple(out)

    @property
    def converges(self) -> bool:
        """False when declared models are missing: applying cannot reach the manifest."""
        return not self.of(Action.MISSING)


def glob_match(pattern: str, name: str) -> bool:
    """Match a whitelist glob against a store-relative name, part by part.

    ``*``, ``?`` and ``[...]`` never cross ``/``, so ``custom_*`` matches top-level names only and
    ``*/tokenizer.json`` matches one folder down. Case-sensitive, like the Linux filesystem.
    """
    pattern_parts = pattern.split("/")
    name_parts = name.split("/")
    return len(pattern_parts) == len(name_parts) and all(fnmatch.fnmatchcase(n, p) for p, n in zip(pattern_parts, name_parts, strict=True))


def whitelisted_by(manifest: Manifest, name: str) -> str | None:
    """The first whitelist pattern matching ``name``, or None."""
    return next((p for p in manifest.whitelist if glob_match(p, name)), None)


def status_of(manifest: Manifest, name: str) -> str:
    """``declared``, ``whitelisted`` or ``unmanaged``: how the manifest regards a name."""
    if name in manifest.declared:
        return "declared"
    return "whitelisted" if whitelisted_by(manifest, name) is not None else "unmanaged"


def classify(manifest: Manifest, facts: FileFacts) -> tuple[Action, str]:
    """Decide what happens to one entry on disk, with the reason shown to humans."""
    spec = manifest.declared.get(facts.name)
    if spec is not None:
        if spec.sha256 is not None and facts.sha256 != spec.sha256:
            got = facts.sha256[:12] + "…" if facts.sha256 else "unknown (unreadable, or a snapshot taken without --hash)"
            return Action.MISSING, f"declared, but sha256 {got} differs from the pin {spec.sha256[:12]}…"
        return Action.KEEP, "declared"
    pattern = whitelisted_by(manifest, facts.name)
    if pattern is not None:
        return Action.KEEP, f"whitelisted by {pattern!r}"
    twin = manifest.folded.get(fold(facts.name))
    if twin is not None:
        return Action.IGNORE, f"differs from declared {twin!r} only by case or Unicode normalisation: never moved"
    if facts.symlinked_folder is not None:
        return Action.IGNORE, f"in symlinked folder {facts.symlinked_folder!r} (outside the store): never moved"
    if facts.kind == "other":
        return Action.IGNORE, "not a regular file or symlink: never moved"
    if not manifest.prune:
        return Action.IGNORE, "not declared, not whitelisted; prune is off"
    return Action.DELETE, "not declared, not whitelisted"


def guards_for(manifest: Manifest, max_delete: int | None = None, allow_empty: bool = False) -> Guards:
    """The manifest's limits, with a command-line ``max_delete`` applied on top (the stricter wins)."""
    limits = [n for n in (manifest.max_delete, max_delete) if n is not None]
    return Guards(min(limits) if limits else None, manifest.max_delete_bytes, allow_empty)


def make_plan(manifest: Manifest, scan: StoreScan, guards: Guards | None = None) -> Plan:
    """Diff ``manifest`` against ``scan``. Pure and deterministic: same inputs, equal plan.

    ``guards`` default to the manifest's own limits.
    """
    changes = [Change(f.name, *classify(manifest, f), before=f) for f in scan.files]
    on_disk = {f.name for f in scan.files}
    for spec in manifest.models:
        if spec.name not in on_disk:
            changes.append(Change(spec.name, Action.MISSING, "declared but absent from the store"))
    ordered = tuple(sorted(changes, key=lambda c: c.name))
    return Plan(manifest=manifest, scan=scan, changes=ordered, guards=guards or guards_for(manifest))
