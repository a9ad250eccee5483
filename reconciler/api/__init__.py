"""The library's workflows: a ``Session`` per store, apply, install (with ``fetch``) and restore. They turn
plans into runs for ``disk`` and are what the front ends call (through ``reconciler/__init__.py``).
"""
