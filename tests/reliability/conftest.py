"""Fixtures of the reliability suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .common import Cli


@pytest.fixture(scope="session")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """One fork server for the whole session (see ``forkserver.py``); each command is still its own process."""
    runner = Cli(tmp_path_factory.mktemp("cli"))
    yield runner
    runner.close()
