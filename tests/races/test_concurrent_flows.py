"""Many complete onboardings at once over real HTTP: every flow ends in a terminal state and its
audit trail is complete, in order and without duplicates (docs/standards.md, Reliability: "nothing
half-written, no audit record lost"; docs/data-model.md for the records each step writes)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from partner_kit import RelayClient
from tests.races.harness import (
    BEFORE_PORTAL,
    DELIVERED,
    RETRIEVAL_STARTED,
    Choice,
    Partner,
    Stack,
    Tables,
    onboarding,
)

pytestmark = [pytest.mark.integration, pytest.mark.heavy]

FLOWS = 200
WORKERS = 48
PICKUP_WAIT_S = 150


@dataclass(frozen=True)
class Plan:
    """One kind of onboarding: who, which resident and choice, and how it must end."""

    partner: Partner
    persona: str
    partner_sees: str
    status: str
    events: tuple[str, ...]
    choice: Choice = "agree"
    failure_reason: str | None = None


INCOME = Plan("bank", "salaried", "delivered:local_tax", "picked_up", DELIVERED)
VACCINATION = Plan("health", "parent-vaccination", "delivered:vaccination", "picked_up", DELIVERED)
# The portal's result answers a provider errorCode for this persona (set on the sandbox per test).
FAILING_PERSONA = "no-data"
CATALOGUE: tuple[Plan, ...] = (
    INCOME,
    VACCINATION,
    Plan("bank", "moved", "delivered:local_tax", "picked_up", DELIVERED),
    Plan("bank", "pensioner", "delivered:local_tax", "picked_up", DELIVERED),
    INCOME,
    VACCINATION,
    Plan(
        "bank",
        "individual-number",
        "delivered:local_tax",
        "picked_up",
        (*RETRIEVAL_STARTED, "result_received", "individual_numbers_removed", "sealed", "picked_up"),
    ),
    Plan("bank", "non-taxable", "delivered:local_tax", "picked_up", DELIVERED),
    INCOME,
    VACCINATION,
    INCOME,
    VACCINATION,
    Plan("bank", "moved", "delivered:local_tax", "picked_up", DELIVERED),
    INCOME,
    VACCINATION,
    Plan(
        "bank",
        "salaried",
        "refused:access_denied",
        "cancelled",
        ("request_pushed", "consent_shown", "cancelled"),
        choice="cancel_here",
        failure_reason="resident.cancelled",
    ),
    Plan(
        "health",
        "parent-vaccination",
        "refused:access_denied",
        "failed",
        (*BEFORE_PORTAL, "portal_failed"),
        choice="cancel_at_portal",
        failure_reason="portal.cancelled",
    ),
    Plan(
        "bank",
        "expired-certificate",
        "refused:access_denied",
        "failed",
        (*BEFORE_PORTAL, "portal_failed"),
        failure_reason="portal.certificate_expired",
    ),
    Plan(
        "bank",
        "locked-card",
        "refused:access_denied",
        "failed",
        (*BEFORE_PORTAL, "portal_failed"),
        failure_reason="portal.card_locked",
    ),
    Plan(
        "bank",
        FAILING_PERSONA,
        "gone:delivery.failed",
        "failed",
        (*RETRIEVAL_STARTED, "failed"),
        failure_reason="portal.error_code.EE0100",
    ),
)


def plan_of(index: int) -> Plan:
    return CATALOGUE[index % len(CATALOGUE)]


def state_of(index: int) -> str:
    """The partner's ``state`` for flow ``index``: how a flow in the table is matched to its plan."""
    return f"race-{index:03d}"


class Partners:
    """One ``RelayClient`` per worker thread and partner (each with its own HTTP session)."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self._local = threading.local()

    def client(self, partner: Partner) -> RelayClient:
        clients: dict[Partner, RelayClient] = self._local.__dict__.setdefault("clients", {})
        if partner not in clients:
            clients[partner] = self._stack.partner(partner)
        return clients[partner]


def onboard(stack: Stack, partners: Partners, index: int) -> str:
    """Flow ``index`` end to end, as its plan says; what the partner saw."""
    plan = plan_of(index)
    return onboarding(
        stack, partners.client(plan.partner), plan.persona, state_of(index), PICKUP_WAIT_S, plan.choice
    )


def test_two_hundred_concurrent_onboardings_all_end_terminal_with_a_complete_audit_trail(
    stack: Stack, tables: Tables
) -> None:
    # GIVEN the stack, and a portal that answers an error for one persona's retrievals
    stack.set_portal_scenario("error-code", FAILING_PERSONA)
    partners = Partners(stack)

    # WHEN 200 onboardings run 48 at a time: income and vaccination, one in four cancelled or refused
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="onboarding") as pool:
        seen = list(pool.map(lambda index: onboard(stack, partners, index), range(FLOWS)))
    elapsed = time.monotonic() - started
    print(f"\n{FLOWS} onboardings, {WORKERS} at a time: {elapsed:.1f} s, {FLOWS / elapsed:.2f} flows/s")

    # THEN every partner saw the outcome its flow was meant to have
    wrong = {
        state_of(i): (plan_of(i).partner_sees, seen[i])
        for i in range(FLOWS)
        if seen[i] != plan_of(i).partner_sees
    }
    assert not wrong, f"{len(wrong)} flows ended otherwise (expected, seen): {dict(list(wrong.items())[:10])}"
    # AND the state table holds exactly these 200 flows, each in its terminal state
    flows = {flow["partner_state"]: flow for flow in tables.flows()}
    assert sorted(flows) == sorted(state_of(i) for i in range(FLOWS))
    ended = {
        state_of(i): (flows[state_of(i)]["status"], flows[state_of(i)].get("failure_reason"))
        for i in range(FLOWS)
    }
    expected_end = {state_of(i): (plan_of(i).status, plan_of(i).failure_reason) for i in range(FLOWS)}
    assert ended == expected_end
    assert not [flow["flow_id"] for flow in flows.values() if tables.delivery_exists(flow["flow_id"])]
    # AND every flow's audit trail has each record its steps write, in order, once
    trails = {state_of(i): tables.audit(flows[state_of(i)]["flow_id"]) for i in range(FLOWS)}
    incomplete = {
        state_of(i): [f"{row.event} {row.sort_key}" for row in trails[state_of(i)]]
        for i in range(FLOWS)
        if tuple(row.event for row in trails[state_of(i)]) != plan_of(i).events
    }
    assert not incomplete, (
        f"{len(incomplete)} trails differ from their plan's: {dict(list(incomplete.items())[:5])}"
    )
    record_ids = Counter(row.record_id for rows in trails.values() for row in rows)
    assert [record_id for record_id, count in record_ids.items() if count > 1] == []
    # AND the audit table holds nothing else: no record of another flow, none twice
    assert len(tables.flows()) == FLOWS, "a flow was created twice for one partner state"
    assert tables.audit_records_outside({flow["flow_id"] for flow in flows.values()}) == []
    assert tables.audit_record_count() == sum(len(plan_of(i).events) for i in range(FLOWS))
