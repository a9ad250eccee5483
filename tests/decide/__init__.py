"""Tests of the decide layer (reconciler/decide/): the pure planner, its data-driven cases, plan documents, fleet plans."""
