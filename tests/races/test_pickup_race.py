"""Concurrent pickups of one delivery over real HTTP: exactly one wins (docs/standards.md,
Reliability: "Concurrent pickups of one delivery: exactly one wins")."""

from __future__ import annotations

import functools
import json

import pytest
import requests

from tests.races.harness import (
    DELIVERED,
    HTTP_TIMEOUT_S,
    PARTNERS,
    Stack,
    Tables,
    all_at_once,
    query_of,
    resident_journey,
    warmed_sessions,
)

pytestmark = [pytest.mark.integration, pytest.mark.heavy]

PICKUPS = 50


def test_fifty_concurrent_pickups_of_one_delivery_hand_it_over_exactly_once(
    stack: Stack, tables: Tables
) -> None:
    # GIVEN a delivery sealed and ready for the demo bank, and 50 distinct DPoP proofs for its token
    bank = stack.partner("bank")
    _, purpose, scope = PARTNERS["bank"]
    pending = bank.start(stack.redirect_uri("bank"), purpose, scope)
    delivery = bank.finish(pending, query_of(resident_journey(pending.authorize_url, "salaried")))
    assert delivery.delivery_id is not None
    tables.wait_for_status(delivery.delivery_id, "ready")
    assert tables.delivery_exists(delivery.delivery_id)
    url = f"{stack.api}/v1/self-info"
    proofs = [
        bank.dpop_proof(delivery.dpop_key, "GET", url, access_token=delivery.access_token)
        for _ in range(PICKUPS)
    ]
    assert len(set(proofs)) == PICKUPS

    # WHEN all 50 pickups are released at once, each on its own open connection
    with warmed_sessions(stack, PICKUPS) as sessions:

        def pick_up(session: requests.Session, proof: str) -> requests.Response:
            headers = {"Authorization": f"DPoP {delivery.access_token}", "DPoP": proof}
            return session.get(url, headers=headers, timeout=HTTP_TIMEOUT_S)

        answers = all_at_once(
            [
                functools.partial(pick_up, session, proof)
                for session, proof in zip(sessions, proofs, strict=True)
            ]
        )

    # THEN exactly one answer is the sealed payload, and it opens for the bank
    winners = [answer for answer in answers if answer.status_code == 200]
    assert len(winners) == 1, sorted(answer.status_code for answer in answers)
    assert winners[0].headers["Content-Type"] == "application/jose"
    claims = bank.open(winners[0].text)
    assert (claims["aud"], claims["purpose"]) == ("demo-bank", "loan-screening")
    # AND every other answer is 410 naming the check that refused it
    for loser in (answer for answer in answers if answer.status_code != 200):
        assert loser.status_code == 410, loser.text
        assert loser.headers["Content-Type"] == "application/problem+json"
        problem = json.loads(loser.text)
        assert problem["type"] == "urn:myna-relay:problem:delivery-gone"
        assert problem["check"] == "delivery.picked_up"
    # AND the delivery is gone, the flow is picked up and the audit has one "provided" record
    assert not tables.delivery_exists(delivery.delivery_id)
    flow = tables.flow(delivery.delivery_id)
    assert flow is not None
    assert flow["status"] == "picked_up"
    assert tuple(row.event for row in tables.audit(delivery.delivery_id)) == DELIVERED
