"""The system clock, behind the ``Clock`` port so tests inject time instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
