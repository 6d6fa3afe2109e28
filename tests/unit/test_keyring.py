"""The keyring (chalicelib/adapters/keyring.py): stage working keys wrapped by the KMS data key in
the state table, made once per slot by the first container, unwrapped once per container."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from joserfc import jws
from joserfc.jwk import KeySet

from chalicelib.adapters.keyring import (
    EVENT_KID_PREFIX,
    SLOTS,
    Keyring,
    KeyringEnvelope,
    KeyringEventSigners,
    KeyringLinkMac,
)
from chalicelib.adapters.kms_envelope import KmsEnvelope
from chalicelib.domain.errors import DependencyUnavailable
from chalicelib.domain.sealing import sign_jwt
from tests.fakes import FixedClock

REGION = "ap-northeast-1"
CONTEXT = {"flow_id": "f-1"}


class Container:
    """What one warm Lambda container holds: its own clients (counted) and its own keyring."""

    def __init__(self, resources: dict[str, str], clock: FixedClock, stage: str = "test") -> None:
        session = boto3.session.Session(region_name=REGION)
        self.dynamodb = session.client("dynamodb")
        self.kms = session.client("kms")
        self.calls: Counter[str] = Counter()
        for client in (self.dynamodb, self.kms):
            client.meta.events.register("before-call.*.*", self._count)
        self.keyring = Keyring(
            dynamodb=self.dynamodb,
            kms=self.kms,
            table=resources["RELAY_STATE_TABLE"],
            data_key_id=resources["RELAY_DATA_KEY_ID"],
            stage=stage,
            clock=clock,
        )

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[f"{model.service_model.service_name}.{model.name}"] += 1


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 12, 6, 23, 30, tzinfo=UTC))


@pytest.fixture
def containers(resources: dict[str, str], clock: FixedClock) -> tuple[Container, Container]:
    return Container(resources, clock), Container(resources, clock)


def key_items(dynamodb_client: Any, table: str) -> dict[str, dict[str, Any]]:
    items = dynamodb_client.scan(TableName=table)["Items"]
    return {item["pk"]["S"]: item for item in items if item["pk"]["S"].startswith("KEY#")}


# -- making and sharing keys ---------------------------------------------------------------------------


def test_two_containers_racing_for_a_slot_end_with_one_key(
    containers: tuple[Container, Container], dynamodb_client: Any, resources: dict[str, str]
) -> None:
    first, second = containers
    # GIVEN the first container looked and found no key for today (it read before the other wrote)
    original = first.keyring._batch_get
    first.keyring._batch_get = lambda purpose, slots, **kw: {}  # type: ignore[method-assign]
    # WHEN the second makes the key, then the first tries to make its own
    winner = second.keyring.current("token")
    loser = first.keyring.current("token")
    first.keyring._batch_get = original  # type: ignore[method-assign]
    # THEN the first's conditional put lost and it uses the winner's key: one slot, one key
    assert loser.secret == winner.secret
    assert first.calls["dynamodb.PutItem"] == 1
    assert first.calls["kms.Decrypt"] == 1
    items = key_items(dynamodb_client, resources["RELAY_STATE_TABLE"])
    assert list(items) == ["KEY#token#20261206"]
    # AND the stored key is wrapped (KMS ciphertext), never the key itself, and carries its TTL
    item = items["KEY#token#20261206"]
    assert winner.secret not in base64.b64decode(item["wrapped"]["S"])
    assert int(item["expires_at"]["N"]) == int(datetime(2026, 12, 9, tzinfo=UTC).timestamp())


def test_a_second_use_in_the_same_container_makes_no_aws_call(
    containers: tuple[Container, Container],
) -> None:
    first, second = containers
    envelope = KeyringEnvelope(first.keyring)
    envelope.encrypt(b"portal-token", context=CONTEXT)
    made = sum(first.calls.values())
    assert first.calls["kms.GenerateDataKey"] == 1  # the maker needs no Decrypt
    envelope.encrypt(b"portal-token-2", context=CONTEXT)
    assert sum(first.calls.values()) == made
    # another container unwraps it once (one read, one Decrypt), then never again
    other = KeyringEnvelope(second.keyring)
    ciphertext = envelope.encrypt(b"portal-token", context=CONTEXT)
    assert other.decrypt(ciphertext, context=CONTEXT) == b"portal-token"
    assert (second.calls["dynamodb.GetItem"], second.calls["kms.Decrypt"]) == (1, 1)
    assert other.decrypt(ciphertext, context=CONTEXT) == b"portal-token"
    assert sum(second.calls.values()) == 2


def test_the_cache_is_bounded(resources: dict[str, str], clock: FixedClock) -> None:
    container = Container(resources, clock)
    keyring = Keyring(
        dynamodb=container.dynamodb,
        kms=container.kms,
        table=resources["RELAY_STATE_TABLE"],
        data_key_id=resources["RELAY_DATA_KEY_ID"],
        stage="test",
        clock=clock,
        cache_size=2,
    )
    for _ in range(4):
        keyring.current("token")
        clock.advance(days=1)
    assert len(keyring._cache) == 2


# -- refusals ------------------------------------------------------------------------------------------


def test_a_tampered_wrapped_key_does_not_unwrap(
    containers: tuple[Container, Container], dynamodb_client: Any, resources: dict[str, str]
) -> None:
    first, second = containers
    ciphertext = KeyringEnvelope(first.keyring).encrypt(b"portal-token", context=CONTEXT)
    table = resources["RELAY_STATE_TABLE"]
    item = key_items(dynamodb_client, table)["KEY#token#20261206"]
    wrapped = bytearray(base64.b64decode(item["wrapped"]["S"]))
    wrapped[-1] ^= 1
    item["wrapped"] = {"S": base64.b64encode(bytes(wrapped)).decode()}
    dynamodb_client.put_item(TableName=table, Item=item)
    with pytest.raises(DependencyUnavailable, match="kms Decrypt failed"):
        KeyringEnvelope(second.keyring).decrypt(ciphertext, context=CONTEXT)


def test_a_wrapped_key_moved_to_another_slot_or_read_by_another_stage_does_not_unwrap(
    containers: tuple[Container, Container],
    dynamodb_client: Any,
    resources: dict[str, str],
    clock: FixedClock,
) -> None:
    first, _ = containers
    first.keyring.current("token")
    table = resources["RELAY_STATE_TABLE"]
    item = key_items(dynamodb_client, table)["KEY#token#20261206"]
    # another slot: the encryption context names the slot
    dynamodb_client.put_item(TableName=table, Item={**item, "pk": {"S": "KEY#token#20261205"}})
    with pytest.raises(DependencyUnavailable, match="kms Decrypt failed"):
        Container(resources, clock).keyring.find("token", "20261205")
    # another purpose: and the purpose
    dynamodb_client.put_item(TableName=table, Item={**item, "pk": {"S": "KEY#receipt#202612"}})
    with pytest.raises(DependencyUnavailable, match="kms Decrypt failed"):
        Container(resources, clock).keyring.find("receipt", "202612")
    # another stage sharing the table and key (a misconfiguration): and the stage
    with pytest.raises(DependencyUnavailable, match="kms Decrypt failed"):
        Container(resources, clock, stage="dev").keyring.find("token", "20261206")


def test_a_ciphertext_under_another_context_or_tampered_does_not_decrypt(
    containers: tuple[Container, Container],
) -> None:
    first, _ = containers
    envelope = KeyringEnvelope(first.keyring)
    ciphertext = envelope.encrypt(b"portal-token", context=CONTEXT)
    with pytest.raises(DependencyUnavailable, match="does not decrypt"):
        envelope.decrypt(ciphertext, context={"flow_id": "f-2"})
    tampered = bytearray(ciphertext)
    tampered[-1] ^= 1
    with pytest.raises(DependencyUnavailable, match="does not decrypt"):
        envelope.decrypt(bytes(tampered), context=CONTEXT)
    # the slot is bound too: relabelled as another day's ciphertext, it finds no key (or a wrong one)
    relabelled = ciphertext[:1] + b"20261205" + ciphertext[9:]
    with pytest.raises(DependencyUnavailable):
        envelope.decrypt(relabelled, context=CONTEXT)


def test_an_expired_slot_is_refused_cached_or_not(
    containers: tuple[Container, Container], clock: FixedClock
) -> None:
    first, second = containers
    envelope = KeyringEnvelope(first.keyring)
    ciphertext = envelope.encrypt(b"portal-token", context=CONTEXT)
    assert KeyringEnvelope(second.keyring).decrypt(ciphertext, context=CONTEXT) == b"portal-token"
    # the token key lives two days after its day ends; then it is refused, in memory and in the table
    clock.advance(days=2, minutes=31)
    with pytest.raises(DependencyUnavailable, match="gone"):
        envelope.decrypt(ciphertext, context=CONTEXT)
    with pytest.raises(DependencyUnavailable, match="gone"):
        KeyringEnvelope(second.keyring).decrypt(ciphertext, context=CONTEXT)
    # and no key is ever made for a slot that came from outside (a ciphertext, a link)
    assert first.keyring.find("token", "20261207") is None
    assert first.keyring.find("token", "not-a-slot") is None


# -- the portal token ------------------------------------------------------------------------------


def test_the_portal_token_round_trips_small_and_older_kms_ciphertexts_still_decrypt(
    containers: tuple[Container, Container], resources: dict[str, str]
) -> None:
    first, _ = containers
    legacy = KmsEnvelope(first.kms, resources["RELAY_DATA_KEY_ID"])
    envelope = KeyringEnvelope(first.keyring, legacy=legacy)
    token = b"x" * 64
    ciphertext = envelope.encrypt(token, context=CONTEXT)
    assert len(ciphertext) == len(token) + 37  # version, slot, nonce, tag: the flow item stays small
    assert envelope.decrypt(ciphertext, context=CONTEXT) == token
    # a portal token KMS encrypted before the upgrade (a flow in flight) decrypts through KMS
    before = legacy.encrypt(token, context=CONTEXT)
    assert envelope.decrypt(before, context=CONTEXT) == token
    assert first.calls["kms.Decrypt"] == 1
    with pytest.raises(DependencyUnavailable):
        KeyringEnvelope(first.keyring).decrypt(before, context=CONTEXT)  # no legacy: refused


# -- receipt links ---------------------------------------------------------------------------------------


def test_a_link_mac_verifies_under_its_months_key_only(
    containers: tuple[Container, Container], clock: FixedClock
) -> None:
    first, second = containers
    issued = clock.now()
    tag = KeyringLinkMac(first.keyring).mac(b"receipt-link:f-1:1", issued_at=issued)
    links = KeyringLinkMac(second.keyring)
    assert links.verify(b"receipt-link:f-1:1", tag, issued_at=issued) is True
    assert links.verify(b"receipt-link:f-2:1", tag, issued_at=issued) is False
    assert links.verify(b"receipt-link:f-1:1", "é" * 43, issued_at=issued) is False  # no 500
    # a month without a key, or a time before this month's key was made: not the keyring's link
    assert links.verify(b"receipt-link:f-1:1", tag, issued_at=issued - timedelta(days=40)) is None
    assert links.verify(b"receipt-link:f-1:1", tag, issued_at=issued - timedelta(hours=1)) is None
    # the month's key outlives every link made in it (30 days), then is gone
    clock.current = datetime(2027, 1, 31, tzinfo=UTC)
    assert links.verify(b"receipt-link:f-1:1", tag, issued_at=issued) is True
    clock.current = datetime(2027, 3, 5, tzinfo=UTC)
    assert links.verify(b"receipt-link:f-1:1", tag, issued_at=issued) is None


# -- webhook event keys --------------------------------------------------------------------------------


def test_event_keys_are_published_before_use_and_events_verify_with_the_jwks(
    containers: tuple[Container, Container], clock: FixedClock
) -> None:
    first, second = containers
    # WHEN an event is signed at 23:30
    signer = KeyringEventSigners(first.keyring).current()
    event = sign_jwt({"iss": "x", "event": {"id": "e"}}, signer=signer, typ="myna-relay-event+jwt")
    # THEN the JWKS (another container) lists this hour's key and the next hour's, made together
    published = second.keyring.published_event_keys()
    kids = [jwk["kid"] for jwk in published]
    assert [kid[: len(EVENT_KID_PREFIX) + 11] for kid in kids] == ["event-20261207T00", "event-20261206T23"]
    assert all("d" not in jwk and jwk["alg"] == "ES256" and jwk["use"] == "sig" for jwk in published)
    assert second.calls == Counter({"dynamodb.BatchGetItem": 1})  # no KMS: public halves only
    token = jws.deserialize_compact(event, KeySet.import_key_set({"keys": published}), algorithms=["ES256"])
    assert json.loads(token.payload)["event"] == {"id": "e"}
    # AND the JWKS is kept 60 s per container
    second.keyring.published_event_keys()
    assert second.calls["dynamodb.BatchGetItem"] == 1
    # AND at midnight the next key signs, and the previous one stays published
    clock.advance(minutes=31)
    after = KeyringEventSigners(first.keyring).current().public_jwk()["kid"]
    assert after == kids[0]
    assert [jwk["kid"] for jwk in second.keyring.published_event_keys()][1:] == kids


def test_a_stored_event_key_whose_public_half_was_swapped_is_refused(
    containers: tuple[Container, Container], dynamodb_client: Any, resources: dict[str, str]
) -> None:
    first, second = containers
    KeyringEventSigners(first.keyring).current()
    table = resources["RELAY_STATE_TABLE"]
    items = key_items(dynamodb_client, table)
    current, upcoming = items["KEY#event#20261206T23"], items["KEY#event#20261207T00"]
    # someone who can write the table publishes another key under the current slot's kid
    swapped = json.loads(upcoming["public_jwk"]["S"])
    swapped["kid"] = json.loads(current["public_jwk"]["S"])["kid"]
    dynamodb_client.put_item(TableName=table, Item={**current, "public_jwk": {"S": json.dumps(swapped)}})
    with pytest.raises(DependencyUnavailable, match="does not match"):
        KeyringEventSigners(second.keyring).current()


def test_slots_are_utc_windows() -> None:
    moment = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert [SLOTS[p].slot_of(moment) for p in ("token", "receipt", "event")] == [
        "20261231",
        "202612",
        "20261231T23",
    ]
    assert SLOTS["receipt"].end("202612") == datetime(2027, 1, 1, tzinfo=UTC)
    assert SLOTS["event"].end("20261231T23") == datetime(2027, 1, 1, tzinfo=UTC)
    assert not SLOTS["token"].is_slot("2026123")
    assert not SLOTS["token"].is_slot("20261332")


def test_checking_a_link_never_makes_a_key(
    containers: tuple[Container, Container],
    dynamodb_client: Any,
    resources: dict[str, str],
    clock: FixedClock,
) -> None:
    first, _ = containers
    links = KeyringLinkMac(first.keyring)
    # a stage with no receipt key yet: a link can only be from before the keyring (the KMS check)
    assert links.verify(b"receipt-link:f-1:1", "A" * 43, issued_at=clock.now()) is None
    assert key_items(dynamodb_client, resources["RELAY_STATE_TABLE"]) == {}
    assert first.calls["kms.GenerateDataKey"] == 0
    # once keys exist, a link dated after the first one and not verifying is simply wrong
    links.mac(b"receipt-link:f-1:1", issued_at=clock.now())
    clock.advance(days=1)
    assert links.verify(b"receipt-link:f-1:1", "A" * 43, issued_at=clock.now()) is False
