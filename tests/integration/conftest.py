"""Fixtures for loopback integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.stack import Launcher


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    stack = Launcher(tmp_path / "state")
    yield stack
    if stack.process is not None and stack.process.poll() is None:
        stack.stop()
