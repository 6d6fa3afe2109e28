"""Concurrent portal callbacks carrying one state over real HTTP: one wins (docs/standards.md,
Toward Mynaportal: "the callback is consumed atomically (a replayed or forged callback does
nothing)"; Reliability: "Concurrent callbacks with one state: one wins")."""

from __future__ import annotations

import functools

import pytest
import requests

from tests.races.harness import (
    DELIVERED,
    HTTP_TIMEOUT_S,
    PARTNERS,
    RETRIEVAL_STARTED,
    Stack,
    Tables,
    all_at_once,
    at_portal,
    loopback_session,
    pick_up_when_ready,
    query_of,
    warmed_sessions,
)

pytestmark = [pytest.mark.integration, pytest.mark.heavy]

CALLBACKS = 20


def test_twenty_concurrent_callbacks_with_one_state_exchange_the_portal_code_once(
    stack: Stack, tables: Tables
) -> None:
    # GIVEN a resident who agreed at the portal: the callback URL (its code and state) not yet followed
    bank = stack.partner("bank")
    _, purpose, scope = PARTNERS["bank"]
    redirect_uri = stack.redirect_uri("bank")
    pending = bank.start(redirect_uri, purpose, scope)
    with loopback_session() as browser:
        callback = at_portal(browser, pending.authorize_url, "salaried", "agree")
        binding = browser.cookies.get("relay_portal")  # the resident's browser binding (RFC 9700 §4.7.1)
    assert binding
    assert callback.startswith(f"{stack.api}/portal/callback?")
    assert {"code", "state"} <= set(query_of(callback))
    (flow,) = tables.flows()
    assert flow["status"] == "at_portal"
    history_before = stack.sandbox_history()

    # WHEN the same callback arrives 20 times at once from that browser, each on its own open connection
    with warmed_sessions(stack, CALLBACKS) as sessions:

        def call_back(session: requests.Session) -> requests.Response:
            return session.get(
                callback,
                headers={"Cookie": f"relay_portal={binding}"},
                allow_redirects=False,
                timeout=HTTP_TIMEOUT_S,
            )

        answers = all_at_once([functools.partial(call_back, session) for session in sessions])

    # THEN exactly one answer sends the resident on to the partner with a code
    winners = [answer for answer in answers if answer.status_code == 303]
    assert len(winners) == 1, sorted(answer.status_code for answer in answers)
    location = winners[0].headers["Location"]
    assert location.startswith(redirect_uri + "?")
    assert set(query_of(location)) == {"code", "state", "iss"}
    assert query_of(location)["state"] == pending.state
    # AND the other 19 are error pages naming the spent state, never a redirect
    for loser in (answer for answer in answers if answer.status_code != 303):
        assert loser.status_code == 400, loser.text
        assert "Location" not in loser.headers
        assert loser.headers["Content-Type"].startswith("text/html")
        assert "(state)" in loser.text
    # AND the portal was asked exactly once: one code exchange, one retrieval started
    new_records = [record for record in stack.sandbox_history() if record not in history_before]
    assert len(new_records) == 1, new_records
    moved = tables.flow(flow["flow_id"])
    assert moved is not None
    assert moved["status"] in ("retrieving", "ready")
    assert new_records[0]["process_id"] == moved["portal_process"]["process_id"]
    # AND the audit so far records one authorisation and one retrieval started
    assert tuple(row.event for row in tables.audit(flow["flow_id"]))[:5] == RETRIEVAL_STARTED
    # AND the winner's code works: the bank redeems it, and the flow's whole trail has each record once
    delivery = bank.finish(pending, query_of(location))
    assert delivery.delivery_id == flow["flow_id"]
    claims = bank.open(pick_up_when_ready(bank, delivery, wait_s=60))
    assert claims["data"]["dataset"] == "local_tax"
    assert tuple(row.event for row in tables.audit(flow["flow_id"])) == DELIVERED
