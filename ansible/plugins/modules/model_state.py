#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: the ocr-reconcile maintainers. MIT License.

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: model_state
short_description: Make an Aspose OCR AI model folder match an ocr-reconcile manifest
description:
  - Plans the store against the manifest and applies the plan through the ocr-reconcile library on the target
    (never the command line). Undeclared, unwhitelisted files are moved to a backup run; declared models with a
    source are downloaded, verified against their sha256 pin and put in place.
  - In check mode it returns the plan and C(changed=true) when anything would change, and touches nothing.
  - Every refusal the library knows (missing models, a broken guard, the store lock held, a stale state, a bad
    manifest) is a failure with a one-line C(msg) and a machine-readable C(reason).
version_added: "0.1.0"
author:
  - ocr-reconcile maintainers
requirements:
  - ocr-reconcile importable by the target's Python (set C(ansible_python_interpreter) to its venv)
extends_documentation_fragment:
  - ocr.reconcile.common
options:
  backup_dir:
    description: Backup folder; overrides the manifest's C(backup.dir).
    type: path
  max_delete:
    description: Refuse to move more files than this (the stricter of this and C(limits.max_delete)).
    type: int
  allow_empty:
    description: Allow a plan that moves every file, or a manifest that declares no models.
    type: bool
    default: false
  lock_timeout:
    description: Seconds to wait for another run's store lock.
    type: float
    default: 0
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Plan only (what a pull request shows)
  ocr.reconcile.model_state:
    manifest: /etc/ocr/models.yaml
  check_mode: true
  register: plan

- name: Converge the store, with a store path per host
  ocr.reconcile.model_state:
    manifest: /etc/ocr/models.yaml
    store: "{{ ocr_store }}"
    max_delete: 20
    lock_timeout: 30
"""

RETURN = r"""
store:
  description: The store folder, as resolved.
  returned: success
  type: str
backend:
  description: The backend that read the store (aspose or directory).
  returned: success
  type: str
plan:
  description:
    - The plan's summary (a count per action), bytes to move and to download, whether it has changes and converges.
    - The drifting changes (name, action, reason) and the broken guards.
  returned: always, when the manifest could be read
  type: dict
moved:
  description: Files moved to the backup run (name, size, method).
  returned: changed
  type: list
  elements: dict
installed:
  description: Models downloaded, verified and put in place (name, size, sha256).
  returned: changed
  type: list
  elements: dict
skipped:
  description: Entries left in place because they changed meanwhile, or something appeared in their way (name, why).
  returned: changed
  type: list
  elements: dict
bytes_moved:
  description: Bytes moved to the backup run.
  returned: changed
  type: int
bytes_freed:
  description: Bytes that left the store's filesystem (0 when the backup is on the same filesystem).
  returned: changed
  type: int
bytes_downloaded:
  description: Bytes installed from sources.
  returned: changed
  type: int
backup_run_id:
  description: The backup run holding the moved files (null when nothing moved); undo with ocr-reconcile restore.
  returned: changed
  type: str
recovered:
  description:
    - An interrupted run this apply finished first (op, run_id, finished names); null when there was none.
    - It makes the task changed.
  returned: success, not in check mode
  type: dict
pending_run:
  description: In check mode, an interrupted run that a real run would finish first (op, run_id); it makes the task changed.
  returned: check mode, when one is pending
  type: dict
engine_note:
  description: Set when an unlicensed engine hid files; the plan reads the folder itself.
  returned: success
  type: str
reason:
  description: On failure, why, as a stable word (cannot_converge, guard, locked, stale_plan, bad_manifest, store, install, ...).
  returned: failed
  type: str
problems:
  description: On failure, every line of the library's message (a bad manifest lists each problem, as file:line:col field why).
  returned: failed
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ocr.reconcile.plugins.module_utils.reconcile import (
    COMMON_OPTIONS,
    check_numbers,
    environ_ready,
    fail,
    library,
    safe,
    session,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(COMMON_OPTIONS, max_delete=dict(type="int"), allow_empty=dict(type="bool", default=False)),
        mutually_exclusive=[("manifest", "manifest_content")],
        required_one_of=[("manifest", "manifest_content")],
        supports_check_mode=True,
    )
    environ_ready()
    api = library(module)
    check_numbers(module)
    result = dict(changed=False)
    seen = dict(recovery=None)

    def show(proposal):  # the plan is reported even when the library then refuses it
        result.update(api.proposal_report(proposal))

    try:
        with session(module) as opened:
            done = opened.converge(
                show=show,
                recovered=lambda recovery: seen.update(recovery=recovery),
                check=module.check_mode,
                max_delete=module.params["max_delete"],
                allow_empty=module.params["allow_empty"],
            )
    except api.ReconcilerError as exc:
        recovery = seen["recovery"]
        if recovery is not None:
            result["recovered"] = api.recovery_report(recovery)
        fail(module, exc, **dict(result, changed=recovery is not None))  # a refusal changed nothing (but a recovery did)
    result.update(api.converged_report(done))
    if module._diff and done.plan.has_changes:
        result["diff"] = api.plan_diff(done.plan)
    failed = done.result.install.failed if done.result is not None else ()
    if failed:
        name, why = failed[0]
        more = " (and %d more)" % (len(failed) - 1) if len(failed) > 1 else ""
        module.fail_json(msg="cannot install %s: %s%s" % (safe(name), safe(why), more), reason="install", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
