"""Ports: what the domain needs from the outside world, as Protocols.

Adapters (DynamoDB, KMS, the portal client) implement them; unit tests use the in-memory fakes in
``tests/fakes.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from chalicelib.domain.partners import Partner


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


@dataclass(frozen=True)
class PartnerRecord:
    """A stored partner with the version its next conditional write must match."""

    partner: Partner
    version: int
    created_at: datetime
    updated_at: datetime


class PartnerStore(Protocol):
    def get(self, partner_id: str) -> PartnerRecord:
        """The partner, or ``PartnerNotFound``."""
        ...

    def create(self, partner: Partner, *, now: datetime) -> None:
        """Store a new partner at version 1, or ``PartnerAlreadyRegistered``."""
        ...

    def replace(self, partner: Partner, *, expected_version: int, now: datetime) -> None:
        """Overwrite the partner if it is still at ``expected_version``; else ``ConcurrentUpdate``
        (or ``PartnerNotFound`` if it is gone)."""
        ...

    def list(self) -> Iterator[PartnerRecord]:
        """Every registered partner, enabled or not."""
        ...


class PartnerLookup(Protocol):
    """How requests read partners: possibly cached, so possibly up to a bounded time old."""

    def get(self, partner_id: str) -> PartnerRecord:
        """The partner, or ``PartnerNotFound``."""
        ...

    def forget(self, partner_id: str) -> None:
        """Drop what is known of this partner: the next ``get`` reads the store."""
        ...


class Signer(Protocol):
    """An ES256 signing key whose private half never leaves the key store."""

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK with ``kid``, ``use=sig`` and ``alg=ES256``."""
        ...

    def sign(self, message: bytes) -> bytes:
        """A JWS-format (raw ``r || s``, RFC 7518 section 3.4) ES256 signature over ``message``."""
        ...


class Envelope(Protocol):
    """Symmetric encryption under a key that never leaves the key store (KMS)."""

    def encrypt(self, plaintext: bytes, *, context: dict[str, str]) -> bytes:
        """Ciphertext bound to ``context``: decryption with another context fails."""
        ...

    def decrypt(self, ciphertext: bytes, *, context: dict[str, str]) -> bytes: ...


class MetricsSink(Protocol):
    def __call__(self, name: str, value: float, *, unit: str = "Count", **dimensions: str) -> None:
        """Record a metric (flows started, completed, failed by reason, time to ready)."""
        ...


class Pseudonymizer(Protocol):
    def pseudonym(self, subject: str) -> str:
        """A keyed, one-way pseudonym of ``subject`` (HMAC under a key the service cannot read)."""
        ...
