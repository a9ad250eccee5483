"""Decide: diff a manifest against a store scan. Pure: no I/O, no clock, no engine.

The result, :class:`Plan`, is a frozen value: renderers show it, ``api/apply.py`` consumes it and
decides nothing new. ``Change.reason`` explains a decision to humans and must never steer apply;
apply branches on ``Change.action`` alone. Everything a renderer or a summary needs to know about
an action (its symbol, colour, whether it is a change, whether it blocks convergence) is a property
of :class:`Action`, so adding an action is one edit here plus the schema's enum.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

from ..base.errors import CannotConvergeError, ExitCode, Guard, GuardError, Violation
from ..base.layout import check_backup_root, is_control_name
from ..read.manifest import Manifest, ManifestRef, fold
from ..read.patterns import base_match, glob_match
from ..read.scan import FileFacts, StoreScan
from ..read.sources import SourceSettings, shown


class _Props(NamedTuple):
    symbol: str
    colour: str  # ANSI SGR parameters
    label: str  # how a summary counts it: "3 kept"
    is_change: bool  # apply acts on it
    blocks: bool  # the store cannot reach the manifest while one exists
    always_counted: bool  # summaries show its count even when 0


class Action(str, Enum):
    """What happens to one name. Closed set: apply handles exactly these. Declaration order is the
    order summaries list them in."""

    DELETE = "delete"  # undeclared, unwhitelisted, prune on: moved to the backup
    KEEP = "keep"  # declared and present, or whitelisted: never touched
    MISSING = "missing"  # declared but absent: cannot converge
    MISMATCH = "mismatch"  # declared, present, but its sha256 differs from the pin: never moved, cannot converge
    IGNORE = "ignore"  # unmanaged but left in place (prune off, outside the store, not a file)
    INSTALL = "install"  # declared, absent, with a source: downloaded, verified, put in place
    REPLACE = "replace"  # declared, present, differs from its pin, with a source and on_mismatch replace: backup, then install

    @property
    def props(self) -> _Props:
        return _PROPS[self]

    @property
    def symbol(self) -> str:
        return self.props.symbol

    @property
    def is_change(self) -> bool:
        """Apply acts on it (moves it)."""
        return self.props.is_change

    @property
    def blocks(self) -> bool:
        """Its presence in a plan means the store cannot converge on the manifest."""
        return self.props.blocks

    @property
    def is_drift(self) -> bool:
        """The store differs from the manifest here: a change, or something blocking convergence."""
        return self.is_change or self.blocks


_PROPS = {
    Action.DELETE: _Props("-", "31", "to move to backup", is_change=True, blocks=False, always_counted=True),
    Action.KEEP: _Props("=", "32", "kept", is_change=False, blocks=False, always_counted=True),
    Action.MISSING: _Props("!", "33;1", "missing", is_change=False, blocks=True, always_counted=True),
    Action.MISMATCH: _Props("*", "35;1", "differ from their pin", is_change=False, blocks=True, always_counted=False),
    Action.IGNORE: _Props("~", "2", "left in place unmanaged", is_change=False, blocks=False, always_counted=False),
    Action.INSTALL: _Props("+", "32;1", "to install", is_change=True, blocks=False, always_counted=False),
    Action.REPLACE: _Props("^", "36;1", "to replace from their source", is_change=True, blocks=False, always_counted=False),
}


@dataclass(frozen=True, slots=True)
class Change:
    """The decision for one name. ``before`` is the scanned entry (None when absent). An install or a
    replace carries everything apply needs to fetch it: ``source``, ``pin`` and ``download``."""

    name: str
    action: Action
    reason: str
    before: FileFacts | None = None
    source: str | None = None  # install, replace: where the bytes come from
    download: int | None = None  # install, replace: bytes to fetch when known (the manifest's size)
    pin: str | None = None  # install, replace: the sha256 the download must have

    @property
    def size(self) -> int:
        return self.before.size if self.before is not None else 0


@dataclass(frozen=True)
class Guards:
    """Limits on one apply. None means no limit. ``allow_empty`` lifts the truncated-manifest and
    whole-store guards."""

    max_delete: int | None = None
    max_delete_bytes: int | None = None
    allow_empty: bool = False
    max_install_bytes: int | None = None


def violations_of(guards: Guards, moving: int, moving_bytes: int, total: int, declared: int) -> tuple[Violation, ...]:
    """The guards a plan moving ``moving`` of ``total`` files breaks. Empty when nothing moves."""
    if not moving:
        return ()
    out = []
    if guards.max_delete is not None and moving > guards.max_delete:
        out.append(Violation(Guard.MAX_DELETE, f"{moving} files would move, over max_delete {guards.max_delete}"))
    if guards.max_delete_bytes is not None and moving_bytes > guards.max_delete_bytes:
        out.append(Violation(Guard.MAX_DELETE_BYTES, f"{moving_bytes} bytes would move, over max_delete_bytes {guards.max_delete_bytes}"))
    if not guards.allow_empty:
        if not declared:
            out.append(Violation(Guard.EMPTY_MANIFEST, "the manifest declares no models (truncated?)"))
        elif moving == total:
            out.append(Violation(Guard.WHOLE_STORE, f"every file in the store ({total}) would move"))
    return tuple(out)


@dataclass(frozen=True)
class Summary:
    """Counts per action and bytes to move: what every summary line and exit code is made from."""

    counts: tuple[tuple[Action, int], ...]
    bytes_freed: int
    bytes_to_download: int = 0  # known sizes only (a source without a size counts 0)

    def count(self, action: Action) -> int:
        return dict(self.counts)[action]

    @property
    def has_changes(self) -> bool:
        return any(n for a, n in self.counts if a.is_change)

    @property
    def converges(self) -> bool:
        return not any(n for a, n in self.counts if a.blocks)


@dataclass(frozen=True)
class Plan:
    """Every decision for one manifest against one scan, sorted by name, with the guards it breaks.

    ``scan`` is kept so a plan can be rendered and checked against the store later; do not use it
    to make new decisions at apply time. A plan read back from a saved file (``planfile``) is a
    Plan too: render it, compare it, but apply only a fresh one.

    A plan is all that apply reads (Terraform's rule): its installs carry their source, pin and size,
    and ``sources`` the download settings (timeout, retries, parallel downloads) they run with.
    """

    manifest: ManifestRef
    scan: StoreScan
    changes: tuple[Change, ...]
    guards: Guards = Guards()
    violations: tuple[Violation, ...] = ()
    sources: SourceSettings | None = field(default_factory=SourceSettings)  # None: read from a document older than 1.3

    def of(self, action: Action) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action is action)

    @property
    def to_delete(self) -> tuple[Change, ...]:
        return self.of(Action.DELETE)

    @property
    def installs(self) -> tuple[Change, ...]:
        """Models to fetch from their source: absent ones, and replacements of mismatched ones."""
        return tuple(c for c in self.changes if c.action in (Action.INSTALL, Action.REPLACE))

    @property
    def blocking(self) -> tuple[Change, ...]:
        """Changes that stop the store converging (missing models, pin mismatches)."""
        return tuple(c for c in self.changes if c.action.blocks)

    @cached_property
    def summary(self) -> Summary:
        """Counts per action and bytes to move; the one place the plan's totals are computed."""
        download = sum(c.download or 0 for c in self.installs)
        return Summary(tuple((a, len(self.of(a))) for a in Action), sum(c.size for c in self.to_delete), download)

    @property
    def bytes_freed(self) -> int:
        """Bytes the store loses when the plan is applied (a symlink frees only its own size)."""
        return self.summary.bytes_freed

    @property
    def has_changes(self) -> bool:
        return self.summary.has_changes

    @property
    def converges(self) -> bool:
        """False when declared models are missing or differ from their pin."""
        return self.summary.converges

    @property
    def in_sync(self) -> bool:
        """The store already is what the manifest declares: nothing to change, nothing blocking (no drift)."""
        return self.converges and not self.has_changes

    @property
    def detailed_exit_code(self) -> ExitCode:
        """3 cannot converge, 2 changes pending, 0 nothing to do (Terraform's -detailed-exitcode)."""
        return detailed_exit_code([self])


@dataclass(frozen=True)
class FleetPlan:
    """One plan per host, from snapshots: what a fleet-wide pull request shows."""

    hosts: tuple[Plan, ...] = field(default=())

    @property
    def detailed_exit_code(self) -> ExitCode:
        return detailed_exit_code(self.hosts)


def detailed_exit_code(plans: Iterable[Plan]) -> ExitCode:
    """The worst of: cannot converge (3), changes pending (2), nothing to do (0)."""
    plans = list(plans)
    if not all(p.converges for p in plans):
        return ExitCode.CANNOT_CONVERGE
    return ExitCode.CHANGES if any(p.has_changes for p in plans) else ExitCode.OK


def whitelisted_by(manifest: Manifest, name: str) -> str | None:
    """The first whitelist pattern matching ``name``, or None."""
    return next((p for p in manifest.whitelist if glob_match(p, name)), None)


def status_of(manifest: Manifest, name: str) -> str:
    """``declared``, ``whitelisted`` or ``unmanaged``: how the manifest regards a name."""
    if name in manifest.declared:
        return "declared"
    return "whitelisted" if whitelisted_by(manifest, name) is not None else "unmanaged"


def classify(manifest: Manifest, facts: FileFacts, now_ns: int | None = None) -> tuple[Action, str]:
    """Decide what happens to one entry on disk, with the reason shown to humans. ``now_ns`` is when
    the store was scanned (None: no recency check, e.g. for a snapshot or a saved plan)."""
    spec = manifest.declared.get(facts.name)
    if spec is not None:
        if spec.sha256 is not None and facts.sha256 != spec.sha256:
            got = facts.sha256[:12] + "…" if facts.sha256 else "unknown (unreadable, or a snapshot taken without hashes)"
            if spec.source and manifest.sources.on_mismatch == "replace" and facts.sha256 and facts.kind != "other":
                return Action.REPLACE, f"sha256 {got} differs from the pin {spec.sha256[:12]}…: to backup, then from {shown(spec.source)}"
            return Action.MISMATCH, f"declared, but sha256 {got} differs from the pin {spec.sha256[:12]}…"
        return Action.KEEP, "declared"
    pattern = whitelisted_by(manifest, facts.name)
    if pattern is not None:
        return Action.KEEP, f"whitelisted by {pattern!r}"
    if is_control_name(facts.name):
        return Action.IGNORE, "a file ocr-reconcile keeps for a store (lock, journal, backup, temporary copy): never moved"
    twin = manifest.folded.get(fold(facts.name))
    if twin is not None:
        return Action.IGNORE, f"differs from declared {twin!r} only by case or Unicode normalisation: never moved"
    if facts.symlinked_folder is not None:
        return Action.IGNORE, f"in symlinked folder {facts.symlinked_folder!r} (outside the store): never moved"
    if facts.kind == "other":
        return Action.IGNORE, "not a regular file or symlink: never moved"
    if not manifest.prune:
        return Action.IGNORE, "not declared, not whitelisted; prune is off"
    partial = base_match(manifest.partial_patterns, facts.name)
    if partial is not None:
        return Action.IGNORE, f"named like a download in progress ({partial!r}, in_progress.patterns): left in place"
    age_s = (now_ns - facts.mtime_ns) / 1e9 if now_ns is not None else None
    if age_s is not None and age_s < manifest.min_age_s:
        return Action.IGNORE, f"modified {max(age_s, 0):.0f} s before the scan (in_progress.min_age {manifest.min_age_s} s): left in place"
    return Action.DELETE, "not declared, not whitelisted"


def guards_for(manifest: Manifest, max_delete: int | None = None, allow_empty: bool = False) -> Guards:
    """The manifest's limits, with a caller's ``max_delete`` applied on top (the stricter wins)."""
    limits = [n for n in (manifest.max_delete, max_delete) if n is not None]
    return Guards(min(limits) if limits else None, manifest.max_delete_bytes, allow_empty, manifest.max_install_bytes)


def make_plan(manifest: Manifest, scan: StoreScan, guards: Guards | None = None) -> Plan:
    """Diff ``manifest`` against ``scan``. Pure and deterministic: same inputs, equal plan.

    ``guards`` default to the manifest's own limits.
    """
    changes = [_fetching(manifest, Change(f.name, *classify(manifest, f, scan.scanned_ns), f)) for f in scan.files]
    on_disk = {f.name for f in scan.files}
    for spec in manifest.models:
        if spec.name in on_disk:
            continue
        if spec.source is None:
            why = "declared but absent from the store" + (
                "; it has no sha256 pin, so it is not installed" if manifest.sources.mirror else ""
            )
            changes.append(Change(spec.name, Action.MISSING, why))
        else:
            size = f" ({spec.size:,} bytes)" if spec.size is not None else ""
            changes.append(_fetching(manifest, Change(spec.name, Action.INSTALL, f"absent: to install from {shown(spec.source)}{size}")))
    return assemble(manifest.ref, scan, changes, guards or guards_for(manifest), manifest.sources)


def _fetching(manifest: Manifest, change: Change) -> Change:
    """``change`` with its source, download size and pin, when it is an install or a replace."""
    if change.action not in (Action.INSTALL, Action.REPLACE):
        return change
    spec = manifest.declared[change.name]
    return Change(change.name, change.action, change.reason, change.before, spec.source, spec.size, spec.sha256)


def assemble(
    manifest: ManifestRef, scan: StoreScan, changes: Iterable[Change], guards: Guards, sources: SourceSettings | None = None
) -> Plan:
    """A Plan from its decisions, sorted by name, with its guard violations computed."""
    ordered = tuple(sorted(changes, key=lambda c: c.name))
    moving = [c for c in ordered if c.action is Action.DELETE]
    violations = violations_of(guards, len(moving), sum(c.size for c in moving), len(scan.files), manifest.models)
    fetching = sum(c.download or 0 for c in ordered if c.action in (Action.INSTALL, Action.REPLACE))
    if guards.max_install_bytes is not None and fetching > guards.max_install_bytes:
        over = f"{fetching} bytes would be downloaded, over max_install_bytes {guards.max_install_bytes}"
        violations += (Violation(Guard.MAX_INSTALL_BYTES, over),)
    if scan.free_bytes is not None and fetching > scan.free_bytes:
        short = f"{fetching} bytes would be downloaded, but the store's filesystem has {scan.free_bytes} free"
        violations += (Violation(Guard.FREE_SPACE, short),)
    return Plan(manifest=manifest, scan=scan, changes=ordered, guards=guards, violations=violations, sources=sources or SourceSettings())


def refuse_unapplicable(plan: Plan, backup_root: Path) -> None:
    """Raise if ``plan`` must not be applied: missing models (exit 3), a backup folder inside the
    store, or a broken guard (exit 4). Call it before asking for confirmation; apply_plan calls it too."""
    if not plan.converges:
        raise CannotConvergeError([c.name for c in plan.blocking])
    check_backup_root(plan.scan.root, backup_root)
    if plan.violations:
        raise GuardError(plan.violations)
