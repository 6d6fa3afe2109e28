"""Partner documents kept per warm container for a bounded time, so that a flow does not read the
same partner from DynamoDB at every step.

The bound is the point: an entry is served for at most ``ttl`` after the consistent read that
fetched it, so a change written at time *t* (a partner disabled, its keys rotated, its webhook moved)
is seen by every warm container by *t* + ``ttl``. Settings cap ``ttl`` at 30 s; 0 turns the cache
off. Only found partners are kept: an unknown id is read again every time, so a partner registered
a moment ago works on its first request (an unknown id costs one read, as before). Errors are never
kept. An entry whose fetch time lies in the future (the clock went back) counts as expired.

Bounded (least recently used first out) and thread-safe (``chalice local`` serves on threads). Two
threads missing the same id at once both read: harmless, and simpler than making one wait.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime, timedelta

from chalicelib.domain.ports import Clock, PartnerRecord, PartnerStore


class CachedPartnerLookup:
    """``get`` through a time-bounded LRU in front of a ``PartnerStore``; ``forget`` drops one id
    (the registry calls it after its own writes, so this container sees them at once)."""

    def __init__(self, store: PartnerStore, clock: Clock, *, ttl: timedelta, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._store = store
        self._clock = clock
        self._ttl = ttl
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[datetime, PartnerRecord]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def ttl(self) -> timedelta:
        return self._ttl

    def get(self, partner_id: str) -> PartnerRecord:
        if self._ttl <= timedelta(0):
            return self._store.get(partner_id)
        now = self._clock.now()
        with self._lock:
            entry = self._entries.get(partner_id)
            if entry is not None:
                fetched_at, record = entry
                if fetched_at <= now < fetched_at + self._ttl:
                    self._entries.move_to_end(partner_id)
                    return record
                del self._entries[partner_id]
        record = self._store.get(partner_id)  # PartnerNotFound and outages propagate, uncached
        with self._lock:
            self._entries[partner_id] = (now, record)
            self._entries.move_to_end(partner_id)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return record

    def forget(self, partner_id: str) -> None:
        with self._lock:
            self._entries.pop(partner_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
