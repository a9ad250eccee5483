"""Decide: the pure planner (``plan``: manifest + scan -> a frozen ``Plan``) and the versioned documents that
carry plans and snapshots (``planfile``). No I/O in ``plan``; ``planfile`` only reads and writes its own files.
"""
