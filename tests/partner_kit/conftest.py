"""Fixtures for the partner kit's tests: the whole local stack (as in tests/integration) and a fake
relay for the unit tests."""

from __future__ import annotations

from tests.integration.conftest import launcher

__all__ = ["launcher"]
