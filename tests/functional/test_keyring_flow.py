"""A complete flow on the keyring (issue [13]): one KMS call per flow in steady state (the sealed
payload's signature), and webhook events signed by the hour's event key, published in the JWKS
beside the KMS key, each kind of JWT verifiable by its own kind of key only."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from joserfc import jwe, jws
from joserfc.errors import BadSignatureError
from joserfc.jwk import ECKey, KeySet

from chalicelib import container
from chalicelib.adapters.keyring import EVENT_KID_PREFIX
from tests.fakes import ShiftedClock
from tests.functional.conftest import Journey
from tests.functional.test_delivery import WebhookReceiver, pick_up, redeemed, run_due


@pytest.fixture
def receiver(journey: Journey) -> Iterator[WebhookReceiver]:
    live = WebhookReceiver()
    container.get_container().partners.update(journey.partner.document(webhook_url=live.url))
    yield live
    live.stop()


@pytest.fixture
def kms_calls(journey: Journey, clock: ShiftedClock) -> Counter[str]:
    """Every KMS request the relay's own client makes from now on."""
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    container.get_container().aws.kms.meta.events.register("before-call.kms.*", count)
    return calls


def one_flow(journey: Journey) -> None:
    token, _ = redeemed(journey)
    assert run_due() == {"ready": 1, "webhook.delivered": 1}
    assert pick_up(journey, token).status_code == 200


def test_a_complete_flow_makes_one_kms_call_once_the_stages_keys_exist(
    journey: Journey, receiver: WebhookReceiver, kms_calls: Counter[str]
) -> None:
    # GIVEN a stage's first flow of the day: it makes the day's token key, the month's receipt key
    # and this and the next hour's event keys (none unwrapped: the maker holds them already)
    one_flow(journey)
    assert kms_calls == Counter({"GenerateDataKey": 2, "Encrypt": 2, "GetPublicKey": 1, "Sign": 1}), kms_calls
    kms_calls.clear()
    # WHEN another resident goes through a whole flow, the partner told by a webhook
    one_flow(journey)
    # THEN KMS signed the sealed payload, and did nothing else
    assert kms_calls == Counter({"Sign": 1})
    assert len(receiver.bodies) == 2


def test_a_webhook_event_verifies_with_the_published_event_key_and_never_with_the_payload_key(
    journey: Journey, clock: ShiftedClock, receiver: WebhookReceiver
) -> None:
    token, _ = redeemed(journey)
    run_due()
    sealed = pick_up(journey, token).body.decode()
    jwks = json.loads(journey.client.http.get("/.well-known/jwks.json").body)
    # the KMS key first (its kid the RFC 7638 thumbprint), then this and the next hour's event keys
    payload_key, *event_keys = jwks["keys"]
    assert payload_key["kid"] == ECKey.import_key(payload_key).thumbprint()
    assert len(event_keys) == 2
    assert all(jwk["kid"].startswith(EVENT_KID_PREFIX) for jwk in event_keys)
    assert all((jwk["use"], jwk["alg"]) == ("sig", "ES256") and "d" not in jwk for jwk in event_keys)
    # the event names an event key, and verifies with the JWKS a partner fetches (any JOSE library)
    (body,) = receiver.bodies
    header = jws.extract_compact(body.encode()).headers()
    assert header["typ"] == "myna-relay-event+jwt"
    assert header["kid"] in {jwk["kid"] for jwk in event_keys}
    jws.deserialize_compact(body, KeySet.import_key_set(jwks), algorithms=["ES256"])
    # but not with the payload key, whatever the header says
    with pytest.raises(BadSignatureError):
        jws.deserialize_compact(body, ECKey.import_key(payload_key), algorithms=["ES256"])
    # AND the sealed payload is signed by the KMS key only
    inner = jwe.decrypt_compact(sealed, journey.partner.encryption_key).plaintext
    assert jws.extract_compact(inner).headers()["kid"] == payload_key["kid"]
    for jwk in event_keys:
        with pytest.raises(BadSignatureError):
            jws.deserialize_compact(inner, ECKey.import_key(jwk), algorithms=["ES256"])
