"""Partners in DynamoDB (moto): conditional writes, versions, and what lands in the table."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.adapters.dynamodb_partners import DynamoPartnerStore
from chalicelib.domain.errors import ConcurrentUpdate, PartnerAlreadyRegistered, PartnerNotFound
from chalicelib.domain.partners import parse_partner_document

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(resources: dict[str, str], dynamodb_client: Any) -> DynamoPartnerStore:
    return DynamoPartnerStore(dynamodb_client, resources["RELAY_PARTNERS_TABLE"], allow_loopback=False)


def test_a_created_partner_reads_back_equal_at_version_one(
    store: DynamoPartnerStore, partner_document: Callable[..., dict[str, Any]]
) -> None:
    partner = parse_partner_document(partner_document(), allow_loopback=False)
    store.create(partner, now=NOW)
    record = store.get("acme-bank")
    assert record.partner == partner
    assert record.version == 1
    assert record.created_at == NOW


def test_creating_twice_is_refused_and_keeps_the_first(
    store: DynamoPartnerStore, partner_document: Callable[..., dict[str, Any]]
) -> None:
    first = parse_partner_document(partner_document(), allow_loopback=False)
    store.create(first, now=NOW)
    second = parse_partner_document(partner_document(names={"ja": "別", "en": "Other"}), allow_loopback=False)
    with pytest.raises(PartnerAlreadyRegistered):
        store.create(second, now=NOW)
    assert store.get("acme-bank").partner == first


def test_a_stale_version_is_a_concurrent_update(
    store: DynamoPartnerStore, partner_document: Callable[..., dict[str, Any]]
) -> None:
    partner = parse_partner_document(partner_document(), allow_loopback=False)
    store.create(partner, now=NOW)
    store.replace(partner.model_copy(update={"enabled": False}), expected_version=1, now=NOW)
    with pytest.raises(ConcurrentUpdate):
        store.replace(partner, expected_version=1, now=NOW)
    record = store.get("acme-bank")
    assert (record.version, record.partner.enabled) == (2, False)


def test_replacing_an_unknown_partner_is_not_found(
    store: DynamoPartnerStore, partner_document: Callable[..., dict[str, Any]]
) -> None:
    with pytest.raises(PartnerNotFound):
        store.replace(
            parse_partner_document(partner_document(), allow_loopback=False), expected_version=1, now=NOW
        )
    with pytest.raises(PartnerNotFound):
        store.get("acme-bank")


def test_the_stored_item_holds_public_keys_only(
    store: DynamoPartnerStore,
    partner_document: Callable[..., dict[str, Any]],
    dynamodb_client: Any,
    resources: dict[str, str],
) -> None:
    store.create(parse_partner_document(partner_document(), allow_loopback=False), now=NOW)
    item = dynamodb_client.get_item(
        TableName=resources["RELAY_PARTNERS_TABLE"], Key={"partner_id": {"S": "acme-bank"}}
    )["Item"]
    keys = json.loads(item["document"]["S"])["jwks"]["keys"]
    assert all(set(key) <= {"kty", "kid", "use", "alg", "crv", "x", "y", "n", "e"} for key in keys)


def test_a_tampered_item_is_revalidated_on_read(
    store: DynamoPartnerStore,
    partner_document: Callable[..., dict[str, Any]],
    dynamodb_client: Any,
    resources: dict[str, str],
) -> None:
    # GIVEN an item edited by hand to carry a loose redirect URI
    store.create(parse_partner_document(partner_document(), allow_loopback=False), now=NOW)
    table = resources["RELAY_PARTNERS_TABLE"]
    item = dynamodb_client.get_item(TableName=table, Key={"partner_id": {"S": "acme-bank"}})["Item"]
    document = json.loads(item["document"]["S"])
    document["redirect_uris"] = ["http://attacker.example/cb"]
    item["document"] = {"S": json.dumps(document)}
    dynamodb_client.put_item(TableName=table, Item=item)
    # WHEN it is read  THEN it is refused, not served
    from chalicelib.domain.errors import InvalidPartnerDocument

    with pytest.raises(InvalidPartnerDocument):
        store.get("acme-bank")


def test_list_returns_every_partner(
    store: DynamoPartnerStore, partner_document: Callable[..., dict[str, Any]]
) -> None:
    for partner_id in ("bank-one", "bank-two", "bank-three"):
        store.create(parse_partner_document(partner_document(id=partner_id), allow_loopback=False), now=NOW)
    assert sorted(record.partner.id for record in store.list()) == ["bank-one", "bank-three", "bank-two"]
