"""A resident who walks away: the pushed request never opened or never decided, or the portal never
left. Once nothing can move such a flow on (its request_uri or its portal state is dead, and a grace
period for a request still under way is over), the scheduled run ends it ``expired`` with an
``abandoned`` record, so that every flow ends with a record saying how. Nothing is retrieved, and
no webhook is sent: no delivery was ever promised to the partner."""

from __future__ import annotations

import json
from datetime import timedelta

from chalicelib.domain.authorization import ABANDON_GRACE
from tests.fakes import ShiftedClock
from tests.faults.harness import Tables, WebhookReceiver, assert_consistent, run_due, to_portal
from tests.functional.conftest import Journey, location_query

REQUEST_URI_LIFETIME = timedelta(seconds=300)  # settings: request_uri_lifetime_s
PORTAL_STATE_LIFETIME = timedelta(seconds=900)  # settings: portal_state_lifetime_s
# The relay's test clock is real time shifted: the steps' own seconds count too (a loaded machine
# may take several between a step and the next), so "just before" is this many seconds before.
MARGIN_S = 30


def events(tables: Tables) -> list[tuple[str, str]]:
    records = sorted(tables.scan(tables.audit), key=lambda item: item["sk"]["S"])
    documents = [json.loads(item["document"]["S"]) for item in records]
    return [(document["event"], document["outcome"]) for document in documents]


def only_flow(tables: Tables) -> tuple[str, str | None]:
    (flow,) = tables.flows()
    return flow["status"], flow["failure_reason"]


def test_a_pushed_request_nobody_opens_ends_abandoned_after_its_request_uri_is_dead(
    journey: Journey, clock: ShiftedClock, receiver: WebhookReceiver, tables: Tables
) -> None:
    # GIVEN a pushed request the resident never opens
    assert journey.push().status_code == 201
    # WHEN the scheduled run comes while the request_uri could still be used, or its grace lasts
    clock.advance(seconds=(REQUEST_URI_LIFETIME + ABANDON_GRACE).total_seconds() - MARGIN_S)
    assert run_due(journey) == {}
    assert only_flow(tables) == ("created", None)
    # THEN nothing is ended early; once the grace is over the flow ends with its record
    clock.advance(seconds=MARGIN_S + 1)
    assert run_due(journey) == {"abandoned:request_uri.expired": 1}
    assert only_flow(tables) == ("expired", "request_uri.expired")
    assert events(tables) == [("request_pushed", "pushed"), ("abandoned", "request_uri.expired")]
    # AND the partner is sent nothing, the flow is due no more, every invariant holds
    assert receiver.bodies == []
    clock.advance(hours=1)
    assert run_due(journey) == {}
    assert_consistent(tables, webhooks=True)


def test_a_resident_who_never_comes_back_from_the_portal_is_abandoned_after_the_portal_state(
    journey: Journey, clock: ShiftedClock, receiver: WebhookReceiver, tables: Tables
) -> None:
    # GIVEN a resident who read the consent page and went to the portal, and never came back
    to_portal(journey)
    clock.advance(seconds=(PORTAL_STATE_LIFETIME + ABANDON_GRACE).total_seconds() - MARGIN_S)
    assert run_due(journey) == {}
    # WHEN the grace after the portal state's life is over
    clock.advance(seconds=MARGIN_S + 1)
    # THEN the flow ends with its record, and the portal was never asked for anything
    assert run_due(journey) == {"abandoned:portal_state.expired": 1}
    assert only_flow(tables) == ("expired", "portal_state.expired")
    assert [event for event, _ in events(tables)] == [
        "request_pushed",
        "consent_shown",
        "continued",
        "abandoned",
    ]
    assert journey.sandbox.portal.history() == []
    assert receiver.bodies == []
    # AND the resident's late return changes nothing: an error page, no code for the partner
    late = journey.callback()
    assert (late.status_code, "Location" in late.headers) == (400, False)
    assert only_flow(tables) == ("expired", "portal_state.expired")
    assert_consistent(tables, webhooks=True)


def test_a_callback_just_inside_the_portal_states_life_is_not_swept_from_under_it(
    journey: Journey, clock: ShiftedClock, receiver: WebhookReceiver, tables: Tables
) -> None:
    # GIVEN a resident who comes back from the portal shortly before the state dies
    to_portal(journey)
    clock.advance(seconds=PORTAL_STATE_LIFETIME.total_seconds() - MARGIN_S)
    back = journey.callback()
    assert back.status_code == 303
    assert journey.redeem(location_query(back)["code"]).status_code == 200
    # WHEN the scheduled run comes only after the portal state's life and the grace are over
    clock.advance(seconds=ABANDON_GRACE.total_seconds() + MARGIN_S + 1)
    # THEN the flow is retrieving, not abandoned: it is sealed and the partner told
    assert run_due(journey) == {"ready": 1, "webhook.delivered": 1}
    assert only_flow(tables) == ("ready", None)
    assert_consistent(tables, webhooks=True)
