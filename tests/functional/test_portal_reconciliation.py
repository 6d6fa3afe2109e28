"""Reconciliation with the portal: the relay's audit log against the sandbox's provision history.

The product promises audit records that mirror Mynaportal's own provision history (情報提供等記録).
Here several complete flows (income for a salaried worker, a resident who moved between two
municipalities, a pensioner, a resident nobody holds data on, and a child's vaccinations) run from
PAR to pickup; then the sandbox's history (what the portal says it provided, to whom, when) is
compared with what the relay recorded: the same retrievals, the same information items and
providing municipalities, and times that agree.

Time: the sandbox runs on a manual clock; the relay's clock follows it with a fixed skew (two
systems never agree to the microsecond), and the partner signs with the relay's time. The clock is
moved between steps by more than the tolerance (the resident reads the consent page, the portal
takes a while to answer, the partner comes later), so a time taken from the wrong step fails.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from chalicelib import container
from chalicelib.domain.audit import AuditEvent, AuditRecord
from sandbox.clock import ManualClock
from sandbox.portal import ProvisionRecord
from tests.functional.conftest import Journey, location_query
from tests.functional.test_delivery import pick_up, run_due
from tests.partner_helpers import Pkce

TOLERANCE = timedelta(seconds=5)
SKEW = timedelta(seconds=2)  # the relay's clock runs this far ahead of the portal's
READING_THE_CONSENT_PAGE = 30  # seconds between PAR and the resident's decision
PORTAL_WORKING = 20  # seconds between the portal's request and the poll that fetches the result
PARTNER_COMES_LATER = 40  # seconds between the result and the pickup
PORTAL_SERVICES = {"local_tax": "SP00000001_AA0001", "vaccination": "SP00000001_AA0002"}
NO_PROVIDER = "該当なし"  # the portal's provider when no municipality holds records

FLOWS = (
    ("salaried", "loan-screening", "local_tax"),
    ("moved", "loan-screening", "local_tax"),
    ("pensioner", "loan-screening", "local_tax"),
    ("no-data", "loan-screening", "local_tax"),
    ("parent-vaccination", "child-vaccination-record", "vaccination"),
)


class RelayClock:
    """The portal's manual clock plus a fixed skew: the relay's view of the same moment."""

    def __init__(self, portal: ManualClock, skew: timedelta) -> None:
        self._portal = portal
        self._skew = skew

    def now(self) -> datetime:
        return self._portal.now() + self._skew

    def timestamp(self) -> float:
        return self.now().timestamp()


@pytest.fixture
def portal_clock(journey: Journey, monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    """The sandbox's clock, installed (with the skew) as the relay's and the partner's."""
    portal = journey.sandbox.clock
    assert isinstance(portal, ManualClock)
    relay = RelayClock(portal, SKEW)
    container.reset()
    monkeypatch.setattr(container, "_container", container.Container(clock=relay))
    journey.partner.clock = relay.timestamp
    return portal


@dataclass(frozen=True)
class RelayRetrieval:
    """One flow's records in the relay's audit log, by the step that matters here."""

    started: AuditRecord
    received: AuditRecord
    picked_up: AuditRecord | None


def complete_flow(journey: Journey, portal: ManualClock, persona: str, purpose: str, scope: str) -> None:
    """PAR to pickup, with the time each step takes."""
    assert journey.push(purpose=purpose, scope=scope).status_code == 201
    portal.advance(READING_THE_CONSENT_PAGE)
    assert journey.show_consent().status_code == 200
    assert journey.decide().status_code == 303
    journey.at_portal(persona)
    callback = journey.callback()
    assert callback.status_code == 303, callback.body
    issued = journey.redeem(location_query(callback)["code"])
    assert issued.status_code == 200, issued.body
    token = json.loads(issued.body)["access_token"]
    portal.advance(PORTAL_WORKING)
    assert run_due() == {"ready": 1}
    portal.advance(PARTNER_COMES_LATER)
    assert pick_up(journey, token).status_code == 200


def relay_records(dynamodb_client: Any, table: str) -> list[AuditRecord]:
    items = dynamodb_client.scan(TableName=table, ConsistentRead=True)["Items"]
    return [
        AuditRecord.model_validate_json(item["document"]["S"])
        for item in items
        if item["pk"]["S"].startswith("FLOW#")
    ]


def relay_retrievals(records: list[AuditRecord]) -> list[RelayRetrieval]:
    """Each flow's retrieval, in the order the retrievals started."""

    def only(interaction_id: str, event: AuditEvent) -> AuditRecord | None:
        found = [r for r in records if r.interaction_id == interaction_id and r.event is event]
        assert len(found) <= 1, f"{event} recorded {len(found)} times in one flow"
        return found[0] if found else None

    started = sorted(
        (r for r in records if r.event is AuditEvent.RETRIEVAL_STARTED), key=lambda r: r.occurred_at
    )
    retrievals = []
    for record in started:
        received = only(record.interaction_id, AuditEvent.RESULT_RECEIVED)
        assert received is not None, "a retrieval without a result_received record"
        retrievals.append(RelayRetrieval(record, received, only(record.interaction_id, AuditEvent.PICKED_UP)))
    return retrievals


def providers_of(record: ProvisionRecord) -> list[str]:
    """The portal's provider field as a list of municipalities (it joins them with 、)."""
    return [] if record.provider == NO_PROVIDER else record.provider.split("、")


def test_the_relay_audit_log_reconciles_with_the_portal_provision_history(
    journey: Journey, portal_clock: ManualClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    """Pairing: every flow here asks for one dataset, so the portal writes exactly one history entry
    per retrieval (one per information item of the service), and the relay exactly one
    ``retrieval_started`` record per flow. The flows run one after another with the clock moving
    between them, so sorting the portal's entries by ``requested_at`` and the relay's retrievals by
    the time they started puts them in the same order; each pair must then also name the same
    information item, so a pairing that went astray (or a missing retrieval) cannot pass."""
    # GIVEN several residents' flows completed through pickup
    for number, (persona, purpose, scope) in enumerate(FLOWS, start=1):
        flow = Journey(
            client=journey.client,
            partner=journey.partner,
            sandbox=journey.sandbox,
            pkce=Pkce(),
            state=f"partner-state-{number}",
        )
        complete_flow(flow, portal_clock, persona, purpose, scope)
    # WHEN the portal's provision history is laid beside the relay's audit log
    history = sorted(journey.sandbox.portal.history(), key=lambda r: (r.requested_at, r.record_id))
    retrievals = relay_retrievals(relay_records(dynamodb_client, resources["RELAY_AUDIT_TABLE"]))
    # THEN there are as many retrievals on each side as flows
    assert len(history) == len(retrievals) == len(FLOWS)
    for (persona, _, scope), portal, relay in zip(FLOWS, history, retrievals, strict=True):
        started, received = relay.started, relay.received
        assert portal.persona_id == persona  # the sandbox's own label: the pairing is the intended one
        # AND each pair names the same information item, asked for by the relay's portal service
        assert started.dataset == received.dataset == scope
        assert received.dataset_name_ja == portal.item
        assert received.dataset_code == portal.item_code
        assert portal.requester_client_id == PORTAL_SERVICES[scope]
        # AND the same providing municipalities
        assert sorted(received.municipalities) == sorted(providers_of(portal))
        # AND the relay started the retrieval when the portal says it was asked
        assert abs(started.occurred_at - portal.requested_at) <= TOLERANCE
        # AND received the result when the portal says it provided it (when it provided anything)
        if portal.outcome == "provided":
            assert portal.provided_at is not None
            assert abs(received.occurred_at - portal.provided_at) <= TOLERANCE
        else:
            assert (portal.outcome, portal.provided_at, received.municipalities) == ("no_data", None, ())
        # AND the relay recorded the hand-over to the partner ("provided") for the delivery
        assert relay.picked_up is not None
        assert relay.picked_up.outcome == "provided"
        assert relay.picked_up.provided_at is not None
        assert relay.picked_up.provided_at >= received.occurred_at
        assert relay.picked_up.requester_id == journey.partner.client_id


def test_a_time_from_the_wrong_step_would_be_caught(
    journey: Journey, portal_clock: ManualClock, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    """The tolerance is narrower than the time between steps, so the comparison above can fail."""
    # GIVEN one completed flow
    complete_flow(journey, portal_clock, "salaried", "loan-screening", "local_tax")
    # WHEN the relay's other records of that flow are compared with the portal's times
    (portal,) = journey.sandbox.portal.history()
    records = relay_records(dynamodb_client, resources["RELAY_AUDIT_TABLE"])
    pushed = next(r for r in records if r.event is AuditEvent.REQUEST_PUSHED)
    picked_up = next(r for r in records if r.event is AuditEvent.PICKED_UP)
    # THEN they fall outside the tolerance: PAR precedes the portal's request, pickup follows provision
    assert portal.provided_at is not None
    assert abs(pushed.occurred_at - portal.requested_at) > TOLERANCE
    assert abs(picked_up.occurred_at - portal.provided_at) > TOLERANCE
