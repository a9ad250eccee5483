"""ocr-reconcile: make an Aspose OCR AI model folder match a declared manifest.

Stages: load (``manifest``) → scan (``scan``, read-only, through ``stores``) → plan (``plan``, pure)
→ apply (``apply``, the only mutator) → release (``stores.open_store``'s ``finally``).
"""

__version__ = "0.1.0"
