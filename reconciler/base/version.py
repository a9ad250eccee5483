"""The package version, in one place (hatch reads it from here; the plan documents record it)."""

__version__ = "0.1.0"
