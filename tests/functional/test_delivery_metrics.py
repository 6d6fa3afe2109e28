"""The scheduled run's metrics, as the CloudWatch alarms read them: how late the poller is
(``poller_lag``) and what became of each webhook attempt (``webhooks_failed`` by outcome,
``webhooks_delivered``). Read from the EMF lines the service prints, as CloudWatch would."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib import container
from tests.fakes import ShiftedClock
from tests.functional.conftest import Journey
from tests.functional.test_delivery import WebhookReceiver, redeemed, run_due


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    unit: str
    dimensions: dict[str, str]


class EmittedMetrics:
    """The EMF lines (namespace ``MynaRelay``) printed to stdout since the last look."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def take(self) -> list[Metric]:
        found: list[Metric] = []
        for line in self._capsys.readouterr().out.splitlines():
            try:
                document = json.loads(line)
            except ValueError:
                continue
            if not isinstance(document, dict) or "_aws" not in document:
                continue  # a log line
            for directive in document["_aws"]["CloudWatchMetrics"]:
                if directive["Namespace"] != "MynaRelay":
                    continue
                dimensions = {key: document[key] for key in directive["Dimensions"][0]}
                for metric in directive["Metrics"]:
                    name = metric["Name"]
                    found.extend(Metric(name, value, metric["Unit"], dimensions) for value in document[name])
        return found


def named(name: str, metrics: list[Metric]) -> list[Metric]:
    return [metric for metric in metrics if metric.name == name]


@pytest.fixture
def metrics(capsys: pytest.CaptureFixture[str]) -> EmittedMetrics:
    return EmittedMetrics(capsys)


def run_scheduled_handler(journey: Journey) -> Any:
    """As EventBridge calls it, every minute."""
    event = journey.client.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={}, resources=[], region="ap-northeast-1"
    )
    return journey.client.lambda_.invoke("process_due", event).payload


def due_at_of_the_flow(dynamodb_client: Any, table: str) -> int:
    (flow,) = [
        item
        for item in dynamodb_client.scan(TableName=table)["Items"]
        if item["pk"]["S"].startswith("FLOW#") and "due_at" in item
    ]
    return int(flow["due_at"]["N"])


def with_webhook(journey: Journey, receiver: WebhookReceiver) -> None:
    container.get_container().partners.update(journey.partner.document(webhook_url=receiver.url))


def test_a_run_with_nothing_due_records_a_poller_lag_of_zero(
    journey: Journey, clock: ShiftedClock, metrics: EmittedMetrics
) -> None:
    # GIVEN no flow and no webhook is due
    metrics.take()
    # WHEN the scheduled handler runs
    outcomes = run_scheduled_handler(journey)
    # THEN it did nothing and recorded, once, a lag of zero with no dimension beyond the service and the stage
    assert outcomes == {}
    assert named("poller_lag", metrics.take()) == [
        Metric("poller_lag", 0.0, "Milliseconds", {"service": "myna-relay", "stage": "test"})
    ]


def test_the_poller_lag_is_how_late_the_most_overdue_item_is_found(
    journey: Journey,
    clock: ShiftedClock,
    dynamodb_client: Any,
    resources: dict[str, str],
    metrics: EmittedMetrics,
) -> None:
    # GIVEN a retrieving flow in the due index
    redeemed(journey)
    due_at = due_at_of_the_flow(dynamodb_client, resources["RELAY_STATE_TABLE"])
    # WHEN the scheduled handler first runs 45 seconds after the flow became due
    clock.advance(seconds=due_at + 45 - clock.now().timestamp())
    metrics.take()
    outcomes = run_scheduled_handler(journey)
    # THEN the run worked the flow and recorded, once, a lag of 45 s (plus the run's own time)
    assert outcomes == {"ready": 1}
    (lag,) = named("poller_lag", metrics.take())
    assert (lag.unit, lag.dimensions) == ("Milliseconds", {"service": "myna-relay", "stage": "test"})
    assert 45_000 <= lag.value < 50_000


def test_a_webhook_the_partner_never_acknowledges_is_counted_as_retries_then_abandoned(
    journey: Journey, clock: ShiftedClock, metrics: EmittedMetrics
) -> None:
    # GIVEN a partner whose webhook receiver always answers 503
    receiver = WebhookReceiver(failures=100)
    try:
        with_webhook(journey, receiver)
        redeemed(journey)
        metrics.take()
        # WHEN the sealing run sends the event and later runs retry it after each backoff
        outcomes = [run_due()]
        for backoff_s in (30, 60, 120, 240):  # five attempts in all, within the data life
            clock.advance(seconds=backoff_s + 1)
            outcomes.append(run_due())
    finally:
        receiver.stop()
    # THEN each failed attempt is counted: four to be retried, the last one abandoned
    assert outcomes == [
        {"ready": 1, "webhook.retry": 1},
        *[{"webhook.retry": 1}] * 3,
        {"webhook.abandoned": 1},
    ]
    emitted = metrics.take()
    assert [(m.value, m.unit, m.dimensions) for m in named("webhooks_failed", emitted)] == [
        *[(1.0, "Count", {"service": "myna-relay", "stage": "test", "outcome": "retry"})] * 4,
        (1.0, "Count", {"service": "myna-relay", "stage": "test", "outcome": "abandoned"}),
    ]
    assert named("webhooks_delivered", emitted) == []


def test_a_webhook_the_partner_acknowledges_is_counted_as_delivered(
    journey: Journey, clock: ShiftedClock, metrics: EmittedMetrics
) -> None:
    # GIVEN a partner whose webhook receiver is up
    receiver = WebhookReceiver()
    try:
        with_webhook(journey, receiver)
        redeemed(journey)
        metrics.take()
        # WHEN the sealing run sends the event
        outcomes = run_due()
    finally:
        receiver.stop()
    # THEN one delivery is counted and no failure
    assert outcomes == {"ready": 1, "webhook.delivered": 1}
    emitted = metrics.take()
    assert named("webhooks_delivered", emitted) == [
        Metric("webhooks_delivered", 1.0, "Count", {"service": "myna-relay", "stage": "test"})
    ]
    assert named("webhooks_failed", emitted) == []
