"""Values -> the plain dicts a machine front end returns (an Ansible module's result and ``diff``).

Built from the library's values only, with every name and message escaped as the CLI prints them
(:func:`~.plans.safe`: control characters, invisible ones and bytes that are not UTF-8), so a result
carries any file name. For front ends that report results; never read back to decide anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..decide.plan import Action, Plan
from .plans import engine_note, safe

if TYPE_CHECKING:
    from ..api.outcomes import Converged, Proposal
    from ..disk.recovery import Recovery


def plan_report(plan: Plan) -> dict[str, Any]:
    """A plan as a result: the store and backend, a count per action, bytes to move and to download,
    whether it has changes and converges, the drifting changes (name, action, reason), the broken
    guards, and the engine's note when an unlicensed engine hid files."""
    summary = plan.summary
    return dict(
        store=plan.scan.root,
        backend=plan.scan.backend,
        plan=dict(
            summary={action.value: n for action, n in summary.counts},
            bytes_to_move=summary.bytes_freed,
            bytes_to_download=summary.bytes_to_download,
            has_changes=summary.has_changes,
            converges=summary.converges,
            changes=[dict(name=safe(c.name), action=c.action.value, reason=safe(c.reason)) for c in plan.changes if c.action.is_drift],
            violations=[safe(v.message) for v in plan.violations],
        ),
        engine_note=engine_note(plan.scan),
    )


def plan_diff(plan: Plan) -> dict[str, str]:
    """The store's files before and after the plan, one ``name (size bytes)`` per line (Ansible's ``diff``)."""

    def line(name: str, size: int | None) -> str:
        return f"{safe(name)} ({size if size is not None else '?'} bytes)\n"  # a newline in a name stays escaped

    leaving = (Action.DELETE, Action.REPLACE)
    before = [line(f.name, f.size) for f in plan.scan.files]
    after = [line(c.name, c.before.size) for c in plan.changes if c.before is not None and c.action not in leaving]
    after += [line(c.name, c.download) for c in plan.installs]
    return dict(
        before_header=f"{plan.scan.root} (before)",
        after_header=f"{plan.scan.root} (after)",
        before="".join(sorted(before)),
        after="".join(sorted(after)),
    )


def recovery_report(recovery: Recovery | None) -> dict[str, Any] | None:
    """What finishing an interrupted run did (None when there was none)."""
    if recovery is None:
        return None
    return dict(op=recovery.op, run_id=recovery.run_id, finished=[safe(n) for n in recovery.finished])


def proposal_report(proposal: Proposal) -> dict[str, Any]:
    """What an apply is about to do, as a result: the plan's report and, in check mode, the interrupted
    run a real run would finish first. A front end reports it as soon as the plan is made, refused or not."""
    out = plan_report(proposal.plan)
    if proposal.pending is not None:
        out["pending_run"] = dict(op=proposal.pending.op, run_id=proposal.pending.run_id)
    return out


def converged_report(done: Converged) -> dict[str, Any]:
    """What :meth:`~reconciler.Session.converge` did, as a result: the proposal's report, the recovery,
    and, when it applied, what moved, installed and was skipped."""
    proposal = done.proposal
    out = proposal_report(proposal)
    if proposal.check:  # what a real run would change: the plan's changes, and an interrupted run it would finish
        out["changed"] = done.plan.has_changes or proposal.pending is not None
    else:
        out["changed"] = done.changed
        out["recovered"] = recovery_report(proposal.recovery)
    applied = done.result
    if applied is None:
        return out
    install = applied.install
    out.update(
        moved=[dict(name=safe(m.name), size=m.size, method=m.method) for m in applied.moved],
        installed=[dict(name=safe(e.name), size=e.size, sha256=e.sha256) for e in install.installed],
        skipped=[dict(name=safe(n), why=safe(w)) for n, w in (*applied.skipped, *install.skipped)],
        bytes_moved=applied.bytes_moved,
        bytes_freed=applied.bytes_freed,
        bytes_downloaded=install.bytes_installed,
        backup_run_id=applied.run_id,
    )
    return out
