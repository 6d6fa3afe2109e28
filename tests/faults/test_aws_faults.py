"""DynamoDB and KMS faults, injected below botocore's retries (``before-send`` hooks on the relay's
own clients): transient ones are retried by botocore and the flow ends delivered; persistent ones
end in a definite answer (503 with a problem or an OAuth error, never a stack trace, or a named
failed state) and leave nothing half-written, so the next try (the partner's, the resident's or
the scheduler's) succeeds once the service is back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.domain.errors import DependencyUnavailable
from tests.fakes import ShiftedClock
from tests.faults.conftest import Backoff
from tests.faults.harness import (
    DYNAMODB_INTERNAL,
    DYNAMODB_THROTTLED,
    KMS_DISABLED,
    KMS_INTERNAL,
    KMS_KEY_UNAVAILABLE,
    KMS_THROTTLED,
    THROUGHPUT_EXCEEDED,
    AwsFault,
    AwsFaults,
    Tables,
    WebhookReceiver,
    another_container_runs,
    assert_consistent,
    cancelled,
    pick_up,
    problem_of,
    redeemed,
    run_due,
    to_portal,
)
from tests.functional.conftest import Journey, location_query

# Every attempt botocore makes at one call. Settings.aws_max_attempts (3) reaches botocore as
# retries={"max_attempts": 3}, which counts retries, not attempts: 1 + 3.
MAX_ATTEMPTS = 4


def without_replay_records(snapshot: list[str]) -> list[str]:
    """The state and audit tables without the jti replay store (a refused request may have spent
    its own client assertion, which it must never reuse anyway; since the jtis are written in the
    steps' own transactions, a request refused for want of DynamoDB spends none)."""
    return [item for item in snapshot if '"JTI#' not in item]


def assert_temporarily_unavailable(response: Any) -> None:
    """RFC 6749 error JSON at an OAuth endpoint, retryable, with nothing internal in it."""
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Retry-After"] == "5"
    assert response.headers["Cache-Control"] == "no-store"
    body = json.loads(response.body)
    assert body["error"] == "temporarily_unavailable"
    assert "Traceback" not in body["error_description"]
    assert "injected" not in body["error_description"]


def assert_unavailable_page(response: Any) -> None:
    """A browser step: the resident's error page, 503, in HTML, never a redirect."""
    assert response.status_code == 503
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Location" not in response.headers
    assert "Traceback" not in response.body.decode()


# -- transient faults: botocore retries, the flow is delivered -------------------------------------


@pytest.mark.heavy
@pytest.mark.parametrize(
    ("dynamodb_fault", "kms_fault", "failures"),
    [
        (THROUGHPUT_EXCEEDED, KMS_THROTTLED, 2),
        (DYNAMODB_THROTTLED, KMS_THROTTLED, 2),
        # A retried 5xx costs botocore's retry quota 14 and gives back only the last 14 on success:
        # two 5xx per call would exhaust the quota within a flow (by design: a failing service is
        # not hammered), so these fail once per call.
        (DYNAMODB_INTERNAL, KMS_INTERNAL, 1),
    ],
    ids=["throughput-exceeded", "throttled", "internal-error"],
)
def test_a_whole_flow_is_delivered_when_every_aws_call_fails_before_it_succeeds(
    journey: Journey,
    clock: ShiftedClock,
    aws_faults: AwsFaults,
    backoff: Backoff,
    receiver: WebhookReceiver,
    tables: Tables,
    dynamodb_fault: AwsFault,
    kms_fault: AwsFault,
    failures: int,
) -> None:
    # GIVEN DynamoDB and KMS answer the first attempts of every call with a transient error
    aws_faults.fail_first_attempts("dynamodb", dynamodb_fault, failures)
    aws_faults.fail_first_attempts("kms", kms_fault, failures)
    # WHEN the partner and the resident go through the whole flow and the scheduler runs
    token = redeemed(journey)
    assert run_due(journey) == {"ready": 1, "webhook.delivered": 1}  # sealed, and the partner told
    picked = pick_up(journey, token)
    # THEN the partner gets its delivery, each call having been retried past its failures
    assert picked.status_code == 200, picked.body
    assert picked.headers["Content-Type"] == "application/jose"
    assert set(aws_faults.attempts) >= {
        "dynamodb.TransactWriteItems",
        "dynamodb.PutItem",
        "dynamodb.GetItem",
        "dynamodb.UpdateItem",
        "dynamodb.Query",
        "dynamodb.BatchGetItem",  # the keyring: this and the next hour's event keys
        "kms.GenerateDataKey",  # the keyring: the day's token key, the month's receipt key
        "kms.Encrypt",  # the keyring: the event keys, wrapped
        "kms.Sign",  # the sealed payload
    }
    for operation, attempts in aws_faults.attempts.items():
        assert attempts % (failures + 1) == 0, operation
        assert aws_faults.injected[operation] == attempts // (failures + 1) * failures, operation
    assert len(backoff.aws) == sum(aws_faults.injected.values())  # a backoff before every retry
    assert [event[1] for event in receiver.events()] == ["delivery.ready"]
    assert tables.statuses() == ["picked_up"]
    assert_consistent(tables, webhooks=True)


# -- persistent faults at each step: a definite answer, nothing half-written, then a retried success


@pytest.mark.parametrize(
    ("operation", "fault", "attempts"),
    [
        ("dynamodb.GetItem", DYNAMODB_INTERNAL, MAX_ATTEMPTS),  # the partner's registration
        # the assertion's jti, the flow, its request_uri and its record: one transaction
        # (the resident's pseudonym is random: PAR makes no KMS call)
        ("dynamodb.TransactWriteItems", THROUGHPUT_EXCEEDED, MAX_ATTEMPTS),
    ],
    ids=[
        "partner-lookup",
        "flow-transaction",
    ],
)
def test_a_pushed_request_that_cannot_be_stored_is_temporarily_unavailable_and_writes_nothing(
    journey: Journey,
    clock: ShiftedClock,
    aws_faults: AwsFaults,
    tables: Tables,
    operation: str,
    fault: AwsFault,
    attempts: int,
) -> None:
    # GIVEN one AWS operation the pushed request needs fails on every attempt
    before = tables.snapshot()
    aws_faults.fail(operation, fault)
    # WHEN the partner pushes its request
    refused = journey.push()
    # THEN it is told to come back, after botocore tried as often as the error allows
    assert_temporarily_unavailable(refused)
    assert aws_faults.attempts[operation] == attempts
    assert without_replay_records(tables.snapshot()) == without_replay_records(before)
    # AND once the dependency is back, the partner's next push starts a flow
    aws_faults.heal()
    assert journey.push().status_code == 201
    assert journey.show_consent().status_code == 200
    assert tables.statuses() == ["created"]
    assert_consistent(tables)


@pytest.mark.parametrize(
    ("step", "operation"),
    [
        ("consent", "dynamodb.TransactWriteItems"),  # the CSRF fingerprint and "consent_shown"
        ("decision", "dynamodb.TransactWriteItems"),  # request_uri used up, portal state stored
        ("callback", "dynamodb.UpdateItem"),  # the portal state used up
    ],
)
def test_a_browser_step_that_cannot_be_stored_shows_an_error_page_and_can_be_repeated(
    journey: Journey,
    clock: ShiftedClock,
    aws_faults: AwsFaults,
    tables: Tables,
    step: str,
    operation: str,
) -> None:
    # GIVEN the resident has reached the step
    steps = {
        "consent": journey.show_consent,
        "decision": journey.decide,
        "callback": journey.callback,
    }
    assert journey.push().status_code == 201
    if step != "consent":
        assert journey.show_consent().status_code == 200
    if step == "callback":
        assert journey.decide().status_code == 303
        journey.at_portal("salaried")
    before = tables.snapshot()
    # WHEN the step's write fails on every attempt
    aws_faults.fail(operation, THROUGHPUT_EXCEEDED)
    # THEN the resident sees the "unavailable" page and nothing changed
    assert_unavailable_page(steps[step]())
    assert aws_faults.attempts[operation] == MAX_ATTEMPTS
    assert tables.snapshot() == before
    # AND repeating the very same step once DynamoDB is back carries the flow on
    aws_faults.heal()
    if step == "consent":
        assert journey.show_consent().status_code == 200
        assert journey.decide().status_code == 303
        assert tables.statuses() == ["at_portal"]
    elif step == "decision":
        assert journey.decide().status_code == 303
        assert tables.statuses() == ["at_portal"]
    else:
        answered = journey.callback()
        assert answered.status_code == 303
        assert "code" in location_query(answered)
        assert tables.statuses() == ["retrieving"]
    assert_consistent(tables)


@pytest.mark.parametrize(
    ("fault", "times"),
    [
        (THROUGHPUT_EXCEEDED, MAX_ATTEMPTS),  # every attempt botocore makes
        (cancelled("None", "ThrottlingError", "None", "None"), 1),  # not retried by botocore
    ],
    ids=["throughput-exceeded", "cancelled-by-throttling"],
)
def test_a_callback_whose_retrieval_cannot_be_stored_ends_the_flow_failed_and_tells_the_partner(
    journey: Journey, clock: ShiftedClock, aws_faults: AwsFaults, tables: Tables, fault: AwsFault, times: int
) -> None:
    # GIVEN the portal authorised and started the retrieval, but the transaction that records it
    # fails (the store takes the next write again)
    to_portal(journey)
    aws_faults.fail("dynamodb.TransactWriteItems", fault, times=times)
    # WHEN the resident comes back from the portal
    answered = journey.callback()
    # THEN the partner is told to try again later, and the flow failed with its audit record,
    # rather than waiting at the portal for a callback that can never come again
    assert answered.status_code == 303
    query = location_query(answered)
    assert query["error"] == "temporarily_unavailable"
    assert query["state"] == journey.state
    assert set(query) == {"error", "error_description", "state", "iss"}
    (flow,) = tables.flows()
    assert (flow["status"], flow["failure_reason"]) == ("failed", "dynamodb.unavailable")
    assert tables.audit_events(flow["flow_id"])[-1] == "portal_failed"
    assert_consistent(tables)
    # AND the partner's retry with a new flow is delivered
    journey.sandbox.portal.reset()
    token = redeemed(journey)
    assert run_due(journey) == {"ready": 1}
    assert pick_up(journey, token).status_code == 200
    assert tables.statuses() == ["failed", "picked_up"]
    assert_consistent(tables)


@pytest.mark.parametrize(("fault", "attempts"), [(KMS_DISABLED, 1), (KMS_INTERNAL, MAX_ATTEMPTS)])
def test_a_portal_token_kms_cannot_encrypt_fails_the_flow_and_tells_the_partner(
    journey: Journey,
    clock: ShiftedClock,
    aws_faults: AwsFaults,
    tables: Tables,
    fault: AwsFault,
    attempts: int,
) -> None:
    # GIVEN the portal authorised, but KMS cannot make the day's token key to encrypt its token
    # for storage (the first callback of the day in the stage makes it)
    to_portal(journey)
    aws_faults.fail("kms.GenerateDataKey", fault)
    # WHEN the resident comes back from the portal
    redirect = location_query(journey.callback())
    # THEN the token is never stored in the clear: the flow failed with its record, the partner
    # is told to try again later
    assert aws_faults.attempts["kms.GenerateDataKey"] == attempts
    assert redirect["error"] == "temporarily_unavailable"
    (flow,) = tables.flows()
    assert (flow["status"], flow["failure_reason"], flow["portal_token_ciphertext"]) == (
        "failed",
        "kms.unavailable",
        None,
    )
    assert flow["code_hash"] is None  # no code was issued (codes live in their flow's item)
    assert_consistent(tables)


def test_the_jwks_is_a_503_problem_while_kms_cannot_give_the_public_key_and_served_after(
    journey: Journey, clock: ShiftedClock, aws_faults: AwsFaults
) -> None:
    # GIVEN KMS fails GetPublicKey on every attempt
    aws_faults.fail("kms.GetPublicKey", KMS_INTERNAL)
    # WHEN a partner fetches the JWKS
    refused = journey.client.http.get("/.well-known/jwks.json")
    # THEN it is told to come back, with a problem that names KMS and nothing else
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    problem = problem_of(refused)
    assert (problem["type"], problem["check"]) == ("urn:myna-relay:problem:dependency-unavailable", "kms")
    assert aws_faults.attempts["kms.GetPublicKey"] == MAX_ATTEMPTS
    # AND the key is served once KMS is back (the failure was not cached)
    aws_faults.heal()
    served = journey.client.http.get("/.well-known/jwks.json")
    assert served.status_code == 200
    assert [key["alg"] for key in json.loads(served.body)["keys"]] == ["ES256"]


@pytest.mark.parametrize(
    "fault",
    [
        THROUGHPUT_EXCEEDED,
        # A cancelled transaction is a lost race only when a condition failed; throttling or a
        # conflicting transaction in flight cancels it as well, and must not count as a replay.
        # one reason per item: the assertion's and the proof's jti, the code, the token, the flow
        cancelled("None", "None", "None", "None", "ThrottlingError"),
        cancelled("TransactionConflict", "None", "None", "None", "None"),
    ],
    ids=["throughput-exceeded", "cancelled-by-throttling", "cancelled-by-conflict"],
)
def test_a_token_request_the_store_cannot_write_is_temporarily_unavailable_and_the_code_still_works(
    journey: Journey, clock: ShiftedClock, aws_faults: AwsFaults, tables: Tables, fault: AwsFault
) -> None:
    # GIVEN the partner holds a fresh code
    to_portal(journey)
    code = location_query(journey.callback())["code"]
    before = tables.snapshot()
    # WHEN the token transaction fails on every attempt
    aws_faults.fail("dynamodb.TransactWriteItems", fault)
    refused = journey.redeem(code)
    # THEN the partner is told to retry, and neither the code nor the flow changed
    assert_temporarily_unavailable(refused)
    assert without_replay_records(tables.snapshot()) == without_replay_records(before)
    # AND its retry with the same code gets the token, and the flow is delivered
    aws_faults.heal()
    issued = journey.redeem(code)
    assert issued.status_code == 200, issued.body
    assert run_due(journey) == {"ready": 1}
    assert pick_up(journey, json.loads(issued.body)["access_token"]).status_code == 200
    assert tables.statuses() == ["picked_up"]
    assert_consistent(tables)


# -- a write applied, its answer lost: botocore's retry must not read its own write as a replay --


@pytest.mark.parametrize("step", ["par", "token", "callback", "pickup"])
def test_a_single_use_write_whose_answer_was_lost_is_not_mistaken_for_a_replay(
    journey: Journey, clock: ShiftedClock, aws_faults: AwsFaults, tables: Tables, step: str
) -> None:
    # GIVEN the step's single-use write is applied, but its answer is lost once (a 500, which
    # DynamoDB documents as "may have succeeded"), so botocore sends it again: a transaction with
    # the same ClientRequestToken (DynamoDB answers it with the first attempt's success), the
    # callback's update with a marker that tells the retry its own write
    operations = {
        "par": "dynamodb.TransactWriteItems",  # the client assertion's jti, the flow, its request_uri
        "token": "dynamodb.TransactWriteItems",  # both jtis, the code used up, the token
        "callback": "dynamodb.UpdateItem",  # the portal state, used up
        "pickup": "dynamodb.TransactWriteItems",  # the DPoP proof's jti, the delivery handed over
    }
    if step == "par":
        aws_faults.lose_answers(operations[step])
    assert journey.push().status_code == 201
    assert journey.show_consent().status_code == 200
    assert journey.decide().status_code == 303
    journey.at_portal("salaried")
    if step == "callback":
        aws_faults.lose_answers(operations[step])
    answered = journey.callback()
    # WHEN the flow goes on
    assert answered.status_code == 303, answered.body
    if step == "token":
        aws_faults.lose_answers(operations[step])
    issued = journey.redeem(location_query(answered)["code"])
    assert issued.status_code == 200, issued.body
    assert run_due(journey) == {"ready": 1}
    if step == "pickup":
        aws_faults.lose_answers(operations[step])
    picked = pick_up(journey, json.loads(issued.body)["access_token"])
    # THEN the retry recognised its own write: the step succeeded and the flow was delivered
    assert picked.status_code == 200, picked.body
    assert aws_faults.injected[operations[step]] == 1
    assert aws_faults.attempts[operations[step]] >= 2  # the lost attempt and botocore's retry
    assert tables.statuses() == ["picked_up"]
    assert_consistent(tables)


def test_a_jti_put_of_its_own_whose_answer_was_lost_is_not_mistaken_for_a_replay(
    journey: Journey, clock: ShiftedClock, aws_faults: AwsFaults, tables: Tables
) -> None:
    # GIVEN a flow the portal is still working on, so that a pickup's proof is remembered by a put
    # of its own (no transaction follows), and that put's answer is lost once
    token = redeemed(journey)
    aws_faults.lose_answers("dynamodb.PutItem")
    # WHEN the partner asks for its delivery
    pending = pick_up(journey, token)
    # THEN botocore's retry met the put's own marker: the partner is told to come back, not refused
    assert pending.status_code == 202, pending.body
    assert (aws_faults.injected["dynamodb.PutItem"], aws_faults.attempts["dynamodb.PutItem"]) == (1, 2)
    # AND the delivery is picked up once sealed
    assert run_due(journey) == {"ready": 1}
    assert pick_up(journey, token).status_code == 200
    assert tables.statuses() == ["picked_up"]
    assert_consistent(tables)


@pytest.mark.parametrize(
    ("operation", "fault", "outcome"),
    [
        ("dynamodb.Query", DYNAMODB_INTERNAL, None),  # the due index
        ("dynamodb.GetItem", THROUGHPUT_EXCEEDED, {"flow.dependency-unavailable": 1}),  # the flow
        # the day's token key, unwrapped by the scheduled function's own container
        ("kms.Decrypt", KMS_KEY_UNAVAILABLE, {"kms.unavailable": 1}),
        ("kms.Decrypt", KMS_DISABLED, {"kms.unavailable": 1}),
        ("kms.Sign", KMS_THROTTLED, {"flow.dependency-unavailable": 1}),  # the sealed payload's signature
        (
            "dynamodb.TransactWriteItems",
            THROUGHPUT_EXCEEDED,
            {"flow.dependency-unavailable": 1},
        ),  # delivery + records + webhook
        (
            "dynamodb.TransactWriteItems",
            cancelled("ConditionalCheckFailed", "None", "None", "None"),
            {"raced": 1},
        ),
    ],
    ids=[
        "query",
        "get-flow",
        "decrypt-unavailable",
        "decrypt-disabled",
        "sign",
        "seal-transaction",
        "seal-raced",
    ],
)
def test_a_poll_that_meets_an_aws_fault_leaves_the_flow_due_and_a_later_run_delivers(
    journey: Journey,
    clock: ShiftedClock,
    aws_faults: AwsFaults,
    tables: Tables,
    operation: str,
    fault: AwsFault,
    outcome: dict[str, int] | None,
) -> None:
    # GIVEN a retrieving flow whose result is ready at the portal
    token = redeemed(journey)
    if operation == "kms.Decrypt":
        another_container_runs(journey)
    # WHEN the scheduled run meets the fault on every attempt
    aws_faults.fail(operation, fault)
    if outcome is None:
        # without the due index the run fails as a whole (Lambda reports it; the next starts afresh)
        with pytest.raises(DependencyUnavailable):
            run_due(journey)
    else:
        assert run_due(journey) == outcome
    # THEN nothing was delivered, the flow is still due, and its records are intact
    assert tables.statuses() == ["retrieving"]
    assert tables.state_items("DELIVERY#") == []
    assert_consistent(tables)
    # AND once the fault is gone a later run delivers
    aws_faults.heal()
    clock.advance(seconds=11)
    assert run_due(journey) == {"ready": 1}
    assert pick_up(journey, token).status_code == 200
    assert tables.statuses() == ["picked_up"]
    assert_consistent(tables)


def test_a_portal_token_kms_cannot_decrypt_until_the_deadline_fails_the_flow(
    journey: Journey, clock: ShiftedClock, aws_faults: AwsFaults, tables: Tables
) -> None:
    # GIVEN KMS cannot unwrap the day's token key (to decrypt the portal token), for good
    token = redeemed(journey)
    another_container_runs(journey)
    aws_faults.fail("kms.Decrypt", KMS_INTERNAL)
    # WHEN the scheduler keeps trying until the retrieval deadline
    assert run_due(journey) == {"kms.unavailable": 1}
    clock.advance(minutes=10)
    assert run_due(journey) == {"failed:retrieval.deadline": 1}
    # THEN the flow failed with its reason and record, and the partner's pickup is gone
    gone = pick_up(journey, token)
    assert gone.status_code == 410
    assert problem_of(gone)["check"] == "delivery.failed"
    assert tables.statuses() == ["failed"]
    assert_consistent(tables)


@pytest.mark.parametrize(
    ("operation", "fault"),
    [
        ("dynamodb.BatchGetItem", DYNAMODB_INTERNAL),  # the flow (holding the token) and the delivery
        # the DPoP proof's jti + delete + "provided" record
        ("dynamodb.TransactWriteItems", THROUGHPUT_EXCEEDED),
        ("dynamodb.TransactWriteItems", cancelled("None", "None", "ThrottlingError", "None")),
    ],
    ids=["get", "pickup-transaction", "pickup-cancelled-by-throttling"],
)
def test_a_pickup_the_store_cannot_complete_is_a_503_problem_and_the_delivery_waits(
    journey: Journey,
    clock: ShiftedClock,
    aws_faults: AwsFaults,
    tables: Tables,
    operation: str,
    fault: AwsFault,
) -> None:
    # GIVEN a sealed delivery
    token = redeemed(journey)
    assert run_due(journey) == {"ready": 1}
    before = tables.snapshot()
    # WHEN the partner picks it up while the store fails on every attempt
    aws_faults.fail(operation, fault)
    refused = pick_up(journey, token)
    # THEN it is told to retry (a problem, no stack trace), and the delivery is still there
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    problem = problem_of(refused)
    assert problem["type"] == "urn:myna-relay:problem:dependency-unavailable"
    assert problem["check"] == "dynamodb"
    assert "Traceback" not in refused.body.decode()
    assert without_replay_records(tables.snapshot()) == without_replay_records(before)
    # AND its retry gets the payload, once
    aws_faults.heal()
    assert pick_up(journey, token).status_code == 200
    assert pick_up(journey, token).status_code == 410
    assert tables.statuses() == ["picked_up"]
    assert_consistent(tables)


def test_an_expiry_sweep_the_store_cannot_write_expires_the_delivery_on_the_next_run(
    journey: Journey, clock: ShiftedClock, aws_faults: AwsFaults, tables: Tables
) -> None:
    # GIVEN a delivery past its data life, never picked up
    token = redeemed(journey)
    assert run_due(journey) == {"ready": 1}
    clock.advance(minutes=10, seconds=1)
    # WHEN the sweep's transaction fails on every attempt
    aws_faults.fail("dynamodb.TransactWriteItems", THROUGHPUT_EXCEEDED)
    assert run_due(journey) == {"flow.dependency-unavailable": 1}
    # THEN the flow is still ready and due
    assert tables.statuses() == ["ready"]
    assert_consistent(tables)
    # AND the next run expires it, deleting the payload with its record
    aws_faults.heal()
    assert run_due(journey) == {"expired": 1}
    assert pick_up(journey, token).status_code in (401, 410)  # the token's life ends with the data's
    assert tables.statuses() == ["expired"]
    assert tables.state_items("DELIVERY#") == []
    assert_consistent(tables)


@pytest.mark.parametrize(
    ("operation", "fault", "passing", "sent"),
    # Signing the event needs this hour's event key: KMS cannot wrap a new one (the run's first
    # attempt, preparing the keys, fails too and is only logged). The attempt is recorded by PutItem,
    # after the run's first two (this and the next hour's event keys, stored when the run starts).
    [("kms.Encrypt", KMS_INTERNAL, 0, 0), ("dynamodb.PutItem", THROUGHPUT_EXCEEDED, 2, 1)],
    ids=["signing", "recording-the-attempt"],
)
def test_a_webhook_the_service_cannot_sign_or_record_is_sent_again_under_the_same_id(
    journey: Journey,
    clock: ShiftedClock,
    aws_faults: AwsFaults,
    receiver: WebhookReceiver,
    tables: Tables,
    operation: str,
    fault: AwsFault,
    passing: int,
    sent: int,
) -> None:
    # GIVEN a retrieving flow whose result is ready at the portal
    redeemed(journey)
    # WHEN the run that seals it cannot sign the "ready" event, or record that it was sent
    aws_faults.fail(operation, fault, after=passing)
    assert run_due(journey) == {"ready": 1, "webhook.dependency-unavailable": 1}
    assert len(receiver.bodies) == sent
    assert tables.statuses() == ["ready"]
    assert_consistent(tables, webhooks=True)  # the event is in the outbox, still due
    # THEN the next run sends it (again), under the same event id, and settles it
    aws_faults.heal()
    assert run_due(journey) == {"webhook.delivered": 1}
    events = receiver.events()
    assert len(events) == sent + 1
    assert set(events) == {events[0]}
    assert events[0][1] == "delivery.ready"
    assert run_due(journey) == {}
    assert_consistent(tables, webhooks=True)


def test_an_item_whose_dependency_fails_does_not_hold_back_the_other_due_items(
    journey: Journey, clock: ShiftedClock, aws_faults: AwsFaults, tables: Tables
) -> None:
    # GIVEN two retrieving flows whose results are ready at the portal
    first = redeemed(journey)
    second = redeemed(journey)
    # WHEN KMS cannot sign once, for the first item the run seals
    aws_faults.fail("kms.Sign", KMS_THROTTLED, times=4)  # every attempt botocore makes for one call
    outcomes = run_due(journey)
    # THEN the run went on: one flow was delivered, the other is still due
    assert outcomes == {"flow.dependency-unavailable": 1, "ready": 1}
    assert sorted(tables.statuses()) == ["ready", "retrieving"]
    assert_consistent(tables)
    # AND the next run delivers the other, and both are picked up
    clock.advance(seconds=11)
    assert run_due(journey) == {"ready": 1}
    assert pick_up(journey, first).status_code == 200
    assert pick_up(journey, second).status_code == 200
    assert_consistent(tables)
