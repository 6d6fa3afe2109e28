"""Attacks from the portal's side of the relay: forged or late callbacks and forged completion
notices (docs/standards.md "Toward Mynaportal"; RFC 9700 §4.7; RFC 7493; OWASP API8:2023).

The callback is trusted only through a single-use, unguessable state bound to one flow; the
completion notice carries no authentication at all, so its body is never trusted: at most it
makes the relay poll the portal at once, as the scheduled run would. Refusals change nothing in
the state or audit tables.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest

from chalicelib.adapters.dynamodb_state import flow_document
from tests.fakes import ShiftedClock
from tests.functional.conftest import Journey
from tests.functional.test_authorization_refusals import at_the_portal
from tests.functional.test_delivery import open_sealed, pick_up, redeemed, run_due
from tests.security.helpers import Tables, assert_error_page, assert_problem

Snapshot = Callable[[], Tables]
JSON = {"Content-Type": "application/json"}


def the_flow(tables: Tables) -> dict[str, Any]:
    flows: list[dict[str, Any]] = [
        flow_document(item) for item in tables["RELAY_STATE_TABLE"] if item["pk"]["S"].startswith("FLOW#")
    ]
    (flow,) = flows
    return flow


def notice_header(flow: dict[str, Any], **changes: str) -> dict[str, str]:
    return {
        "telegramId": flow["portal_process"]["telegram_id"],
        "telegramType": "IFA0302-R01",
        "mode": "1",
        "processId": flow["portal_process"]["process_id"],
        "errorCode": "",
        **changes,
    }


@pytest.mark.attack(
    source="RFC 9700 §4.7.1 / RFC 6749 §10.12",
    threat="state confusion: the partner's own state value replayed as the portal's state",
)
def test_a_callback_with_the_partners_state_is_an_error_page(journey: Journey, tables: Snapshot) -> None:
    at_the_portal(journey)
    before = tables()
    response = journey.callback(urlencode({"code": "portal-code", "state": journey.state}))
    assert_error_page(response, 400, "state")
    assert tables() == before
    assert the_flow(tables())["status"] == "at_portal"


@pytest.mark.attack(
    source="RFC 9700 §4.7.1 / RFC 6819 §4.4.1.1",
    threat="a genuine callback held back and delivered after the portal state expired",
)
def test_a_callback_after_the_portal_state_expired_is_an_error_page(
    journey: Journey, clock: ShiftedClock, tables: Snapshot
) -> None:
    at_the_portal(journey)
    journey.at_portal()  # the portal answered; the attacker holds the callback URL
    clock.advance(minutes=16)  # the portal state lives 15 minutes
    before = tables()
    assert_error_page(journey.callback(), 400, "state")
    assert tables() == before


@pytest.mark.attack(
    source="RFC 9700 §4.7.1 / OWASP WSTG-SESS-05",
    threat="CSRF on the redirect URI: an attacker's genuine callback URL opened in a victim's browser",
)
def test_a_genuine_callback_in_another_browser_is_refused_and_the_flow_stays_usable(
    journey: Journey, tables: Snapshot
) -> None:
    # GIVEN an attacker who went through the portal and holds the callback URL of its own flow
    at_the_portal(journey)
    journey.at_portal()
    before = tables()
    # WHEN a victim's browser (no binding cookie, or another one) is made to open it
    for cookie in ("", "another-browsers-binding"):
        response = journey.callback(cookie=cookie)
        # THEN it is an error page naming the check, nobody is sent to the partner, nothing changed
        assert_error_page(response, 400, "browser_binding")
        assert tables() == before
    # AND the browser that left for the portal can still complete the flow
    back = journey.callback()
    assert back.status_code == 303
    assert "code=" in back.headers["Location"]


@pytest.mark.attack(
    source="RFC 9700 §4.7.1 / RFC 6265bis §8.8",
    threat="the binding cookie set without SameSite/HttpOnly or beyond the callback's path",
)
def test_the_binding_cookie_is_httponly_lax_secure_and_scoped_to_the_callback(journey: Journey) -> None:
    assert journey.push().status_code == 201
    assert journey.show_consent().status_code == 200
    decision = journey.decide()
    (binding,) = [c for c in decision.headers["Set-Cookie"] if c.startswith("relay_portal=")]
    attributes = {part.strip().split("=")[0] for part in binding.split(";")[1:]}
    assert {"Path", "HttpOnly", "SameSite", "Max-Age", "Secure"} <= attributes
    assert "Path=/portal/callback" in binding
    assert "SameSite=Lax" in binding  # the portal's redirect back is a cross-site top-level GET
    journey.at_portal()
    back = journey.callback()
    assert back.headers["Set-Cookie"].startswith("relay_portal=; Path=/portal/callback")
    assert "Max-Age=0" in back.headers["Set-Cookie"]


@pytest.mark.attack(
    source="docs/mynaportal.md (callback errors) / RFC 9700 §4.7.1",
    threat="a forged expired-certificate callback (state replaced by the error text) to end another's flow",
)
def test_a_forged_certificate_expired_callback_without_the_browsers_binding_changes_nothing(
    journey: Journey, tables: Snapshot
) -> None:
    # GIVEN a resident at the portal, whose browser holds the binding cookie naming the flow
    at_the_portal(journey)
    flow_id = the_flow(tables())["flow_id"]
    before = tables()
    # WHEN an attacker sends the portal's expired-certificate text in place of the state, from a
    # browser without the binding, with a made-up one, or one naming the flow with a made-up secret
    for cookie in ("", secrets.token_urlsafe(32), f"{flow_id}.{secrets.token_urlsafe(32)}"):
        response = journey.callback(urlencode({"state": "Certificate expired"}), cookie=cookie)
        # THEN an error page naming the check, nobody sent to the partner, nothing changed
        assert_error_page(response, 400, "browser_binding")
        assert tables() == before
    # AND a near-miss of the text is no refusal either: it is an unknown state
    response = journey.callback(urlencode({"state": "certificate expired"}))
    assert_error_page(response, 400, "state")
    assert tables() == before
    # AND the cookie alone can never complete the flow: the resident still finishes with the state
    journey.at_portal()
    back = journey.callback()
    assert back.status_code == 303
    assert "code=" in back.headers["Location"]


def _post_notice(journey: Journey, body: str | bytes, **headers: str) -> Any:
    return journey.client.http.post("/portal/notice", body=body, headers={**JSON, **headers})


@pytest.mark.attack(
    source="RFC 7493 §2.3 / RFC 8259 §4",
    threat="parser differential: a notice naming two processIds through duplicate keys",
)
def test_a_notice_with_duplicate_keys_is_refused_and_changes_nothing(
    journey: Journey, clock: ShiftedClock, tables: Snapshot
) -> None:
    redeemed(journey)
    before = tables()
    header = notice_header(the_flow(before))
    body = json.dumps({"commonHeader": header})[:-2] + ', "processId": "PRFORGED"}}'
    response = _post_notice(journey, body)
    assert_problem(response, 400, "invalid-notice", "body")
    assert tables() == before


@pytest.mark.attack(
    source="OWASP API4:2023 / CWE-674",
    threat="a notice nested 3000 levels deep to exhaust the parser",
)
def test_a_deeply_nested_notice_is_refused_and_changes_nothing(
    journey: Journey, clock: ShiftedClock, tables: Snapshot
) -> None:
    redeemed(journey)
    before = tables()
    header = notice_header(the_flow(before))
    body = json.dumps({"commonHeader": header})[:-1] + ', "x": ' + "[" * 3000 + "]" * 3000 + "}"
    response = _post_notice(journey, body)
    assert_problem(response, 400, "invalid-notice", "body")
    assert tables() == before


@pytest.mark.attack(
    source="OWASP API4:2023", threat="an oversized notice (64 KiB) to the unauthenticated endpoint"
)
def test_an_oversized_notice_is_refused_with_413(
    journey: Journey, clock: ShiftedClock, tables: Snapshot
) -> None:
    redeemed(journey)
    before = tables()
    header = notice_header(the_flow(before), telegramId="T" * 64)
    body = json.dumps({"commonHeader": header, "padding": "x" * (64 * 1024)})
    response = _post_notice(journey, body)
    assert_problem(response, 413, "notice-too-large", "body")
    assert tables() == before


@pytest.mark.attack(
    source="docs/standards.md (notice is a hint) / OWASP API8:2023",
    threat="a forged notice claiming a portal error and pointing at another result URL",
)
def test_a_notice_body_is_never_trusted(journey: Journey, clock: ShiftedClock, tables: Snapshot) -> None:
    # GIVEN a flow whose retrieval is under way
    token, _ = redeemed(journey)
    before = tables()
    # WHEN a forged notice for its real process claims an error and offers another result location
    header = notice_header(the_flow(before), errorCode="EE0100")
    body = {
        "commonHeader": header,
        "resultUrl": "https://attacker.example/result",
        "result": {"total_income": 99999999},
    }
    response = _post_notice(journey, json.dumps(body))
    # THEN the portal gets its echo, and the relay fetched the real result from the portal itself
    # (its configured URL, mutual TLS, the flow's own token) and sealed it: no failure from the
    # notice's errorCode, nothing from its body stored, nothing left for the scheduled run
    assert response.status_code == 200
    assert json.loads(response.body)["commonHeader"]["errorCode"] == ""
    after = tables()
    assert (the_flow(after)["status"], the_flow(after)["failure_reason"]) == ("ready", None)
    for planted in ("99999999", "attacker.example", "EE0100"):
        assert planted not in json.dumps(after, default=bytes.hex)
    assert run_due() == {}
    claims = open_sealed(journey, pick_up(journey, token).body.decode())
    assert [record["total_income"] for record in claims["data"]["records"]] == [3680000]


@pytest.mark.attack(
    source="RFC 9700 §4.7.1 / RFC 6749 §10.10",
    threat="a portal state forged from a real flow's id, in the resident's own browser",
)
def test_a_made_up_state_naming_a_real_flow_is_an_error_page_and_spends_nothing(
    journey: Journey, tables: Snapshot
) -> None:
    # GIVEN a resident back from the portal, and an attacker who knows the flow's id (it leads
    # every secret of the flow) but not the state's random part
    at_the_portal(journey)
    query = journey.at_portal()
    flow_id = query["state"].partition(".")[0]
    before = tables()
    # WHEN the attacker brings a state of its own making for that flow, in the resident's browser
    forged = urlencode({"code": query["code"], "state": f"{flow_id}.{secrets.token_urlsafe(32)}"})
    # THEN it is an error page naming the state, and the real state is not spent
    assert_error_page(journey.callback(forged), 400, "state")
    assert tables() == before
    assert journey.callback().status_code == 303
