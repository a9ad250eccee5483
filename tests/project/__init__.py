"""Tests of the project as a whole: its layers, packaging, CI integration and docs examples."""
