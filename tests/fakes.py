"""In-memory fakes of the domain ports, for unit tests only (never for the service itself)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from chalicelib.domain.errors import ConcurrentUpdate, PartnerAlreadyRegistered, PartnerNotFound
from chalicelib.domain.partners import Partner
from chalicelib.domain.ports import PartnerRecord


class FixedClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


class InMemoryPartnerStore:
    def __init__(self) -> None:
        self.records: dict[str, PartnerRecord] = {}

    def get(self, partner_id: str) -> PartnerRecord:
        try:
            return self.records[partner_id]
        except KeyError:
            raise PartnerNotFound(f"no partner is registered as {partner_id!r}", check="partner_id") from None

    def create(self, partner: Partner, *, now: datetime) -> None:
        if partner.id in self.records:
            raise PartnerAlreadyRegistered(f"partner {partner.id!r} is already registered", check="id")
        self.records[partner.id] = PartnerRecord(partner, 1, now, now)

    def replace(self, partner: Partner, *, expected_version: int, now: datetime) -> None:
        current = self.get(partner.id)
        if current.version != expected_version:
            raise ConcurrentUpdate("changed since read", check="version")
        self.records[partner.id] = PartnerRecord(partner, expected_version + 1, current.created_at, now)

    def list(self) -> Iterator[PartnerRecord]:
        return iter(list(self.records.values()))


class ShiftedClock:
    """Real time plus an offset that tests move forward: tokens and proofs made "now" stay valid,
    and lifetimes (data life, deadlines) can be crossed without sleeping."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def timestamp(self) -> float:
        return self.now().timestamp()

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)
