"""The portal's completion notice and the scheduled run polling the same flow at the same moment.
The notice now retrieves and seals the delivery itself, so both may fetch the result and try to
seal it: the conditional write on the flow's version keeps the outcome single, whichever comes
first. Exactly one seal, one webhook event sent once, each audit record once; the portal gets its
echo either way. Made deterministic (each interleaving forced), then both released together."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chalicelib import container
from chalicelib.adapters.mynaportal import MynaportalClient
from tests.fakes import ShiftedClock
from tests.faults.harness import Tables, assert_consistent
from tests.functional.conftest import Journey
from tests.functional.test_delivery import WebhookReceiver, notice_for, pick_up, redeemed, run_due
from tests.races.harness import DELIVERED


@pytest.fixture
def receiver(journey: Journey, clock: ShiftedClock) -> Iterator[WebhookReceiver]:
    live = WebhookReceiver()
    container.get_container().partners.update(journey.partner.document(webhook_url=live.url))
    yield live
    live.stop()


@pytest.fixture
def tables(dynamodb_client: Any, resources: dict[str, str]) -> Tables:
    return Tables(
        dynamodb_client,
        resources["RELAY_STATE_TABLE"],
        resources["RELAY_AUDIT_TABLE"],
        resources["RELAY_PARTNERS_TABLE"],
    )


def webhook_events(receiver: WebhookReceiver) -> list[tuple[str, str, str]]:
    """(event id, type, delivery id) of every event the partner received (signatures are checked
    by the functional suite)."""
    found = []
    for body in receiver.bodies:
        payload = body.split(".")[1]
        event = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["event"]
        found.append((event["id"], event["type"], event["delivery_id"]))
    return found


def assert_sealed_once(
    tables: Tables, receiver: WebhookReceiver, flow_id: str, journey: Journey, token: str
) -> None:
    # one delivery, one outbox entry, sent once; the seal's records once each
    assert [flow["status"] for flow in tables.flows()] == ["ready"]
    assert len(tables.state_items("DELIVERY#")) == 1
    assert len(tables.state_items("WEBHOOK#")) == 1
    assert [(kind, delivery) for _, kind, delivery in webhook_events(receiver)] == [
        ("delivery.ready", flow_id)
    ]
    assert_consistent(tables, webhooks=True)
    # nothing is left for a later run, and the partner picks the delivery up once
    assert run_due() == {}
    assert len(receiver.bodies) == 1
    assert pick_up(journey, token).status_code == 200
    assert tuple(tables.audit_events(flow_id)) == DELIVERED


def test_a_scheduled_run_that_seals_while_a_notice_is_under_way_leaves_the_notice_nothing_to_do(
    journey: Journey,
    clock: ShiftedClock,
    receiver: WebhookReceiver,
    tables: Tables,
    resources: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a notice that has read the retrieving flow, and a scheduled run that seals it just then
    token, flow_id = redeemed(journey)
    store = container.get_container().state_store
    read = store.flow_for_process
    runs: list[dict[str, int]] = []

    def sealed_meanwhile(process_id: str, *, now: Any) -> Any:
        found = read(process_id, now=now)
        monkeypatch.setattr(store, "flow_for_process", read)
        runs.append(run_due())
        return found

    monkeypatch.setattr(store, "flow_for_process", sealed_meanwhile)
    outcomes: list[dict[str, int]] = []
    notice = container.get_container().delivery.notice

    def recorded(process_id: str) -> dict[str, int]:
        outcomes.append(notice(process_id))
        return outcomes[-1]

    monkeypatch.setattr(container.get_container().delivery, "notice", recorded)
    # WHEN the notice goes on with the flow it read
    answer = notice_for(journey, tables.client, resources["RELAY_STATE_TABLE"])
    # THEN the portal gets its echo; the run sealed and told the partner, the notice lost the race
    assert answer.status_code == 200
    assert json.loads(answer.body)["commonHeader"]["telegramType"] == "IFA0302-S01"
    assert runs == [{"ready": 1, "webhook.delivered": 1}]
    assert outcomes == [{"raced": 1}]
    assert_sealed_once(tables, receiver, flow_id, journey, token)


def test_a_notice_that_seals_while_a_scheduled_run_is_under_way_leaves_the_run_nothing_to_do(
    journey: Journey,
    clock: ShiftedClock,
    receiver: WebhookReceiver,
    tables: Tables,
    resources: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a scheduled run that has read the due flow, and the portal's notice arriving just then
    token, flow_id = redeemed(journey)
    store = container.get_container().state_store
    read = store.get
    answers: list[Any] = []

    def noticed_meanwhile(wanted: str, *, now: Any) -> Any:
        flow = read(wanted, now=now)
        monkeypatch.setattr(store, "get", read)
        answers.append(notice_for(journey, tables.client, resources["RELAY_STATE_TABLE"]))
        return flow

    monkeypatch.setattr(store, "get", noticed_meanwhile)
    # WHEN the run goes on with the flow it read
    outcome = run_due()
    # THEN the notice sealed and told the partner (its portal got the echo), the run lost the race
    (answer,) = answers
    assert answer.status_code == 200
    assert json.loads(answer.body)["commonHeader"]["telegramType"] == "IFA0302-S01"
    assert outcome == {"raced": 1}
    assert_sealed_once(tables, receiver, flow_id, journey, token)


def test_a_notice_and_a_scheduled_run_fetching_the_result_together_seal_it_once(
    journey: Journey,
    clock: ShiftedClock,
    receiver: WebhookReceiver,
    tables: Tables,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a retrieving flow, and both the notice and the scheduled run held at the portal call
    # until both are there (each has read the flow and will try to seal what it fetched)
    token, flow_id = redeemed(journey)
    (flow,) = tables.flows()
    service = container.get_container().delivery
    gate = threading.Barrier(2, timeout=20)
    fetch = MynaportalClient.fetch_result

    def together(self: MynaportalClient, **kwargs: Any) -> Any:
        gate.wait()
        return fetch(self, **kwargs)

    monkeypatch.setattr(MynaportalClient, "fetch_result", together)
    results: dict[str, dict[str, int]] = {}

    def run(name: str, call: Callable[[], dict[str, int]]) -> None:
        results[name] = call()

    threads = [
        threading.Thread(
            target=run, args=("notice", lambda: service.notice(flow["portal_process"]["process_id"]))
        ),
        threading.Thread(target=run, args=("scheduled", service.process_due)),
    ]
    # WHEN both go on at once
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # THEN exactly one sealed and sent the webhook; the other lost the race and changed nothing
    assert sorted(results) == ["notice", "scheduled"]
    sealed = {"ready": 1, "webhook.delivered": 1}
    assert sorted(results.values(), key=len) == [{"raced": 1}, sealed]
    assert_sealed_once(tables, receiver, flow_id, journey, token)
