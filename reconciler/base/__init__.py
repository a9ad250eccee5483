"""Shared by every layer and importing none of them: errors (one hierarchy, ``ExitCode``), the files beside a
store (``layout``), the one sha256 (``hashing``), the progress seam, JSON text, and the folder-descriptor
primitives (``fsops``). Nothing here decides or carries out a change.
"""
