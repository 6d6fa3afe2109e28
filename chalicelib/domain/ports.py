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


class SignerSource(Protocol):
    """Where signatures by a rotating key come from: the signer of the current slot, whose
    ``kid`` and signatures belong together for as long as the caller holds it."""

    def current(self) -> Signer: ...


class Envelope(Protocol):
    """Symmetric encryption of a short-lived secret, bound to a context: a stage working key
    wrapped by KMS (``chalicelib/adapters/keyring.py``), or KMS itself."""

    def encrypt(self, plaintext: bytes, *, context: dict[str, str]) -> bytes:
        """Ciphertext bound to ``context``: decryption with another context fails."""
        ...

    def decrypt(self, ciphertext: bytes, *, context: dict[str, str]) -> bytes: ...


class MetricsSink(Protocol):
    def __call__(self, name: str, value: float, *, unit: str = "Count", **dimensions: str) -> None:
        """Record a metric (flows started, completed, failed by reason, time to ready)."""
        ...


class LinkMac(Protocol):
    """MACs for capability links, under a key chosen by the link's issue time (which the link
    carries, so verification finds the key)."""

    def mac(self, message: bytes, *, issued_at: datetime) -> str:
        """A base64url MAC; ``issued_at`` is now (a link is made in its own time slot)."""
        ...

    def verify(self, message: bytes, tag: str, *, issued_at: datetime) -> bool | None:
        """Whether ``tag`` is the MAC; None for a link dated before these keys existed (older
        than the keyring: ask the legacy key)."""
        ...


class Pseudonymizer(Protocol):
    def pseudonym(self, subject: str) -> str:
        """A keyed, one-way pseudonym of ``subject`` (HMAC under a key the service cannot read);
        now only the check of receipt links made before the keyring."""
        ...
