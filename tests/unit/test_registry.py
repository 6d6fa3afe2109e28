"""The partner registry: registration, disabling and key rotation, on an in-memory store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chalicelib.domain.errors import (
    InvalidPartnerDocument,
    PartnerAlreadyRegistered,
    PartnerDisabled,
    PartnerNotFound,
)
from chalicelib.domain.registry import PartnerRegistry
from tests.conftest import public_jwk
from tests.fakes import FixedClock, InMemoryPartnerStore

Document = dict[str, Any]


@pytest.fixture
def store() -> InMemoryPartnerStore:
    return InMemoryPartnerStore()


@pytest.fixture
def registry(store: InMemoryPartnerStore) -> PartnerRegistry:
    return PartnerRegistry(store, FixedClock(), allow_loopback=False)


def test_registering_an_existing_id_is_refused(
    registry: PartnerRegistry, partner_document: Callable[..., Document]
) -> None:
    registry.register(partner_document())
    with pytest.raises(PartnerAlreadyRegistered):
        registry.register(partner_document(names={"ja": "別の銀行", "en": "Another"}))
    assert registry.get("acme-bank").partner.names.en == "Demo Bank (loan onboarding)"


def test_an_invalid_document_stores_nothing(
    registry: PartnerRegistry, store: InMemoryPartnerStore, partner_document: Callable[..., Document]
) -> None:
    with pytest.raises(InvalidPartnerDocument):
        registry.register(partner_document(redirect_uris=["http://bank.example/cb"]))
    assert store.records == {}


def test_a_disabled_partner_is_refused_on_requests(
    registry: PartnerRegistry, partner_document: Callable[..., Document]
) -> None:
    registry.register(partner_document())
    registry.set_enabled("acme-bank", enabled=False)
    with pytest.raises(PartnerDisabled) as caught:
        registry.get_enabled("acme-bank")
    assert caught.value.check == "client_id"
    registry.set_enabled("acme-bank", enabled=True)
    assert registry.get_enabled("acme-bank").enabled


def test_unknown_partner_is_not_found(registry: PartnerRegistry) -> None:
    with pytest.raises(PartnerNotFound):
        registry.get_enabled("nobody")
    with pytest.raises(PartnerNotFound):
        registry.set_enabled("nobody", enabled=False)


def test_rotation_replaces_the_jwks_and_reports_the_change(
    registry: PartnerRegistry, partner_document: Callable[..., Document]
) -> None:
    # GIVEN a partner with keys acme-sig-1 and acme-enc-1
    registry.register(partner_document())
    new_jwks = {
        "keys": [public_jwk("sig", "ES256", "acme-sig-2"), public_jwk("enc", "ECDH-ES+A256KW", "acme-enc-1")]
    }
    # WHEN its JWKS is rotated
    rotation = registry.rotate_keys("acme-bank", new_jwks)
    # THEN the new set is stored and the change is reported by kid
    assert rotation.added == ("acme-sig-2",)
    assert rotation.removed == ("acme-sig-1",)
    assert rotation.kept == ("acme-enc-1",)
    stored = registry.get("acme-bank")
    assert [key.kid for key in stored.partner.jwks.keys] == ["acme-sig-2", "acme-enc-1"]
    assert stored.version == 2


def test_an_invalid_rotation_keeps_the_old_keys(
    registry: PartnerRegistry, partner_document: Callable[..., Document]
) -> None:
    registry.register(partner_document())
    with pytest.raises(InvalidPartnerDocument) as caught:
        registry.rotate_keys("acme-bank", {"keys": [public_jwk("sig", "ES256", "only-sig")]})
    assert caught.value.check == "jwks"
    assert registry.get("acme-bank").version == 1


def test_update_replaces_the_document_of_an_existing_partner(
    registry: PartnerRegistry, partner_document: Callable[..., Document]
) -> None:
    registry.register(partner_document())
    registry.update(partner_document(redirect_uris=["https://bank.example/new-callback"]))
    assert registry.get("acme-bank").partner.redirect_uris == ("https://bank.example/new-callback",)
    with pytest.raises(PartnerNotFound):
        registry.update(partner_document(id="other-bank"))
