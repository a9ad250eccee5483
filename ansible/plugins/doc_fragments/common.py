# -*- coding: utf-8 -*-
# The options both ocr.reconcile modules take, documented once (extends_documentation_fragment: ocr.reconcile.common).

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  manifest:
    description: Path to the manifest YAML file on the target. At most one of O(manifest) and O(manifest_content).
    type: path
  manifest_content:
    description:
      - The manifest itself, as a mapping, validated by the same schema.
      - Relative paths in it are relative to the module's working folder, so give absolute ones.
    type: dict
  store:
    description: The model folder; overrides the manifest's C(store.path).
    type: path
  backend:
    description: Overrides the manifest's C(store.backend).
    type: str
    choices: [auto, aspose, directory]
  license:
    description: Aspose license file to apply (lifts the engine's evaluation filter).
    type: path
"""
