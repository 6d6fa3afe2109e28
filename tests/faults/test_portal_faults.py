"""Every way the sandbox portal misbehaves (each ``Scenario``, and the card faults of its personas)
ends in a retried success or a definite failed state, with every invariant of ``harness`` holding:
no partial delivery, no lost audit record, no stuck flow, no lost webhook, no personal data.

IF001-03 and IF001-04 are never repeated by the relay (a spent code, a started process), so a fault
there fails the flow at once and the partner's retry is a new flow; IF001-06 is a read, retried
within a poll and across polls until the retrieval deadline.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import pytest

from chalicelib.domain.delivery import DeliveryService
from sandbox.scenarios import Scenario
from tests.fakes import ShiftedClock
from tests.faults.conftest import Backoff
from tests.faults.harness import (
    Tables,
    WebhookReceiver,
    assert_consistent,
    pick_up,
    problem_of,
    run_due,
    to_portal,
)
from tests.functional.conftest import Journey, location_query
from tests.partner_helpers import Pkce

DEADLINE_S = 600  # Settings.retrieval_deadline_s


SEALED = {"ready": 1, "webhook.delivered": 1}  # sealed, and the partner told, by the same request


@dataclass(frozen=True)
class Case:
    """A scenario (``times``: how many calls it breaks; None: all), what the partner's redirect
    says, then each step as (seconds both clocks move first, what the portal's completion notices
    due then did, the scheduler run's outcome). A notice polls at once; the notice or run that ends
    the flow also sends the partner's webhook."""

    scenario: Scenario
    times: int | None = None
    callback_error: str | None = None
    # deterministic mode: the result is ready and its notice due at once, so the notice seals
    runs: tuple[tuple[int, dict[str, int], dict[str, int]], ...] = ((0, SEALED, {}),)
    failure: str | None = None  # the flow's failure_reason, if it fails
    portal_backoff: tuple[float, ...] = ()  # the IF001-06 client's sleeps between its attempts


CASES = [
    Case(Scenario.NORMAL),
    # the result takes 4 minutes: pending, backing off, then ready; its notice comes then and seals
    Case(
        Scenario.SLOW_PROVIDER,
        runs=((0, {}, {"pending": 1}), (10, {}, {"pending": 1}), (240, SEALED, {})),
    ),
    # no notice: the scheduled run seals
    Case(Scenario.NEVER_NOTIFIES, runs=((0, {}, SEALED),)),
    Case(Scenario.NOTIFIES_EARLY),
    # /result answers an unknown errorCode until the notice (issue [15]): the notice polls after it
    Case(Scenario.UNKNOWN_ERROR_BEFORE_NOTICE),
    # two notices: the first seals, the second finds the flow ready and does nothing
    Case(Scenario.DUPLICATE_NOTICES),
    Case(Scenario.TOKEN_5XX, 1, "temporarily_unavailable", (), "portal.unavailable"),
    Case(Scenario.TOKEN_TIMEOUT, 1, "temporarily_unavailable", (), "portal.unavailable"),
    Case(Scenario.REQUEST_5XX, 1, "temporarily_unavailable", (), "portal.unavailable"),
    Case(Scenario.REQUEST_TIMEOUT, 1, "temporarily_unavailable", (), "portal.unavailable"),
    # four broken answers: three within the notice's poll, one more in the next run's, then the data
    Case(
        Scenario.RESULT_5XX,
        4,
        # the notice makes one attempt (an API request); the scheduled runs retry as configured
        runs=((0, {"portal.unavailable": 1}, {}), (10, {}, {"portal.unavailable": 1}), (30, {}, SEALED)),
        portal_backoff=(0.5, 1.0),
    ),
    Case(
        Scenario.RESULT_TIMEOUT,
        4,
        # the notice makes one attempt (an API request); the scheduled runs retry as configured
        runs=((0, {"portal.unavailable": 1}, {}), (10, {}, {"portal.unavailable": 1}), (30, {}, SEALED)),
        portal_backoff=(0.5, 1.0),
    ),
    Case(
        Scenario.RESULT_5XX,
        runs=(
            (0, {"portal.unavailable": 1}, {}),
            (DEADLINE_S, {}, {"failed:retrieval.deadline": 1, "webhook.delivered": 1}),
        ),
        failure="retrieval.deadline",
        portal_backoff=(),  # the notice's single attempt; the run at the deadline does not poll
    ),
    Case(
        Scenario.RESULT_TIMEOUT,
        runs=(
            (0, {"portal.unavailable": 1}, {}),
            (DEADLINE_S, {}, {"failed:retrieval.deadline": 1, "webhook.delivered": 1}),
        ),
        failure="retrieval.deadline",
        portal_backoff=(),  # the notice's single attempt; the run at the deadline does not poll
    ),
    Case(
        Scenario.MALFORMED_JSON,
        runs=((0, {"failed:result.json": 1, "webhook.delivered": 1}, {}),),
        failure="result.json",
    ),
    Case(
        Scenario.ERROR_CODE,
        runs=((0, {"failed:portal.error_code.EE0100": 1, "webhook.delivered": 1}, {}),),
        failure="portal.error_code.EE0100",
    ),
    Case(
        Scenario.OVERSIZED_PAYLOAD,
        runs=((0, {"failed:result.size": 1, "webhook.delivered": 1}, {}),),
        failure="result.size",
    ),
]


def case_id(case: Case) -> str:
    return f"{case.scenario.value}-{'always' if case.times is None else f'{case.times}x'}"


def test_the_catalogue_covers_every_scenario_the_sandbox_knows() -> None:
    assert {case.scenario for case in CASES} == set(Scenario)


@pytest.fixture
def notice_outcomes(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, int]]:
    """What each completion notice the relay received did (``DeliveryService.notice``'s outcomes)."""
    recorded: list[dict[str, int]] = []
    notice = DeliveryService.notice

    def recording(self: DeliveryService, process_id: str) -> dict[str, int]:
        outcomes = notice(self, process_id)
        recorded.append(outcomes)
        return outcomes

    monkeypatch.setattr(DeliveryService, "notice", recording)
    return recorded


def post_notice(journey: Journey, header: dict[str, str]) -> tuple[int, Any]:
    """One completion notice to the relay's notice URL; the relay answers every one with its echo."""
    answer = journey.client.http.post(
        "/portal/notice",
        body=json.dumps({"commonHeader": header}),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 200
    assert json.loads(answer.body)["commonHeader"] == {**header, "telegramType": "IFA0302-S01"}
    return answer.status_code, json.loads(answer.body)


def deliver_due_notices(journey: Journey, recorded: list[dict[str, int]]) -> dict[str, int]:
    """What the portal sends to the relay's notice URL (IF001-05), through the sandbox's own sender:
    each due notice once, sent again only if its answer was not the echo. Returns what those
    notices did, summed (``recorded``: the ``notice_outcomes`` fixture)."""
    already = len(recorded)
    portal = journey.sandbox.portal
    portal._send_notice = lambda url, body: post_notice(journey, body["commonHeader"])
    portal.deliver_due_notices()
    summed: Counter[str] = Counter()
    for outcomes in recorded[already:]:
        summed.update(outcomes)
    return dict(summed)


def late_notice(journey: Journey, recorded: list[dict[str, int]]) -> dict[str, int]:
    """The flow's notice sent once more, late (a duplicate); what it did."""
    notice = journey.sandbox.portal.notices()[-1]
    post_notice(
        journey,
        {
            "telegramId": notice.telegram_id,
            "telegramType": "IFA0302-R01",
            "mode": notice.mode,
            "processId": notice.process_id,
            "errorCode": "",
        },
    )
    return recorded[-1]


@pytest.mark.heavy
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_every_portal_fault_ends_delivered_or_definitely_failed_with_every_invariant(
    journey: Journey,
    clock: ShiftedClock,
    backoff: Backoff,
    receiver: WebhookReceiver,
    short_portal_timeouts: None,
    tables: Tables,
    notice_outcomes: list[dict[str, int]],
    case: Case,
) -> None:
    portal = journey.sandbox.portal
    if case.scenario is Scenario.SLOW_PROVIDER:
        portal.timing = replace(portal.timing, slow_result_delay_s=240)  # deterministic mode: 0
    # GIVEN the portal misbehaves as the scenario says
    portal.set_scenario(case.scenario, times=case.times)
    # WHEN the partner starts a flow, the resident consents at the portal and comes back
    to_portal(journey)
    redirect = location_query(journey.callback())
    if case.callback_error is not None:
        # THEN a fault at the callback fails the flow and tells the partner at once
        assert redirect["error"] == case.callback_error
        assert "code" not in redirect
        (flow,) = tables.flows()
        assert (flow["status"], flow["failure_reason"]) == ("failed", case.failure)
        assert_consistent(tables, webhooks=True)
        # AND the partner's retry, a new flow, is delivered once the portal is back
        journey = replace(journey, pkce=Pkce(), state="partner-state-2")
        to_portal(journey)
        redirect = location_query(journey.callback())
        case = Case(Scenario.NORMAL)
    issued = journey.redeem(redirect["code"])
    assert issued.status_code == 200, issued.body
    token = json.loads(issued.body)["access_token"]
    # AND after both clocks moved on, the notices then due and the scheduler run do as expected
    for seconds, noticed, outcome in case.runs:
        clock.advance(seconds=seconds)
        journey.sandbox.clock.advance(seconds)  # the sandbox's ManualClock (deterministic mode)
        assert deliver_due_notices(journey, notice_outcomes) == noticed
        pending = pick_up(journey, token) if "pending" in outcome else None
        assert run_due(journey) == outcome
        if pending is not None:
            assert (pending.status_code, pending.headers["Retry-After"]) == (202, "5")
    assert tuple(backoff.portal) == case.portal_backoff
    # AND the partner gets the payload once, or a definite "failed"
    picked = pick_up(journey, token)
    if case.failure is None:
        assert picked.status_code == 200
        assert picked.headers["Content-Type"] == "application/jose"
    else:
        assert picked.status_code == 410
        assert problem_of(picked)["check"] == "delivery.failed"
        assert tables.flows()[-1]["failure_reason"] == case.failure
    assert tables.statuses()[-1] == ("picked_up" if case.failure is None else "failed")
    # AND the partner heard of it by webhook, once, from the notice or run that ended the flow
    assert [event[1] for event in receiver.events()][-1] == (
        "delivery.ready" if case.failure is None else "delivery.failed"
    )
    assert len(set(receiver.events())) == len(receiver.events())
    assert deliver_due_notices(journey, notice_outcomes) == {}
    if case.scenario is not Scenario.NEVER_NOTIFIES:
        assert late_notice(journey, notice_outcomes) == {}  # a late notice changes nothing
    assert run_due(journey) == {}
    assert_consistent(tables, webhooks=True)


@pytest.mark.parametrize(
    ("persona", "agree", "error", "reason"),
    [
        ("expired-certificate", True, "access_denied", "portal.certificate_expired"),
        ("salaried", False, "access_denied", "portal.cancelled"),
    ],
)
def test_a_card_or_consent_refused_at_the_portal_fails_the_flow_and_tells_the_partner(
    journey: Journey,
    clock: ShiftedClock,
    receiver: WebhookReceiver,
    tables: Tables,
    persona: str,
    agree: bool,
    error: str,
    reason: str,
) -> None:
    # GIVEN the resident's card is refused, or the resident refuses, at the portal
    assert journey.push().status_code == 201
    assert journey.show_consent().status_code == 200
    assert journey.decide().status_code == 303
    journey.at_portal(persona, agree=agree)
    # WHEN the portal sends the resident back
    redirect = location_query(journey.callback())
    # THEN the partner is told, the flow failed with its reason and record, nothing is due
    assert redirect["error"] == error
    assert set(redirect) == {"error", "error_description", "state", "iss"}
    (flow,) = tables.flows()
    assert (flow["status"], flow["failure_reason"]) == ("failed", reason)
    assert run_due(journey) == {}
    assert_consistent(tables, personas=(persona,), webhooks=True)
    # AND a replayed callback changes nothing
    before = tables.snapshot()
    assert journey.callback().status_code == 400
    assert tables.snapshot() == before


def test_a_locked_card_fails_the_flow_and_tells_the_partner(
    journey: Journey, clock: ShiftedClock, tables: Tables
) -> None:
    # GIVEN the resident signs in with a locked card and goes back to the service
    assert journey.push().status_code == 201
    assert journey.show_consent().status_code == 200
    assert journey.decide().status_code == 303
    query = journey.with_locked_card()
    # WHEN the portal's redirect reaches the relay
    redirect = location_query(journey.callback(query))
    # THEN the partner hears "access_denied", and the flow failed with its record
    assert redirect["error"] == "access_denied"
    (flow,) = tables.flows()
    assert (flow["status"], flow["failure_reason"]) == ("failed", "portal.card_locked")
    assert_consistent(tables, personas=("locked-card",))
