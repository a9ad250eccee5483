"""Tests of the library API (reconciler/api/): sessions, the one apply sequence, apply, installs."""
