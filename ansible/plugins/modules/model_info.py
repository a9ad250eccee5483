#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: the ocr-reconcile maintainers. MIT License.

from __future__ import absolute_import, annotations, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: model_info
short_description: Read an Aspose OCR AI model folder as facts and as an ocr-reconcile snapshot
description:
  - Reads the store through the ocr-reconcile library on the target and returns its inventory as facts and as a
    snapshot document, so that a playbook can collect one snapshot per host for the fleet-wide plan
    (C(ocr-reconcile plan MANIFEST --state FOLDER)) that a pull request shows. Changes nothing.
version_added: "0.1.0"
author:
  - ocr-reconcile maintainers
requirements:
  - ocr-reconcile importable by the target's Python
extends_documentation_fragment:
  - ocr.reconcile.common
options:
  backup_dir:
    description: Unused by this module; accepted so both modules take the same options.
    type: path
  lock_timeout:
    description: Unused by this module (it takes no lock).
    type: float
    default: 0
  hash:
    description: Record the sha256 of every file (else only of the models the manifest pins).
    type: bool
    default: false
  host:
    description: The host name the snapshot records (default the inventory name of the host).
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Snapshot every host for the pull request's fleet plan
  ocr.reconcile.model_info:
    manifest: /etc/ocr/models.yaml
    host: "{{ inventory_hostname }}"
  register: info

- name: Keep it on the controller
  ansible.builtin.copy:
    content: "{{ info.snapshot }}"
    dest: "snapshots/{{ inventory_hostname }}.json"
  delegate_to: localhost
"""

RETURN = r"""
snapshot:
  description:
    - The snapshot document (with its checksum) as JSON text, exactly what C(ocr-reconcile snapshot --out) writes.
    - Write it unchanged (C(content) of M(ansible.builtin.copy)); names that are not UTF-8 stay escaped in it.
  returned: success
  type: str
reason:
  description: On failure, why, as a stable word (store, bad_manifest, ...); C(msg) says it in one line.
  returned: failed
  type: str
ansible_facts:
  description: C(ocr_reconcile) with the store, backend, file count, bytes on disk and the files (name, kind, size, engine_visible, sha256).
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.ocr.reconcile.plugins.module_utils.reconcile import COMMON_OPTIONS, environ_ready, fail, library


def main():
    module = AnsibleModule(
        argument_spec=dict(COMMON_OPTIONS, hash=dict(type="bool", default=False), host=dict(type="str")),
        mutually_exclusive=[("manifest", "manifest_content")],
        supports_check_mode=True,
    )
    environ_ready()
    errors = library(module)
    from ansible_collections.ocr.reconcile.plugins.module_utils.reconcile import load

    from reconciler import open_session

    params = module.params
    try:
        manifest = load(module) if params.get("manifest") or params.get("manifest_content") else None
        where = dict(store=params.get("store"), backend=params.get("backend"), license_file=params.get("license"))
        with open_session(manifest, hash_cache="read", **where) as opened:  # reads only: the cache is not written either
            snapshot = opened.snapshot(hash_all=params["hash"], host=params.get("host"))
    except errors.ReconcilerError as exc:
        fail(module, exc)
    from ansible_collections.ocr.reconcile.plugins.module_utils.reconcile import safe

    scan = snapshot.scan
    files = [dict(name=safe(f.name), kind=f.kind, size=f.size, engine_visible=f.engine_visible, sha256=f.sha256) for f in scan.files]
    facts = dict(store=scan.root, backend=scan.backend, files=files, file_count=len(files), size_on_disk=scan.size_on_disk)
    # the document as its own JSON text: a name that is not UTF-8 stays a \u escape, which Ansible carries
    text = snapshot.to_text()
    module.exit_json(changed=False, snapshot=text, ansible_facts=dict(ocr_reconcile=facts))


if __name__ == "__main__":
    main()
