"""Tests of the read layer (reconciler/read/): manifests, the scan, the real engine's listing."""
