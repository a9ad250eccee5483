"""Mutate: the only code that moves, copies or deletes a model file -- the journaled run engine (``transfer``),
one move that cannot be redirected (``moves``, ``copying``), the lock and journal, backup runs (``catalogue``,
``retention``) and crash recovery. It carries out runs it is given and decides nothing.
"""
