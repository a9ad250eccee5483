"""The console script's entry point. It answers ``--version`` before importing the CLI (and with it
Typer, jsonschema and the rest of the package), then hands everything else to :func:`.cli.main`.
Do not put anything else here: it exists only so that the cheapest call stays cheap."""

from __future__ import annotations

import sys


def main() -> None:
    """``ocr-reconcile``."""
    if sys.argv[1:] == ["--version"]:
        from ..base.version import __version__

        sys.stdout.write(f"ocr-reconcile {__version__}\n")
        return
    from .app import main as cli_main

    cli_main()
