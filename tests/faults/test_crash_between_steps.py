"""An exception between any two steps of the flow (the Lambda dies right after a step completed),
then the world goes on: the partner retries a failed request, or starts over; the resident reloads
or goes back to the partner; the scheduler runs again. Every case ends in a delivery or a definite
state, with every invariant of ``harness`` holding.

The steps are the flow's effectful calls (writes, and calls to the portal, KMS and the partner),
in the order a clean flow makes them (``CLEAN_FLOW``, checked below); a crash "after step k" is
also a crash "before step k+1", so every boundary is covered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from tests.fakes import ShiftedClock
from tests.faults.harness import (
    StepCrash,
    Steps,
    Tables,
    WebhookReceiver,
    assert_consistent,
    pick_up,
    run_due,
)
from tests.functional.conftest import Journey, location_query
from tests.partner_helpers import Pkce


@dataclass
class Story:
    """What the actors saw: each request's step and status (or "crashed"), and what the partner
    finally got."""

    seen: list[tuple[str, int | str]] = field(default_factory=list)
    picked: int = 0  # payloads the partner received


def answered(story: Story, step: str, request: Any, expected: int) -> Any:
    """Send a request; on anything but ``expected`` note it and send it once more, as the partner
    or the resident would (a new proof or assertion is made for the retry)."""
    response = request()
    story.seen.append((step, response.status_code))
    if response.status_code != expected:
        assert b"Traceback" not in response.body
        assert b"StepCrash" not in response.body  # the failure is answered opaquely
        response = request()
        story.seen.append((step, response.status_code))
    return response


def scheduled(story: Story, journey: Journey) -> None:
    """One scheduler run; a crashed run is what Lambda reports, and the next one starts afresh."""
    try:
        run_due(journey)
    except StepCrash:
        story.seen.append(("process_due", "crashed"))


def one_flow(story: Story, journey: Journey, *, pick: bool) -> bool:
    """The partner's and the resident's part of one flow; False when it cannot go on and the
    partner must start over."""
    if answered(story, "par", journey.push, 201).status_code != 201:
        return False
    if answered(story, "consent", journey.show_consent, 200).status_code != 200:
        return False
    if answered(story, "decision", journey.decide, 303).status_code != 303:
        return False
    journey.at_portal("salaried")
    back = answered(story, "callback", journey.callback, 303)
    if back.status_code != 303:
        return False
    code = location_query(back)["code"]
    issued = answered(story, "token", lambda: journey.redeem(code), 200)
    if issued.status_code != 200:
        return False
    token = json.loads(issued.body)["access_token"]
    for _ in range(4):
        scheduled(story, journey)
        if not pick:
            continue
        got = pick_up(journey, token)
        story.seen.append(("pickup", got.status_code))
        if got.status_code == 200:
            story.picked += 1
            return True
        if got.status_code == 410:
            return True
    return True


def live_through(journey: Journey, clock: ShiftedClock, *, pick: bool = True) -> Story:
    """A flow, with the partner starting over once if it must; then time passes beyond every data
    life and every resident's window (the portal state's 15 minutes and the sweep's grace) and the
    scheduler runs (expiry, webhook retries, abandoned flows ended)."""
    story = Story()
    if not one_flow(story, journey, pick=pick):
        assert one_flow(story, replace(journey, pkce=Pkce(), state="partner-state-2"), pick=pick)
    for minutes in (0, 11, 1, 1, 5):
        clock.advance(minutes=minutes)
        scheduled(story, journey)
    return story


# The effectful steps of one clean flow, in order (occurrences numbered per step).
CLEAN_FLOW = [
    # PAR (the resident's pseudonym is random: no KMS call)
    "DynamoStateStore.create#1",  # the assertion's jti + flow + request_uri + "request_pushed"
    # consent page, decision
    "DynamoStateStore.update#1",  # CSRF fingerprint + "consent_shown"
    "KeyringLinkMac.mac#1",  # the resident's receipt link on the consent page
    "DynamoStateStore.update#2",  # request_uri spent (the flow leaves created), portal state + "continued"
    # portal callback
    "DynamoStateStore.consume_portal_state#1",
    "MynaportalClient.exchange_code#1",  # IF001-03
    "MynaportalClient.start_request#1",  # IF001-04
    "KeyringEnvelope.encrypt#1",  # the portal token
    "DynamoStateStore.start_retrieval#1",  # flow (with the code) + process pointer + two records
    # token
    "DynamoStateStore.redeem_code#1",  # the assertion's and the proof's jti + the flow (code spent, token)
    # poll, normalise, seal, store
    "KeyringEnvelope.decrypt#1",
    "MynaportalClient.fetch_result#1",  # IF001-06
    "KmsSigner.sign#1",  # the sealed payload's JWS
    "DynamoStateStore.finish#1",  # delivery + records + webhook outbox
    # webhook (the same run, once the seal is committed), signed by the hour's event key
    "LocalSigner.sign#1",
    "HttpWebhookSender.send#1",
    "DynamoStateStore.webhook_attempted#1",
    # pickup
    "DynamoStateStore.pick_up#1",  # the proof's jti + delivery deleted + "picked_up"
]


# Where each crash leaves the flows (oldest first) and how many payloads the partner got.
#  - a crash before a write commits changes nothing: the actor's retry succeeds;
#  - a crash after a single-use value was spent (request_uri, portal state, code) leaves that flow
#    where it was, and the partner starts over: one abandoned flow beside the delivered one. Left
#    "created" or "at_portal", it is what docs/flow.md calls abandoned by the resident: once its
#    request_uri or portal state is dead (and a grace period over), the scheduled run ends it
#    "expired" with an "abandoned" record;
#  - a flow abandoned after its retrieval started is sealed, then expires unpicked;
#  - a code whose token answer was lost is "replayed" by the partner's retry: revoked (RFC 6749 4.1.2);
#  - a payload whose pickup answer was lost is gone: delivery is at most once.
ABANDONED = (["expired", "picked_up"], 1)
DELIVERED = (["picked_up"], 1)
EXPECTED: dict[str, tuple[list[str], int]] = {
    "DynamoStateStore.create#1": ABANDONED,
    "DynamoStateStore.update#1": DELIVERED,
    "KeyringLinkMac.mac#1": DELIVERED,
    "DynamoStateStore.update#2": ABANDONED,
    "DynamoStateStore.consume_portal_state#1": ABANDONED,
    "MynaportalClient.exchange_code#1": ABANDONED,
    "MynaportalClient.start_request#1": ABANDONED,
    "KeyringEnvelope.encrypt#1": ABANDONED,
    "DynamoStateStore.start_retrieval#1": (["expired", "picked_up"], 1),
    "DynamoStateStore.redeem_code#1": (["revoked", "picked_up"], 1),
    "KeyringEnvelope.decrypt#1": DELIVERED,
    "MynaportalClient.fetch_result#1": DELIVERED,
    "KmsSigner.sign#1": DELIVERED,
    "DynamoStateStore.finish#1": DELIVERED,  # the event stays due: the next run sends it
    "LocalSigner.sign#1": DELIVERED,
    "HttpWebhookSender.send#1": DELIVERED,  # sent again by the next run, under the same id
    "DynamoStateStore.webhook_attempted#1": DELIVERED,
    "DynamoStateStore.pick_up#1": (["picked_up"], 0),
}

# A delivery never picked up: after the "ready" webhook, the expiry sweep and its webhook (sent by
# the run that expires it).
CLEAN_UNCLAIMED_TAIL = [
    "DynamoStateStore.finish#2",  # expired: delivery deleted + "expired" + webhook outbox
    "LocalSigner.sign#2",
    "HttpWebhookSender.send#2",
    "DynamoStateStore.webhook_attempted#2",
]


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> Steps:
    recorder = Steps()
    recorder.install(monkeypatch)
    return recorder


def test_the_step_list_is_what_a_clean_flow_does(
    journey: Journey, clock: ShiftedClock, receiver: WebhookReceiver, steps: Steps, tables: Tables
) -> None:
    story = live_through(journey, clock)
    assert steps.numbered() == CLEAN_FLOW
    assert story.picked == 1
    assert tables.statuses() == ["picked_up"]
    assert_consistent(tables, webhooks=True)


def test_the_unclaimed_step_list_is_what_a_clean_unclaimed_flow_does(
    journey: Journey, clock: ShiftedClock, receiver: WebhookReceiver, steps: Steps, tables: Tables
) -> None:
    live_through(journey, clock, pick=False)
    unclaimed = [step for step in CLEAN_FLOW if "pick_up" not in step]
    assert steps.numbered() == unclaimed + CLEAN_UNCLAIMED_TAIL
    assert tables.statuses() == ["expired"]
    assert_consistent(tables, webhooks=True)


def assert_partner_heard_every_event_once_settled(tables: Tables, receiver: WebhookReceiver) -> None:
    """Every outbox event was delivered; a resend (a crash between sending and recording) carries
    the same id, so the partner can drop it."""
    outbox = {item["pk"]["S"].removeprefix("WEBHOOK#"): item for item in tables.state_items("WEBHOOK#")}
    assert {item["outcome"]["S"] for item in outbox.values()} == {"delivered"}
    received = receiver.events()
    assert {event[0] for event in received} == set(outbox)
    for event_id, kind, delivery_id in received:
        assert (kind, delivery_id) == (outbox[event_id]["type"]["S"], outbox[event_id]["delivery_id"]["S"])


@pytest.mark.heavy
@pytest.mark.parametrize("crash_after", list(EXPECTED))
def test_a_crash_right_after_any_step_ends_delivered_or_in_a_definite_state(
    journey: Journey,
    clock: ShiftedClock,
    receiver: WebhookReceiver,
    steps: Steps,
    tables: Tables,
    crash_after: str,
) -> None:
    # GIVEN the process dies right after this step, once
    steps.crash_after = crash_after
    # WHEN the partner, the resident and the scheduler carry on as they would
    story = live_through(journey, clock)
    # THEN the crash happened, and every flow ended where it should, with every invariant
    assert steps.crashed
    statuses, picked = EXPECTED[crash_after]
    assert (tables.statuses(), story.picked) == (statuses, picked), story.seen
    assert_consistent(tables, webhooks=True)
    assert_partner_heard_every_event_once_settled(tables, receiver)


@pytest.mark.heavy
@pytest.mark.parametrize("crash_after", CLEAN_UNCLAIMED_TAIL)
def test_a_crash_in_the_expiry_sweep_still_expires_the_unclaimed_delivery(
    journey: Journey,
    clock: ShiftedClock,
    receiver: WebhookReceiver,
    steps: Steps,
    tables: Tables,
    crash_after: str,
) -> None:
    # GIVEN the process dies right after this step of the sweep, once
    steps.crash_after = crash_after
    # WHEN the partner never comes and the scheduler keeps running
    live_through(journey, clock, pick=False)
    # THEN the delivery expired with its record and its webhook
    assert steps.crashed
    assert tables.statuses() == ["expired"]
    assert tables.state_items("DELIVERY#") == []
    assert_consistent(tables, webhooks=True)
    assert_partner_heard_every_event_once_settled(tables, receiver)
