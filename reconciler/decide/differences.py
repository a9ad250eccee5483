"""Whether a fresh plan still is the plan that was shown: every way the store or the installs differ
from a saved plan, one line each. Pure comparisons of values; the freshness rules apply uses."""

from __future__ import annotations

from ..read.scan import StoreScan
from ..read.sources import shown
from .plan import Plan
from .planfile import sources_doc


def fingerprint_differences(saved: Plan, scan: StoreScan) -> list[str]:
    """Every way ``scan`` differs from the files recorded in a saved plan, one line each."""
    out = []
    if saved.scan.root != scan.root:
        out.append(f"store path changed: {saved.scan.root} -> {scan.root}")
    was_files = {f.name: f for f in saved.scan.files}
    now_files = {f.name: f for f in scan.files}
    out += [f"added: {name}" for name in sorted(now_files.keys() - was_files.keys())]
    out += [f"removed: {name}" for name in sorted(was_files.keys() - now_files.keys())]
    for name in sorted(was_files.keys() & now_files.keys()):
        was, now = was_files[name], now_files[name]
        if was.size != now.size:
            out.append(f"resized: {name} ({was.size} -> {now.size} bytes)")
        elif (was.kind, was.inode, was.link_target) != (now.kind, now.inode, now.link_target):
            out.append(f"replaced: {name} (same size, different file)")
        elif was.mtime_ns != now.mtime_ns or (was.sha256 is not None and was.sha256 != now.sha256):
            out.append(f"modified: {name} (same size, new {'content' if was.mtime_ns == now.mtime_ns else 'mtime'})")
    return out


def install_differences(was: Plan, fresh: Plan) -> list[str]:
    """Every way the installs of ``fresh`` differ from those ``was`` shows (source as shown, pin, size,
    download settings), one line each: a saved plan installs exactly what it showed, or nothing. A
    field an older document did not record is not compared."""
    out = []
    now = {c.name: c for c in fresh.installs}
    for c in was.installs:
        f = now.get(c.name)
        if f is None:
            continue  # the change itself differs: the plan comparison names it
        if c.source is not None and f.source is not None and c.source != shown(f.source) and c.source != f.source:
            out.append(f"source changed: {c.name} ({c.source} -> {shown(f.source)})")
        if c.pin is not None and c.pin != f.pin:
            out.append(f"pin changed: {c.name} ({c.pin[:12]}… -> {(f.pin or '?')[:12]}…)")
        if c.download != f.download:
            out.append(f"size changed: {c.name} ({c.download} -> {f.download} bytes)")
        if c.reason != f.reason:  # what a reviewer read: it names the source
            out.append(f"reason changed: {c.name} ({c.reason!r} -> {f.reason!r})")
    if was.sources is None or fresh.sources is None:
        return out  # a document older than format 1.3 did not record them
    was_settings, now_settings = sources_doc(was.sources), sources_doc(fresh.sources)
    if was.installs and was_settings != now_settings:
        changed = [k for k in was_settings if was_settings[k] != now_settings[k]]
        out.append(f"download settings changed: {', '.join(changed)}")
    return out
