"""The partner registry: register, inspect, disable and re-key partners.

Shared by the operator CLI and the service so that a document is judged by one set of rules.
Changes are optimistic: each write is conditional on the version read, so two operators editing
one partner never silently overwrite each other.

Requests read partners through a ``PartnerLookup``, which in the service is a per-container cache
(``chalicelib/adapters/partner_cache.py``): what they see may be up to its TTL old. Writes always
read the store itself (the version must be the current one), and forget the cached entry here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from chalicelib.domain.errors import PartnerDisabled, PartnerNotFound
from chalicelib.domain.partners import (
    PARTNER_ID_PATTERN,
    Partner,
    PartnerJwks,
    invalid_document,
    parse_partner_document,
)
from chalicelib.domain.ports import Clock, PartnerLookup, PartnerRecord, PartnerStore


@dataclass(frozen=True)
class KeyRotation:
    partner: Partner
    added: tuple[str, ...]
    removed: tuple[str, ...]
    kept: tuple[str, ...]


class PartnerRegistry:
    def __init__(
        self,
        store: PartnerStore,
        clock: Clock,
        *,
        allow_loopback: bool,
        lookup: PartnerLookup | None = None,
    ) -> None:
        self._store = store
        self._lookup = lookup
        self._clock = clock
        self._allow_loopback = allow_loopback

    def parse(self, document: Any) -> Partner:
        return parse_partner_document(document, allow_loopback=self._allow_loopback)

    def register(self, document: Any) -> Partner:
        """Register a new partner; an existing id is refused (``PartnerAlreadyRegistered``)."""
        partner = self.parse(document)
        self._store.create(partner, now=self._clock.now())
        self._forget(partner.id)
        return partner

    def update(self, document: Any) -> Partner:
        """Replace an existing partner's whole document (``PartnerNotFound`` if there is none)."""
        partner = self.parse(document)
        current = self._store.get(partner.id)
        self._store.replace(partner, expected_version=current.version, now=self._clock.now())
        self._forget(partner.id)
        return partner

    def get(self, partner_id: str) -> PartnerRecord:
        """The partner as requests see it: through the lookup (cached: up to its TTL old)."""
        if self._lookup is not None:
            return self._lookup.get(partner_id)
        return self._store.get(partner_id)

    def get_enabled(self, partner_id: str) -> Partner:
        """The partner, refusing a disabled one: used on every partner-facing request.

        The id comes from the request: one that no partner can have (empty, too long, other
        characters) is not found without asking the store, which would refuse it as a malformed
        key (DynamoDB: an empty or >2048-byte key is a ValidationException, i.e. a 503)."""
        if not re.fullmatch(PARTNER_ID_PATTERN, partner_id):
            raise PartnerNotFound("no partner can have this id", check="partner_id")
        partner = self.get(partner_id).partner
        if not partner.enabled:
            raise PartnerDisabled(f"partner {partner_id} is disabled", check="client_id")
        return partner

    def list(self) -> list[PartnerRecord]:
        return sorted(self._store.list(), key=lambda record: record.partner.id)

    def set_enabled(self, partner_id: str, *, enabled: bool) -> Partner:
        current = self._store.get(partner_id)
        partner = current.partner.model_copy(update={"enabled": enabled})
        if partner != current.partner:
            self._store.replace(partner, expected_version=current.version, now=self._clock.now())
        self._forget(partner_id)
        return partner

    def rotate_keys(self, partner_id: str, jwks_document: Any) -> KeyRotation:
        """Replace the partner's JWKS with a new one, validated by the same rules as registration."""
        try:
            jwks = PartnerJwks.model_validate(jwks_document)
        except ValidationError as exc:
            raise invalid_document(exc, prefix=("jwks",)) from None
        current = self._store.get(partner_id)
        partner = current.partner.model_copy(update={"jwks": jwks})
        self._store.replace(partner, expected_version=current.version, now=self._clock.now())
        self._forget(partner_id)
        old = {key.kid for key in current.partner.jwks.keys}
        new = {key.kid for key in jwks.keys}
        return KeyRotation(
            partner=partner,
            added=tuple(sorted(new - old)),
            removed=tuple(sorted(old - new)),
            kept=tuple(sorted(old & new)),
        )

    def _forget(self, partner_id: str) -> None:
        if self._lookup is not None:
            self._lookup.forget(partner_id)
