# -*- coding: utf-8 -*-
# What the ocr.reconcile modules share: their common options, opening a session of the ocr-reconcile
# library on the target from them, and turning the library's errors into one-line failures with a
# machine-readable reason. The modules are thin clients of the library API: no workflow lives here.

from __future__ import absolute_import, annotations, division, print_function

import contextlib
import json
import os
import sys

__metaclass__ = type

COMMON_OPTIONS = dict(
    manifest=dict(type="path"),
    manifest_content=dict(type="dict"),
    store=dict(type="path"),
    backend=dict(type="str", choices=["auto", "aspose", "directory"]),
    license=dict(type="path"),
    backup_dir=dict(type="path"),
    lock_timeout=dict(type="float", default=0.0),
)


def library(module):
    """The ocr-reconcile library on the target (its public API, ``import reconciler``), or a failure
    saying which Python lacks it."""
    try:
        import reconciler  # the package, installed with ocr-reconcile

        reconciler.ReconcilerError  # noqa: B018  (imports the API's errors: a broken install fails here, not later)
    except ImportError as exc:
        module.fail_json(
            msg="the ocr-reconcile library is not importable by %s (%s): install ocr-reconcile there, "
            "or set ansible_python_interpreter" % (sys.executable, exc),
            reason="missing_library",
        )
    return reconciler


def load(module):
    """The manifest the module was given: a file on the target, or ``manifest_content`` inline."""
    from reconciler import load_manifest, parse_manifest

    params = module.params
    if params.get("manifest"):
        return load_manifest(params["manifest"])
    text = json.dumps(params["manifest_content"], indent=1, sort_keys=False).encode()
    return parse_manifest(text, "manifest_content", base_dir=None)


@contextlib.contextmanager
def session(module, progress=None):
    """An open session of the library on this host, from the module's options. In check mode the hash
    cache beside the store is read, never written: a check changes nothing on the host."""
    from reconciler import open_session

    params = module.params
    with open_session(
        load(module),
        hash_cache="read" if module.check_mode else True,
        store=params.get("store"),
        backend=params.get("backend"),
        license_file=params.get("license"),
        backup_dir=params.get("backup_dir"),
        lock_timeout=params.get("lock_timeout") or 0.0,
        progress=progress,
    ) as opened:
        yield opened


def safe(text):
    """A name or message fit for a module result: control and invisible characters, and bytes that are
    not UTF-8 (surrogates, which Ansible refuses to carry), escaped as the CLI prints them."""
    from reconciler import safe as escaped

    return escaped(text)


def fail(module, exc, **result):
    """A library error as Ansible's failure: one line as ``msg`` (a heading such as "saved plan is stale:"
    with its first item), every line in ``problems``, and the error's stable ``reason``."""
    lines = [safe(line) for line in str(exc).splitlines()] or [type(exc).__name__]
    shown = 2 if len(lines) > 1 and lines[0].endswith(":") else 1
    msg = " ".join(lines[:shown]) + (" (and %d more)" % (len(lines) - shown) if len(lines) > shown else "")
    module.fail_json(msg=msg, reason=getattr(exc, "reason", "error"), problems=lines, **result)


def check_numbers(module):
    """Refuse what the command line refuses: a negative or non-finite timeout, a negative limit."""
    import math

    timeout, limit = module.params.get("lock_timeout") or 0.0, module.params.get("max_delete")
    if not math.isfinite(timeout) or timeout < 0:
        module.fail_json(msg="lock_timeout must be a finite number of seconds, 0 or more (got %s)" % timeout, reason="usage")
    if limit is not None and limit < 0:
        module.fail_json(msg="max_delete must be 0 or more (got %s)" % limit, reason="usage")


def environ_ready():
    """The engine's runtime needs this before it is imported (the library sets it too)."""
    os.environ.setdefault("DOTNET_SYSTEM_GLOBALIZATION_INVARIANT", "1")
