"""Retrieval to pickup: completion notice, poller, normalisation, sealing, one-time pickup, expiry,
webhooks. The partner opens what it receives with joserfc using only its own private key and the
served JWKS."""

from __future__ import annotations

import dataclasses
import io
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from joserfc import jwe, jws
from joserfc.jwk import ECKey, KeySet

from chalicelib import container
from chalicelib.adapters.dynamodb_state import flow_document
from chalicelib.domain.delivery import Picked
from chalicelib.domain.errors import RelayError
from tests.fakes import ShiftedClock
from tests.functional.conftest import ISSUER, Journey, location_query
from tests.leakscan import Scanner, item_hits, item_label, load_persona_values

SELF_INFO = f"{ISSUER}/v1/self-info"


def redeemed(journey: Journey, persona: str = "salaried") -> tuple[str, str]:
    """Through the browser part and the token: (access token, delivery id)."""
    code = journey.to_partner_code(persona)
    issued = journey.redeem(code)
    assert issued.status_code == 200, issued.body
    body = json.loads(issued.body)
    return body["access_token"], body.get("delivery_id", "")


def pick_up(journey: Journey, token: str, **query: str) -> Any:
    suffix = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    proof = journey.partner.dpop("GET", SELF_INFO, access_token=token)
    return journey.client.http.get(
        f"/v1/self-info{suffix}", headers={"Authorization": f"DPoP {token}", "DPoP": proof}
    )


def run_due() -> dict[str, int]:
    return container.get_container().delivery.process_due()


def open_sealed(journey: Journey, compact: str) -> dict[str, Any]:
    """What the partner does: decrypt with its encryption key, verify with the served JWKS."""
    decrypted = jwe.decrypt_compact(compact, journey.partner.encryption_key)
    assert decrypted.headers()["alg"] == "ECDH-ES+A256KW"
    assert decrypted.headers()["enc"] == "A256GCM"
    assert decrypted.headers()["cty"] == "JWT"
    assert decrypted.headers()["kid"] == "acme-enc-1"
    jwks = KeySet.import_key_set(json.loads(journey.client.http.get("/.well-known/jwks.json").body))
    verified = jws.deserialize_compact(decrypted.plaintext, jwks, algorithms=["ES256"])
    claims: dict[str, Any] = json.loads(verified.payload)
    return claims


def test_a_sealed_delivery_is_picked_up_once_and_opened_by_the_partner(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN a partner holding a DPoP-bound token for a retrieving flow
    token, _ = redeemed(journey)
    # WHEN the scheduled handler runs (as EventBridge would call it)
    event = journey.client.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={}, resources=[], region="ap-northeast-1"
    )
    journey.client.lambda_.invoke("process_due", event)
    # THEN the first pickup returns the sealed payload
    first = pick_up(journey, token)
    assert first.status_code == 200, first.body
    assert first.headers["Content-Type"] == "application/jose"
    claims = open_sealed(journey, first.body.decode())
    assert claims["iss"] == ISSUER
    assert claims["aud"] == "acme-bank"
    assert claims["purpose"] == "loan-screening"
    assert claims["schema"] == "myna-relay/self-info/1"
    assert claims["exp"] > claims["iat"]
    assert claims["jti"]
    assert claims["interaction_id"]
    data = claims["data"]
    assert data["dataset"] == "local_tax"
    (record,) = data["records"]
    assert set(record) == {"fiscal_year", "total_income"}
    assert record["fiscal_year"] == 2026
    assert data["derived"] == {"annual_income_at_least": False}
    # AND the second is gone
    second = pick_up(journey, token)
    assert second.status_code == 410
    assert json.loads(second.body)["check"] == "delivery.picked_up"
    deliveries = [
        i
        for i in dynamodb_client.scan(TableName=resources["RELAY_STATE_TABLE"])["Items"]
        if i["pk"]["S"].startswith("DELIVERY#")
    ]
    assert deliveries == []


def test_pickup_answers_202_while_the_portal_is_still_working(journey: Journey, clock: ShiftedClock) -> None:
    token, _ = redeemed(journey)
    pending = pick_up(journey, token)
    assert pending.status_code == 202
    assert pending.headers["Retry-After"] == "5"


def test_the_audit_log_records_result_sealing_and_provision_without_values(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    token, _ = redeemed(journey)
    run_due()
    pick_up(journey, token)
    items = sorted(
        dynamodb_client.scan(TableName=resources["RELAY_AUDIT_TABLE"])["Items"], key=lambda i: i["sk"]["S"]
    )
    events = [item["event"]["S"] for item in items]
    assert events == [
        "request_pushed",
        "consent_shown",
        "continued",
        "portal_authorised",
        "retrieval_started",
        "result_received",
        "sealed",
        "picked_up",
    ]
    documents = [json.loads(item["document"]["S"]) for item in items]
    assert len({d["resident_pseudonym"] for d in documents}) == 1  # stable within the flow
    assert documents[0]["resident_pseudonym"]
    assert {d["requester_name"] for d in documents} == {"アクメ銀行"}
    provided = next(json.loads(i["document"]["S"]) for i in items if i["event"]["S"] == "picked_up")
    assert provided["outcome"] == "provided"
    assert provided["provided_at"]
    assert provided["dataset_name_ja"] == "地方税関係情報"
    dump = json.dumps(items, ensure_ascii=False, default=bytes.hex)  # leaf hashes are binary
    for value in ("5200000", "3680000", "山田"):
        assert value not in dump


def test_the_individual_number_persona_is_delivered_without_any_number(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    token, _ = redeemed(journey, "individual-number")
    run_due()
    claims = open_sealed(journey, pick_up(journey, token).body.decode())
    text = json.dumps(claims, ensure_ascii=False)
    for number in ("621498320257", "123456789018", "1234 5678 9018", "6214-9832-0257"):
        assert number not in text
    audit = dynamodb_client.scan(TableName=resources["RELAY_AUDIT_TABLE"])["Items"]
    removed = [
        json.loads(i["document"]["S"]) for i in audit if i["event"]["S"] == "individual_numbers_removed"
    ]
    assert removed[0]["counts"] == {"individual_numbers": 3}
    assert "621498320257" not in json.dumps(audit, default=bytes.hex)


def test_a_forged_notice_reveals_nothing_and_changes_nothing(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    redeemed(journey)
    before = sorted(
        json.dumps(i, sort_keys=True)
        for i in dynamodb_client.scan(TableName=resources["RELAY_STATE_TABLE"])["Items"]
    )
    header = {
        "telegramId": "TL-00000001-261127090000-0001",
        "telegramType": "IFA0302-R01",
        "mode": "1",
        "processId": "PRFORGED",
        "errorCode": "",
    }
    answer = journey.client.http.post(
        "/portal/notice",
        body=json.dumps({"commonHeader": header}),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 200
    assert json.loads(answer.body)["commonHeader"] == {**header, "telegramType": "IFA0302-S01"}
    after = sorted(
        json.dumps(i, sort_keys=True)
        for i in dynamodb_client.scan(TableName=resources["RELAY_STATE_TABLE"])["Items"]
    )
    assert after == before


def test_a_genuine_notice_brings_the_poll_forward(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    from sandbox.scenarios import Scenario

    # GIVEN a flow whose first poll met an unavailable portal, so its next poll is 10 s away
    journey.sandbox.portal.set_scenario(Scenario.RESULT_5XX, times=3)
    token, _ = redeemed(journey)
    assert run_due() == {"portal.unavailable": 1}
    assert run_due() == {}
    # WHEN the portal's completion notice arrives
    answer = notice_for(journey, dynamodb_client, resources["RELAY_STATE_TABLE"])
    # THEN it is echoed, and the notice has polled at once: the delivery is sealed, nothing is due
    assert json.loads(answer.body)["commonHeader"]["telegramType"] == "IFA0302-S01"
    assert run_due() == {}
    assert pick_up(journey, token).status_code == 200


def flow_item(dynamodb_client: Any, table: str) -> dict[str, Any]:
    items = dynamodb_client.scan(TableName=table)["Items"]
    document: dict[str, Any] = next(flow_document(i) for i in items if i["pk"]["S"].startswith("FLOW#"))
    return document


@pytest.fixture
def portal_results(journey: Journey, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the IF001-06 calls that reach the sandbox portal (one entry per call)."""
    portal = journey.sandbox.portal
    calls: list[int] = []
    answer = portal.result

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return answer(*args, **kwargs)

    monkeypatch.setattr(portal, "result", counted)
    return calls


def test_a_genuine_notice_seals_the_delivery_and_tells_the_partner_in_the_same_request(
    journey: Journey,
    clock: ShiftedClock,
    dynamodb_client: Any,
    resources: dict[str, str],
    portal_results: list[int],
) -> None:
    # GIVEN a partner with a webhook receiver, and a flow whose retrieval the portal has finished
    receiver = WebhookReceiver()
    try:
        container.get_container().partners.update(journey.partner.document(webhook_url=receiver.url))
        token, delivery_id = redeemed(journey)
        table = resources["RELAY_STATE_TABLE"]
        # WHEN the portal's completion notice arrives (and no scheduled run has happened)
        answer = notice_for(journey, dynamodb_client, table)
        # THEN the portal gets its echo, as before
        assert answer.status_code == 200
        assert json.loads(answer.body)["commonHeader"]["telegramType"] == "IFA0302-S01"
        # AND that request fetched the result once, sealed the delivery and told the partner
        assert len(portal_results) == 1
        flow = flow_item(dynamodb_client, table)
        assert (flow["status"], flow["portal_token_ciphertext"]) == ("ready", None)
        events = [json.loads(jws.extract_compact(body.encode()).payload)["event"] for body in receiver.bodies]
        assert [(e["type"], e["delivery_id"]) for e in events] == [("delivery.ready", delivery_id)]
        # AND the scheduled run finds nothing left to do: no poll, no webhook
        assert run_due() == {}
        assert len(portal_results) == 1
        assert len(receiver.bodies) == 1
        assert pick_up(journey, token).status_code == 200
    finally:
        receiver.stop()


def test_a_repeated_notice_does_not_call_the_portal_again(
    journey: Journey,
    clock: ShiftedClock,
    dynamodb_client: Any,
    resources: dict[str, str],
    portal_results: list[int],
) -> None:
    from dataclasses import replace

    from sandbox.scenarios import Scenario

    # GIVEN a flow whose result the portal takes 4 minutes to collect
    portal = journey.sandbox.portal
    portal.timing = replace(portal.timing, slow_result_delay_s=240)  # deterministic mode: 0
    portal.set_scenario(Scenario.SLOW_PROVIDER)
    token, _ = redeemed(journey)
    table = resources["RELAY_STATE_TABLE"]
    # WHEN a notice arrives early: its poll finds the result pending
    assert notice_for(journey, dynamodb_client, table).status_code == 200
    assert len(portal_results) == 1
    assert flow_item(dynamodb_client, table)["status"] == "retrieving"
    # THEN the same notice, repeated within 10 s, is echoed but does not reach the portal again
    for _ in range(5):
        answer = notice_for(journey, dynamodb_client, table)
        assert answer.status_code == 200
        assert json.loads(answer.body)["commonHeader"]["telegramType"] == "IFA0302-S01"
    assert len(portal_results) == 1
    # AND the scheduled run keeps its own backoff (the pending poll's 10 s)
    assert run_due() == {}
    assert len(portal_results) == 1
    # AND once the result is ready and 10 s have passed (the mark is kept in whole seconds, rounded
    # up), a notice polls, seals, and is then inert
    clock.advance(seconds=11)
    journey.sandbox.clock.advance(240)
    assert notice_for(journey, dynamodb_client, table).status_code == 200
    assert len(portal_results) == 2
    assert flow_item(dynamodb_client, table)["status"] == "ready"
    before = sorted(json.dumps(i, sort_keys=True) for i in dynamodb_client.scan(TableName=table)["Items"])
    assert notice_for(journey, dynamodb_client, table).status_code == 200  # for a sealed flow
    assert len(portal_results) == 2
    after = sorted(json.dumps(i, sort_keys=True) for i in dynamodb_client.scan(TableName=table)["Items"])
    assert after == before
    assert run_due() == {}
    assert pick_up(journey, token).status_code == 200


def test_a_portal_outage_at_notice_time_leaves_the_flow_due_and_the_scheduled_run_completes_it(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    from sandbox.scenarios import Scenario

    # GIVEN the portal answers 5xx to the three attempts of the next poll
    journey.sandbox.portal.set_scenario(Scenario.RESULT_5XX, times=3)
    token, _ = redeemed(journey)
    table = resources["RELAY_STATE_TABLE"]
    # WHEN the portal's completion notice arrives
    answer = notice_for(journey, dynamodb_client, table)
    # THEN the portal still gets its echo, not an error
    assert answer.status_code == 200
    assert json.loads(answer.body)["commonHeader"]["errorCode"] == ""
    # AND the flow is retrieving, due again after the poller's backoff, with no delivery
    flow = flow_item(dynamodb_client, table)
    assert (flow["status"], flow["poll_attempts"]) == ("retrieving", 1)
    assert pick_up(journey, token).status_code == 202
    assert run_due() == {}
    # AND the scheduled run completes it once the backoff is over
    clock.advance(seconds=10)
    assert run_due() == {"ready": 1}
    assert pick_up(journey, token).status_code == 200


def test_a_kms_failure_while_the_notice_seals_leaves_the_flow_due_for_the_scheduled_run(
    journey: Journey,
    clock: ShiftedClock,
    dynamodb_client: Any,
    resources: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chalicelib.adapters.kms_signer import KmsSigner
    from chalicelib.domain.errors import DependencyUnavailable

    # GIVEN KMS cannot sign while the notice seals the delivery
    token, _ = redeemed(journey)
    table = resources["RELAY_STATE_TABLE"]
    original = KmsSigner.sign

    def unavailable(self: KmsSigner, message: bytes) -> bytes:
        raise DependencyUnavailable("kms Sign failed: KMSInternalException", check="kms")

    monkeypatch.setattr(KmsSigner, "sign", unavailable)
    # WHEN the portal's completion notice arrives
    answer = notice_for(journey, dynamodb_client, table)
    # THEN the portal still gets its echo, and nothing is sealed: the flow is retrieving and due now
    assert answer.status_code == 200
    assert json.loads(answer.body)["commonHeader"]["telegramType"] == "IFA0302-S01"
    flow = flow_item(dynamodb_client, table)
    assert flow["status"] == "retrieving"
    assert datetime.fromisoformat(flow["next_due_at"]) <= clock.now()
    assert not [
        i for i in dynamodb_client.scan(TableName=table)["Items"] if i["pk"]["S"].startswith("DELIVERY#")
    ]
    # AND the next scheduled run, KMS being back, seals it
    monkeypatch.setattr(KmsSigner, "sign", original)
    assert run_due() == {"ready": 1}
    assert pick_up(journey, token).status_code == 200


def test_a_notice_needs_a_telegram(journey: Journey, clock: ShiftedClock) -> None:
    answer = journey.client.http.post(
        "/portal/notice", body=b"{}", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400


@pytest.mark.parametrize(
    ("authorization", "proof_kind", "status"),
    [
        ("Bearer {token}", "good", 401),  # the DPoP scheme is required
        ("DPoP {token}", "none", 401),
        ("DPoP {token}", "other-key", 401),
        ("DPoP {token}", "wrong-ath", 401),
        ("DPoP not-a-token", "good", 401),
    ],
)
def test_pickup_needs_the_bound_token_and_its_proof(
    journey: Journey, clock: ShiftedClock, authorization: str, proof_kind: str, status: int
) -> None:
    token, _ = redeemed(journey)
    run_due()
    proofs = {
        "good": journey.partner.dpop("GET", SELF_INFO, access_token=token),
        "other-key": journey.partner.dpop(
            "GET", SELF_INFO, access_token=token, key=ECKey.generate_key("P-256")
        ),
        "wrong-ath": journey.partner.dpop("GET", SELF_INFO, access_token="another-token"),
    }
    headers = {"Authorization": authorization.format(token=token)}
    if proof_kind != "none":
        headers["DPoP"] = proofs[proof_kind]
    refused = journey.client.http.get("/v1/self-info", headers=headers)
    assert refused.status_code == status
    assert "DPoP" in refused.headers["WWW-Authenticate"]
    assert pick_up(journey, token).status_code == 200  # the refusal changed nothing


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("dpop {token}", id="lower-case-scheme"),
        pytest.param("DPOP {token}", id="upper-case-scheme"),
        pytest.param("DPoP   {token}", id="three-spaces"),
    ],
)
def test_the_dpop_scheme_is_case_insensitive_and_may_be_followed_by_several_spaces(
    journey: Journey, clock: ShiftedClock, authorization: str
) -> None:
    # GIVEN a sealed delivery and its DPoP-bound token
    token, _ = redeemed(journey)
    run_due()
    # WHEN the scheme is spelt in another case, or followed by more than one space (RFC 9110 11.1, 11.4)
    headers = {
        "Authorization": authorization.format(token=token),
        "DPoP": journey.partner.dpop("GET", SELF_INFO, access_token=token),
    }
    picked = journey.client.http.get("/v1/self-info", headers=headers)
    # THEN the token is read as any other: the delivery is picked up
    assert picked.status_code == 200, picked.body


def test_a_token_for_another_delivery_is_forbidden(journey: Journey, clock: ShiftedClock) -> None:
    token, _ = redeemed(journey)
    run_due()
    assert pick_up(journey, token, delivery_id="someone-elses-delivery").status_code == 403
    assert pick_up(journey, token).status_code == 200


def test_concurrent_pickups_deliver_exactly_once(
    journey: Journey, clock: ShiftedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, _ = redeemed(journey)
    run_due()
    service = container.get_container().delivery
    proofs = [journey.partner.dpop("GET", SELF_INFO, access_token=token) for _ in range(12)]
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(proof: str) -> None:
        try:
            result = service.pick_up(authorization=f"DPoP {token}", dpop_proof=proof, delivery_id=None)
            outcome = "picked" if isinstance(result, Picked) else "pending"
        except RelayError as error:
            outcome = error.code
        with lock:
            outcomes.append(outcome)

    # Make them truly overlap: every attempt reads the delivery before any may write, so only the
    # conditional delete in the pickup transaction can keep the answer at exactly one.
    from chalicelib.adapters.dynamodb_state import DynamoStateStore

    barrier = threading.Barrier(len(proofs), timeout=20)
    original_get = DynamoStateStore._get

    def synchronised_get(self: DynamoStateStore, key: dict[str, Any]) -> Any:
        item = original_get(self, key)
        if key["pk"]["S"].startswith("DELIVERY#"):
            barrier.wait()
        return item

    monkeypatch.setattr(DynamoStateStore, "_get", synchronised_get)
    threads = [threading.Thread(target=attempt, args=(proof,)) for proof in proofs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("picked") == 1
    assert set(outcomes) == {"picked", "delivery-gone"}


def test_a_delivery_expires_after_its_data_life(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    token, _ = redeemed(journey)
    run_due()
    clock.advance(minutes=10, seconds=1)
    assert run_due() == {"expired": 1}
    gone = pick_up(journey, token)
    assert gone.status_code in (401, 410)  # the token's own life ends with the delivery's
    items = dynamodb_client.scan(TableName=resources["RELAY_STATE_TABLE"])["Items"]
    assert not [i for i in items if i["pk"]["S"].startswith("DELIVERY#")]
    events = [
        i["event"]["S"] for i in dynamodb_client.scan(TableName=resources["RELAY_AUDIT_TABLE"])["Items"]
    ]
    assert "expired" in events


def test_expiry_is_enforced_on_read_before_the_sweeper_runs(journey: Journey, clock: ShiftedClock) -> None:
    token, _ = redeemed(journey)
    run_due()
    # Ten seconds short of the data life: the shifted clock still runs, and a loaded machine (the
    # suite runs on two workers) can take more than a second between the seal and the pickup.
    clock.advance(minutes=9, seconds=50)
    assert pick_up(journey, token).status_code == 200


@pytest.mark.parametrize(
    ("scenario", "reason"),
    [
        ("error-code", "portal.error_code.EE0100"),
        ("malformed-json", "result.json"),
        ("oversized-payload", "result.size"),
    ],
)
def test_a_bad_result_fails_the_flow_with_a_named_reason_and_stores_nothing(
    journey: Journey,
    clock: ShiftedClock,
    dynamodb_client: Any,
    resources: dict[str, str],
    scenario: str,
    reason: str,
) -> None:
    from sandbox.scenarios import Scenario

    journey.sandbox.portal.set_scenario(Scenario(scenario))
    token, _ = redeemed(journey)
    assert run_due() == {f"failed:{reason}": 1}
    assert pick_up(journey, token).status_code == 410
    items = dynamodb_client.scan(TableName=resources["RELAY_STATE_TABLE"])["Items"]
    assert not [i for i in items if i["pk"]["S"].startswith("DELIVERY#")]
    flow = next(flow_document(i) for i in items if i["pk"]["S"].startswith("FLOW#"))
    assert (flow["status"], flow["failure_reason"], flow["portal_token_ciphertext"]) == (
        "failed",
        reason,
        None,
    )


def unknown_result_codes(monkeypatch: pytest.MonkeyPatch, code: str, times: int | None) -> list[str]:
    """Make the portal's IF001-06 answers carry ``code`` (``times`` of them; None: all); returns
    the errorCode of each IF001-06 answer the relay received."""
    from chalicelib.adapters.mynaportal import IF_RESULT, MynaportalClient

    original = MynaportalClient._post
    seen: list[str] = []

    def post(self: MynaportalClient, interface: str, url: str, body: bytes, headers: Any) -> Any:
        answer = original(self, interface, url, body, headers)
        if interface == IF_RESULT and (times is None or len(seen) < times):
            header = json.loads(body)["commonHeader"]
            document = {"commonHeader": {**header, "telegramType": "IFA0303-S01", "errorCode": code}}
            answer = dataclasses.replace(answer, status=200, body=json.dumps(document).encode())
        if interface == IF_RESULT:
            seen.append(json.loads(answer.body)["commonHeader"]["errorCode"])
        return answer

    monkeypatch.setattr(MynaportalClient, "_post", post)
    return seen


def test_an_unknown_result_error_code_is_asked_again_with_backoff(
    journey: Journey, clock: ShiftedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a portal whose first two IF001-06 answers carry a code nobody published
    seen = unknown_result_codes(monkeypatch, "EX4242", times=2)
    token, _ = redeemed(journey)
    # WHEN the scheduled run polls: the code is a reason to wait, not to fail (docs/mynaportal.md)
    assert run_due() == {"portal.error_code": 1}
    assert run_due() == {}  # backing off: not due again at once
    clock.advance(seconds=10)
    assert run_due() == {"portal.error_code": 1}
    clock.advance(seconds=10)
    assert run_due() == {}  # the second pause is longer (20 s)
    clock.advance(seconds=10)
    # THEN once the portal answers, the delivery is sealed and picked up as usual
    assert run_due() == {"ready": 1}
    assert seen == ["EX4242", "EX4242", ""]
    assert pick_up(journey, token).status_code == 200


def test_an_unknown_result_error_code_until_the_deadline_fails_naming_it(
    journey: Journey,
    clock: ShiftedClock,
    dynamodb_client: Any,
    resources: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a portal that answers IF001-06 with an unknown code every time
    seen = unknown_result_codes(monkeypatch, "EX4242", times=None)
    token, _ = redeemed(journey)
    # WHEN the scheduled run keeps polling, every minute, until the 10-minute deadline
    outcomes = []
    for _ in range(12):
        outcomes.append(run_due())
        if "failed:portal.error_code.EX4242" in outcomes[-1]:
            break
        clock.advance(seconds=60)
    # THEN it was asked again and again, and the last look before the deadline fails naming the code
    assert outcomes[0] == {"portal.error_code": 1}
    assert outcomes[-1] == {"failed:portal.error_code.EX4242": 1}
    assert len(seen) >= 8
    assert pick_up(journey, token).status_code == 410
    items = dynamodb_client.scan(TableName=resources["RELAY_STATE_TABLE"])["Items"]
    flow = next(flow_document(i) for i in items if i["pk"]["S"].startswith("FLOW#"))
    assert (flow["status"], flow["failure_reason"]) == ("failed", "portal.error_code.EX4242")
    assert datetime.fromisoformat(flow["updated_at"]) < datetime.fromisoformat(flow["retrieval_deadline"])


def test_a_portal_that_never_answers_ends_at_the_deadline(journey: Journey, clock: ShiftedClock) -> None:
    from sandbox.scenarios import Scenario

    journey.sandbox.portal.set_scenario(Scenario.RESULT_5XX)
    token, _ = redeemed(journey)
    assert run_due() == {"portal.unavailable": 1}
    clock.advance(minutes=10)
    assert run_due() == {"failed:retrieval.deadline": 1}
    assert pick_up(journey, token).status_code == 410


@pytest.mark.parametrize("scenario", ["token-5xx", "request-5xx"])
def test_a_portal_outage_at_the_callback_tells_the_partner(
    journey: Journey, clock: ShiftedClock, scenario: str
) -> None:
    from sandbox.scenarios import Scenario

    journey.sandbox.portal.set_scenario(Scenario(scenario))
    journey.push()
    journey.show_consent()
    journey.decide()
    journey.at_portal("salaried")
    query = location_query(journey.callback())
    assert query["error"] == "temporarily_unavailable"


@pytest.fixture
def all_tables_scan(dynamodb_client: Any, resources: dict[str, str]) -> Iterator[Any]:
    def scan() -> list[dict[str, Any]]:
        tables = (
            resources["RELAY_STATE_TABLE"],
            resources["RELAY_AUDIT_TABLE"],
            resources["RELAY_PARTNERS_TABLE"],
        )
        return [item for t in tables for item in dynamodb_client.scan(TableName=t)["Items"]]

    return scan


@pytest.mark.parametrize(
    ("persona", "purpose", "scope", "status"),
    [
        ("salaried", "loan-screening", "local_tax", "picked_up"),
        ("moved", "loan-screening", "local_tax", "picked_up"),
        ("pensioner", "loan-screening", "local_tax", "picked_up"),
        ("non-taxable", "loan-screening", "local_tax", "picked_up"),
        ("no-data", "loan-screening", "local_tax", "picked_up"),
        ("individual-number", "loan-screening", "local_tax", "picked_up"),
        ("slow-provider", "loan-screening", "local_tax", "picked_up"),
        ("parent-vaccination", "child-vaccination-record", "vaccination", "picked_up"),
    ],
)
def test_every_persona_reaches_its_terminal_state_and_leaves_no_values_behind(
    journey: Journey,
    clock: ShiftedClock,
    all_tables_scan: Any,
    persona: str,
    purpose: str,
    scope: str,
    status: str,
) -> None:
    from chalicelib.telemetry import logger

    captured = io.StringIO()
    previous = logger.registered_handler.setStream(captured)
    assert journey.push(purpose=purpose, scope=scope).status_code == 201
    journey.show_consent()
    journey.decide()
    journey.at_portal(persona)
    code = location_query(journey.callback())["code"]
    token = json.loads(journey.redeem(code).body)["access_token"]
    run_due()
    picked = pick_up(journey, token)
    assert picked.status_code == 200
    claims = open_sealed(journey, picked.body.decode())
    assert claims["data"]["dataset"] == scope
    logger.registered_handler.setStream(previous)
    scanner = Scanner(load_persona_values(only=[persona]))
    assert scanner.scan(captured.getvalue()) == []
    for item in all_tables_scan():
        assert item_hits(scanner, item) == [], item_label(item)


def test_the_sealed_payload_opens_with_another_jose_implementation(
    journey: Journey, clock: ShiftedClock
) -> None:
    # jwcrypto (Latchset) shares no code with joserfc, which sealed the payload
    from jwcrypto import jwe as jc_jwe
    from jwcrypto import jwk as jc_jwk
    from jwcrypto import jws as jc_jws

    token, _ = redeemed(journey)
    run_due()
    compact = pick_up(journey, token).body.decode()
    private = jc_jwk.JWK(**journey.partner.encryption_key.as_dict(private=True))
    envelope = jc_jwe.JWE()
    envelope.deserialize(compact, key=private)
    served = json.loads(journey.client.http.get("/.well-known/jwks.json").body)["keys"][0]
    signed = jc_jws.JWS()
    signed.deserialize(envelope.payload.decode())
    signed.verify(jc_jwk.JWK(**served), alg="ES256")
    assert json.loads(signed.payload)["aud"] == "acme-bank"


class WebhookReceiver:
    def __init__(self, failures: int = 0) -> None:
        from werkzeug.serving import make_server
        from werkzeug.wrappers import Request, Response

        self.bodies: list[str] = []
        self.failures = failures

        @Request.application  # type: ignore[arg-type]
        def app(request: Request) -> Response:
            self.bodies.append(request.get_data(as_text=True))
            if self.failures > 0:
                self.failures -= 1
                return Response("busy", status=503)
            return Response("", status=204)

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhook"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    live = WebhookReceiver(failures=1)
    yield live
    live.stop()


def test_a_signed_webhook_says_the_delivery_is_ready_and_is_retried_with_backoff(
    journey: Journey, clock: ShiftedClock, receiver: WebhookReceiver
) -> None:
    # GIVEN the partner registered a webhook URL
    container.get_container().partners.update(journey.partner.document(webhook_url=receiver.url))
    token, delivery_id = redeemed(journey)
    # WHEN the flow becomes ready: the run that seals also sends, and the outbox is worked after
    assert run_due() == {"ready": 1, "webhook.retry": 1}  # the receiver answered 503 once
    assert run_due() == {}  # backoff: not due again yet
    clock.advance(seconds=31)
    assert run_due() == {"webhook.delivered": 1}
    # THEN the body is a JWS by the service key naming the event and the delivery, the same event id twice
    jwks = KeySet.import_key_set(json.loads(journey.client.http.get("/.well-known/jwks.json").body))
    events = [
        json.loads(jws.deserialize_compact(body, jwks, algorithms=["ES256"]).payload)
        for body in receiver.bodies
    ]
    assert [event["event"]["type"] for event in events] == ["delivery.ready", "delivery.ready"]
    assert events[0]["event"]["id"] == events[1]["event"]["id"] == events[0]["jti"]
    assert events[0]["event"]["delivery_id"] == delivery_id
    assert events[0]["aud"] == "acme-bank"
    assert pick_up(journey, token).status_code == 200


@pytest.mark.parametrize("failures", [0, 1], ids=["receiver-up", "receiver-busy-once"])
def test_the_partner_is_told_in_the_run_that_seals_and_a_failed_send_waits_for_a_later_run(
    journey: Journey, clock: ShiftedClock, failures: int
) -> None:
    # GIVEN a partner whose webhook receiver is up, or answers 503 once
    receiver = WebhookReceiver(failures=failures)
    try:
        container.get_container().partners.update(journey.partner.document(webhook_url=receiver.url))
        token, delivery_id = redeemed(journey)
        # WHEN one scheduled run seals the delivery
        sealing_run = run_due()
        # THEN that same run already sent the event (no second run needed to tell the partner)
        if failures == 0:
            assert sealing_run == {"ready": 1, "webhook.delivered": 1}
        else:
            assert sealing_run == {"ready": 1, "webhook.retry": 1}
        assert len(receiver.bodies) == 1
        # AND a failed send stays in the outbox and is sent by a later run under the same event id
        clock.advance(seconds=31)
        assert run_due() == ({} if failures == 0 else {"webhook.delivered": 1})
        clock.advance(seconds=120)  # past every backoff, within the data life
        assert run_due() == {}  # delivered once: nothing is sent again
        payloads = [json.loads(jws.extract_compact(body.encode()).payload) for body in receiver.bodies]
        assert len(payloads) == 1 + failures
        assert {p["jti"] for p in payloads} == {payloads[0]["event"]["id"]}
        assert {(p["event"]["type"], p["event"]["delivery_id"]) for p in payloads} == {
            ("delivery.ready", delivery_id)
        }
        assert pick_up(journey, token).status_code == 200
    finally:
        receiver.stop()


def notice_for(journey: Journey, dynamodb_client: Any, table: str) -> Any:
    items = dynamodb_client.scan(TableName=table)["Items"]
    flow = next(flow_document(i) for i in items if i["pk"]["S"].startswith("FLOW#"))
    header = {
        "telegramId": flow["portal_process"]["telegram_id"],
        "telegramType": "IFA0302-R01",
        "mode": "1",
        "processId": flow["portal_process"]["process_id"],
        "errorCode": "",
    }
    return journey.client.http.post(
        "/portal/notice",
        body=json.dumps({"commonHeader": header}),
        headers={"Content-Type": "application/json"},
    )


@pytest.mark.parametrize(
    "scenario", ["never-notifies", "notifies-early", "duplicate-notices", "slow-provider"]
)
def test_notice_scenarios_all_end_in_one_delivery(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str], scenario: str
) -> None:
    from sandbox.scenarios import Scenario

    journey.sandbox.portal.set_scenario(Scenario(scenario))
    token, _ = redeemed(journey)
    table = resources["RELAY_STATE_TABLE"]
    notices = {"never-notifies": 0, "notifies-early": 1, "duplicate-notices": 2, "slow-provider": 1}[scenario]
    for _ in range(notices):  # what the portal's notices would do: the first seals, extra ones do nothing
        assert notice_for(journey, dynamodb_client, table).status_code == 200
    # the scheduled run seals the delivery only when no notice came
    assert run_due() == ({"ready": 1} if notices == 0 else {})
    assert notice_for(journey, dynamodb_client, table).status_code == 200  # a late notice is harmless
    assert run_due() == {}
    assert pick_up(journey, token).status_code == 200


@pytest.fixture
def short_portal_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_PORTAL_READ_TIMEOUT_S", "0.5")
    container.get_settings.cache_clear()


@pytest.mark.parametrize("scenario", ["token-timeout", "request-timeout"])
def test_a_portal_timeout_at_the_callback_is_a_definite_failure(
    journey: Journey,
    short_portal_timeouts: None,
    clock: ShiftedClock,
    dynamodb_client: Any,
    resources: dict[str, str],
    scenario: str,
) -> None:
    from sandbox.scenarios import Scenario

    journey.sandbox.portal.set_scenario(Scenario(scenario))
    journey.push()
    journey.show_consent()
    journey.decide()
    journey.at_portal("salaried")
    assert location_query(journey.callback())["error"] == "temporarily_unavailable"
    flows = [
        flow_document(i)
        for i in dynamodb_client.scan(TableName=resources["RELAY_STATE_TABLE"])["Items"]
        if i["pk"]["S"].startswith("FLOW#")
    ]
    assert [(f["status"], f["failure_reason"]) for f in flows] == [("failed", "portal.unavailable")]


def test_a_result_timeout_is_retried_then_ends_at_the_deadline(
    journey: Journey, short_portal_timeouts: None, clock: ShiftedClock
) -> None:
    from sandbox.scenarios import Scenario

    journey.sandbox.portal.set_scenario(Scenario.RESULT_TIMEOUT)
    token, _ = redeemed(journey)
    assert run_due() == {"portal.unavailable": 1}
    clock.advance(minutes=10)
    assert run_due() == {"failed:retrieval.deadline": 1}
    assert pick_up(journey, token).status_code == 410


def test_a_locked_card_sends_the_resident_back_with_access_denied(
    journey: Journey, clock: ShiftedClock
) -> None:
    journey.push()
    journey.show_consent()
    journey.decide()
    answer = location_query(journey.callback(journey.with_locked_card()))
    assert answer["error"] == "access_denied"
    assert "locked" in answer["error_description"]


def sealed_items(dynamodb_client: Any, table: str) -> list[Any]:
    return [i for i in dynamodb_client.scan(TableName=table)["Items"] if i["pk"]["S"].startswith("DELIVERY#")]


def test_a_partner_revocation_after_sealing_deletes_the_sealed_payload(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    token, _ = redeemed(journey)
    run_due()
    assert sealed_items(dynamodb_client, resources["RELAY_STATE_TABLE"])
    form = {"token": token, **journey.partner.authentication(ISSUER)}
    assert journey.client.http.post("/revoke", **journey.form(form)).status_code == 200
    assert sealed_items(dynamodb_client, resources["RELAY_STATE_TABLE"]) == []


def test_a_replayed_code_after_sealing_deletes_the_sealed_payload(
    journey: Journey, clock: ShiftedClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    code = journey.to_partner_code()
    assert journey.redeem(code).status_code == 200
    run_due()
    assert journey.redeem(code).status_code == 400
    assert sealed_items(dynamodb_client, resources["RELAY_STATE_TABLE"]) == []


@pytest.mark.parametrize("query", ["?other=1", "?delivery_id=" + "x" * 65, "?delivery_id=a&delivery_id=b"])
def test_pickup_refuses_unexpected_query_parameters_and_changes_nothing(
    journey: Journey, clock: ShiftedClock, query: str
) -> None:
    token, _ = redeemed(journey)
    run_due()
    proof = journey.partner.dpop("GET", SELF_INFO, access_token=token)
    refused = journey.client.http.get(
        f"/v1/self-info{query}", headers={"Authorization": f"DPoP {token}", "DPoP": proof}
    )
    assert refused.status_code == 400
    assert json.loads(refused.body)["check"] in ("other", "delivery_id")
    assert pick_up(journey, token).status_code == 200


def test_a_scheduled_run_that_seals_while_the_partner_redeems_its_code_costs_nothing(
    journey: Journey, clock: ShiftedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a partner holding its code while the portal's result is ready to be sealed
    code = journey.to_partner_code()
    store = container.get_container().state_store
    redeem_code = store.redeem_code
    runs: list[dict[str, int]] = []

    def sealed_in_between(*args: Any, **kwargs: Any) -> None:
        # the scheduled run commits between the token request's read of the flow and its write
        if not runs:
            runs.append(run_due())
        redeem_code(*args, **kwargs)

    monkeypatch.setattr(store, "redeem_code", sealed_in_between)

    # WHEN the partner redeems the code
    issued = journey.redeem(code)

    # THEN the token is issued against the sealed flow, nothing is revoked, and the payload opens
    assert runs, "the scheduled run did not happen"
    assert issued.status_code == 200, issued.body
    body = json.loads(issued.body)
    picked = pick_up(journey, body["access_token"])
    assert picked.status_code == 200, picked.body
    assert open_sealed(journey, picked.body.decode())["aud"] == "acme-bank"


def test_a_revocation_that_meets_a_scheduled_run_still_revokes_and_leaves_no_payload(
    journey: Journey,
    clock: ShiftedClock,
    monkeypatch: pytest.MonkeyPatch,
    dynamodb_client: Any,
    resources: dict[str, str],
) -> None:
    # GIVEN a partner holding a token for a flow the portal is still working on
    token, _ = redeemed(journey)
    store = container.get_container().state_store
    update = store.update
    runs: list[dict[str, int]] = []

    def sealed_in_between(*args: Any, **kwargs: Any) -> None:
        # the scheduled run seals the flow between the revocation's read of it and its write
        if not runs:
            runs.append(run_due())
        update(*args, **kwargs)

    monkeypatch.setattr(store, "update", sealed_in_between)

    # WHEN the partner revokes the token
    form = {"token": token, **journey.partner.authentication(ISSUER)}
    revoked = journey.client.http.post("/revoke", **journey.form(form))

    # THEN the revocation holds: the flow is revoked and the payload the run sealed is gone
    assert runs, "the scheduled run did not happen"
    assert revoked.status_code == 200, revoked.body
    assert sealed_items(dynamodb_client, resources["RELAY_STATE_TABLE"]) == []
    (flow,) = [
        flow_document(i)
        for i in dynamodb_client.scan(TableName=resources["RELAY_STATE_TABLE"])["Items"]
        if i["pk"]["S"].startswith("FLOW#")
    ]
    assert flow["status"] == "revoked"


@pytest.fixture
def first_poll_after_a_minute(clock: ShiftedClock) -> None:
    """The deployed stages' setting, 60 s (the test stage sets 0: its tests drive the poller
    directly; the test client re-applies the stage's environment on every request, so the built
    configuration is changed, after the clock fixture rebuilt the composition root)."""
    built = container.get_container()
    built.__dict__["authorization_config"] = dataclasses.replace(
        built.authorization_config, first_poll_after=timedelta(seconds=60)
    )


def test_the_fallback_poll_waits_its_first_minute_and_the_notice_does_not(
    journey: Journey,
    clock: ShiftedClock,
    first_poll_after_a_minute: None,
    dynamodb_client: Any,
    resources: dict[str, str],
    portal_results: list[int],
) -> None:
    # GIVEN a retrieval just started (issue [15]: the working integration calls /result only after
    # the portal's completion notice; the scheduled poll is the fallback for a notice that never comes)
    token, _ = redeemed(journey)
    # WHEN the scheduled run comes at once, THEN it leaves the portal alone
    assert run_due() == {}
    assert portal_results == []
    # AND a minute on, with no notice, it looks and seals
    clock.advance(seconds=61)
    assert run_due() == {"ready": 1}
    assert len(portal_results) == 1
    assert pick_up(journey, token).status_code == 200


def test_with_the_fallback_waiting_the_notice_still_fetches_at_once(
    journey: Journey,
    clock: ShiftedClock,
    first_poll_after_a_minute: None,
    dynamodb_client: Any,
    resources: dict[str, str],
    portal_results: list[int],
) -> None:
    token, _ = redeemed(journey)
    assert notice_for(journey, dynamodb_client, resources["RELAY_STATE_TABLE"]).status_code == 200
    assert len(portal_results) == 1
    assert pick_up(journey, token).status_code == 200
