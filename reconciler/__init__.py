"""ocr-reconcile: make an Aspose OCR AI model folder match a declared manifest.

The library API (the CLI and the Ansible modules are thin clients of it)::

    from reconciler import open_session

    with open_session(manifest="manifests/example.yaml", store="/srv/models") as session:
        plan = session.plan()                 # scan (read-only) + diff: a frozen Plan
        print(plan.summary, plan.violations)
        with session.lock() as held:          # the store lock; an interrupted run is recovered first
            result = session.apply(session.plan(), held)
        print(result.run_id, [m.name for m in result.moved])

Stages: load (``manifest``) → scan (``scan``, read-only, through ``stores``) → plan (``plan``, pure)
→ apply (``apply``, ``restore``, ``recovery`` over ``transfer`` and ``moves``, the only mutators) → release (the session's ``finally``).
Everything a caller needs is exported here; other modules are internal and may change.
"""

from __future__ import annotations

import lazy_loader

# Every export is listed once, in __init__.pyi; each is imported on first use, so that
# `ocr-reconcile --version` and the read-only commands import only what they need.
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
