"""Fixtures for the race tests: a fresh local stack per test (its moto server, sandbox portal and
threaded relay on free loopback ports), its record and its tables; and the functional tests' journey
(Chalice's test client, moto, the sandbox) for races made deterministic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.conftest import clock, journey, partner, portal_env, sandbox
from tests.integration.stack import Launcher
from tests.races.harness import STACK_ARGS, Stack, Tables

__all__ = ["clock", "journey", "partner", "portal_env", "sandbox", "stack", "tables"]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    launcher = Launcher(tmp_path / "state", *STACK_ARGS)
    launcher.start()
    try:
        yield Stack.of(launcher)
    finally:
        status = launcher.stop()
        # The relay's and the launcher's log lines, for reading after a failed race.
        (tmp_path / "launcher.log").write_text(launcher.output, encoding="utf-8")
        assert status == 0, launcher.output


@pytest.fixture
def tables(stack: Stack) -> Tables:
    return Tables(stack)
