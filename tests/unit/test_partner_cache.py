"""The per-container partner cache: served for at most its TTL, bounded in size, misses and errors
never kept, its registry's own writes seen at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.adapters.partner_cache import CachedPartnerLookup
from chalicelib.domain.errors import PartnerDisabled, PartnerNotFound
from chalicelib.domain.ports import PartnerRecord
from chalicelib.domain.registry import PartnerRegistry
from tests.fakes import FixedClock, InMemoryPartnerStore

TTL = timedelta(seconds=30)


class CountingStore(InMemoryPartnerStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.failing = False

    def get(self, partner_id: str) -> PartnerRecord:
        self.reads += 1
        if self.failing:
            raise RuntimeError("dynamodb unavailable")
        return super().get(partner_id)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


def build(
    store: CountingStore, clock: FixedClock, *, ttl: timedelta = TTL, max_entries: int = 256
) -> tuple[CachedPartnerLookup, PartnerRegistry]:
    lookup = CachedPartnerLookup(store, clock, ttl=ttl, max_entries=max_entries)
    return lookup, PartnerRegistry(store, clock, allow_loopback=False, lookup=lookup)


def register(store: CountingStore, clock: FixedClock, document: dict[str, Any]) -> None:
    """Registered by another process (relayctl): no cache is told."""
    PartnerRegistry(store, clock, allow_loopback=False).register(document)


def disable_elsewhere(store: CountingStore, clock: FixedClock, partner_id: str) -> None:
    PartnerRegistry(store, clock, allow_loopback=False).set_enabled(partner_id, enabled=False)


def test_a_partner_disabled_elsewhere_is_served_until_the_ttl_and_refused_from_then(
    store: CountingStore, clock: FixedClock, partner_document: Callable[..., dict[str, Any]]
) -> None:
    # GIVEN a partner read once by this container, then disabled by another process
    register(store, clock, partner_document())
    _, registry = build(store, clock)
    registry.get_enabled("acme-bank")
    disable_elsewhere(store, clock, "acme-bank")
    # WHEN it is asked for just before the TTL THEN the cached document answers, without a read
    reads = store.reads
    clock.advance(seconds=29.999)
    assert registry.get_enabled("acme-bank").enabled
    assert store.reads == reads
    # WHEN the TTL has passed THEN the store is read again and the partner refused
    clock.advance(seconds=0.001)
    with pytest.raises(PartnerDisabled):
        registry.get_enabled("acme-bank")


def test_this_registrys_own_writes_are_seen_at_once(
    store: CountingStore, clock: FixedClock, partner_document: Callable[..., dict[str, Any]]
) -> None:
    # GIVEN a cached partner
    register(store, clock, partner_document())
    _, registry = build(store, clock)
    registry.get_enabled("acme-bank")
    # WHEN this registry disables it THEN the next lookup refuses it, with no wait
    registry.set_enabled("acme-bank", enabled=False)
    with pytest.raises(PartnerDisabled):
        registry.get_enabled("acme-bank")


def test_an_unknown_partner_is_not_remembered(
    store: CountingStore, clock: FixedClock, partner_document: Callable[..., dict[str, Any]]
) -> None:
    # GIVEN an id looked up before anyone registered it
    _, registry = build(store, clock)
    with pytest.raises(PartnerNotFound):
        registry.get_enabled("acme-bank")
    # WHEN another process registers it THEN the next lookup finds it at once
    register(store, clock, partner_document())
    assert registry.get_enabled("acme-bank").id == "acme-bank"


def test_an_outage_is_not_remembered(
    store: CountingStore, clock: FixedClock, partner_document: Callable[..., dict[str, Any]]
) -> None:
    # GIVEN a store that fails once
    register(store, clock, partner_document())
    lookup, _ = build(store, clock)
    store.failing = True
    with pytest.raises(RuntimeError):
        lookup.get("acme-bank")
    # WHEN it recovers THEN the next lookup reads it
    store.failing = False
    assert lookup.get("acme-bank").partner.id == "acme-bank"


def test_a_clock_that_goes_back_does_not_extend_an_entry(
    store: CountingStore, clock: FixedClock, partner_document: Callable[..., dict[str, Any]]
) -> None:
    # GIVEN a cached partner
    register(store, clock, partner_document())
    lookup, _ = build(store, clock)
    lookup.get("acme-bank")
    reads = store.reads
    # WHEN the clock goes back THEN the entry counts as expired and the store is read
    clock.advance(seconds=-1)
    lookup.get("acme-bank")
    assert store.reads == reads + 1


def test_a_zero_ttl_reads_the_store_every_time(
    store: CountingStore, clock: FixedClock, partner_document: Callable[..., dict[str, Any]]
) -> None:
    # GIVEN the cache turned off
    register(store, clock, partner_document())
    lookup, _ = build(store, clock, ttl=timedelta(0))
    # WHEN the partner is looked up three times THEN the store is read three times, nothing kept
    reads = store.reads
    for _ in range(3):
        lookup.get("acme-bank")
    assert (store.reads - reads, len(lookup)) == (3, 0)


def test_the_least_recently_used_partner_leaves_first_when_full(
    store: CountingStore, clock: FixedClock, partner_document: Callable[..., dict[str, Any]]
) -> None:
    # GIVEN a cache of two entries holding a (used last) and b
    for partner_id in ("bank-a", "bank-b", "bank-c"):
        register(store, clock, partner_document(id=partner_id))
    lookup, _ = build(store, clock, max_entries=2)
    lookup.get("bank-b")
    lookup.get("bank-a")
    # WHEN a third partner is read
    lookup.get("bank-c")
    # THEN b, the least recently used, was dropped and a was kept
    reads = store.reads
    lookup.get("bank-a")
    assert store.reads == reads
    lookup.get("bank-b")
    assert (store.reads, len(lookup)) == (reads + 1, 2)


def test_concurrent_lookups_stay_within_the_bound_and_agree(
    store: CountingStore, clock: FixedClock, partner_document: Callable[..., dict[str, Any]]
) -> None:
    # GIVEN more partners than the cache holds
    ids = [f"bank-{n:02d}" for n in range(40)]
    for partner_id in ids:
        register(store, clock, partner_document(id=partner_id))
    lookup, _ = build(store, clock, max_entries=8)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for n in range(400):
                partner_id = ids[(n * 7 + offset) % len(ids)]
                assert lookup.get(partner_id).partner.id == partner_id
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    # WHEN eight threads look partners up at once
    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN every answer was the partner asked for and the cache never grew past its bound
    assert errors == []
    assert len(lookup) <= 8


def test_a_cache_of_no_entries_is_refused(store: CountingStore, clock: FixedClock) -> None:
    with pytest.raises(ValueError, match="max_entries"):
        CachedPartnerLookup(store, clock, ttl=TTL, max_entries=0)
