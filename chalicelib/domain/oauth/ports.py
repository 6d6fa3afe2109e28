"""Ports of the OAuth layer."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class ReplayStore(Protocol):
    def remember(self, namespace: str, value: str, *, until: datetime, now: datetime) -> bool:
        """Record ``value`` (a ``jti``) as used until ``until``; False if it was already recorded and
        has not yet expired. One conditional write: concurrent callers, exactly one True."""
        ...
