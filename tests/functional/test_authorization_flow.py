"""The whole authorization flow over HTTP: PAR → consent interstitial → sandbox portal → callback →
DPoP-bound token. Relay on the Chalice test client with moto; portal on loopback, mutual TLS."""

from __future__ import annotations

import json
from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from chalicelib.adapters.dynamodb_state import flow_document, flow_key
from tests.functional.conftest import ISSUER, Journey, location_query


def flow_item(dynamodb_client: Any, table: str, flow_id: str) -> dict[str, Any]:
    item = dynamodb_client.get_item(TableName=table, Key=flow_key(flow_id))["Item"]
    return flow_document(item)


def only_flow(dynamodb_client: Any, table: str) -> dict[str, Any]:
    items = dynamodb_client.scan(TableName=table)["Items"]
    flows = [flow_document(item) for item in items if item["pk"]["S"].startswith("FLOW#")]
    assert len(flows) == 1
    return flows[0]


def test_the_whole_flow_ends_in_a_dpop_bound_access_token(
    journey: Journey, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN a partner that pushes a request
    pushed = journey.push()
    assert pushed.status_code == 201
    body = json.loads(pushed.body)
    assert body["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
    assert 0 < body["expires_in"] < 600
    # WHEN the resident reads the interstitial and continues to the portal
    page = journey.show_consent()
    assert page.status_code == 200
    assert "アクメ銀行" in page.body.decode()
    redirect = journey.decide("continue")
    assert redirect.status_code == 303
    portal_query = location_query(redirect)
    assert portal_query["client_id"] == "SP00000001_AA0001"
    assert portal_query["redirect_uri"] == f"{ISSUER}/portal/callback"
    assert portal_query["login_type"] == "0"
    assert portal_query["state"] != journey.state
    # AND signs in at Mynaportal and agrees
    journey.at_portal("salaried")
    back = journey.callback()
    # THEN the resident goes back to the partner with code, state and iss only
    assert back.status_code == 303
    query = location_query(back)
    assert set(query) == {"code", "state", "iss"}
    assert (query["state"], query["iss"]) == (journey.state, ISSUER)
    assert back.headers["Location"].startswith(journey.partner.redirect_uri + "?")
    # AND the flow is retrieving, the portal token kept only encrypted
    flow = only_flow(dynamodb_client, resources["RELAY_STATE_TABLE"])
    assert flow["status"] == "retrieving"
    assert flow["portal_token_ciphertext"]
    assert flow["portal_process"]["process_id"].startswith("PR")
    # AND the partner redeems the code for a DPoP-bound token
    issued = journey.redeem(query["code"])
    assert issued.status_code == 200, issued.body
    token = json.loads(issued.body)
    assert token["token_type"] == "DPoP"
    assert token["scope"] == "local_tax"
    assert 0 < token["expires_in"] <= 20 * 60
    assert issued.headers["Cache-Control"] == "no-store"
    flow = only_flow(dynamodb_client, resources["RELAY_STATE_TABLE"])
    assert flow["dpop_jkt"] == journey.partner.dpop_thumbprint()
    # AND the portal recorded the retrieval it was asked for
    assert [r.outcome for r in journey.sandbox.portal.history()] == ["pending"]


def test_nothing_secret_is_stored_in_the_clear(
    journey: Journey, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    code = journey.to_partner_code()
    token = json.loads(journey.redeem(code).body)["access_token"]
    dump = json.dumps(dynamodb_client.scan(TableName=resources["RELAY_STATE_TABLE"])["Items"])
    for secret in (code, token, journey.request_uri, journey.csrf_token, journey.pkce.verifier):
        assert secret not in dump


def test_metadata_lists_what_partners_need(client: Any, portal_env: None) -> None:
    metadata = json.loads(client.http.get("/.well-known/oauth-authorization-server").body)
    assert metadata["issuer"] == ISSUER
    assert metadata["pushed_authorization_request_endpoint"] == f"{ISSUER}/par"
    assert metadata["require_pushed_authorization_requests"] is True
    assert metadata["authorization_endpoint"] == f"{ISSUER}/authorize"
    assert metadata["token_endpoint"] == f"{ISSUER}/token"
    assert metadata["revocation_endpoint"] == f"{ISSUER}/revoke"
    assert metadata["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert metadata["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert set(metadata["dpop_signing_alg_values_supported"]) == {"ES256", "PS256", "EdDSA"}
    assert set(metadata["scopes_supported"]) == {"local_tax", "vaccination"}


def test_the_resident_cancels_at_the_interstitial(
    journey: Journey, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    journey.push()
    journey.show_consent()
    back = journey.decide("cancel")
    assert back.status_code == 303
    query = location_query(back)
    assert (query["error"], query["state"], query["iss"]) == ("access_denied", journey.state, ISSUER)
    assert only_flow(dynamodb_client, resources["RELAY_STATE_TABLE"])["status"] == "cancelled"


def test_the_interstitial_speaks_english_on_request(journey: Journey) -> None:
    journey.push()
    page = journey.show_consent(lang="en").body.decode()
    assert '<html lang="en">' in page
    assert "Acme Bank" in page
    assert "Mortgage loan screening" in page
    assert "Total income" in page
    assert "10 minutes" in page


def test_the_interstitial_says_who_what_why_how_long_and_once(journey: Journey) -> None:
    journey.push()
    response = journey.show_consent()
    page = response.body.decode()
    assert '<html lang="ja">' in page
    for text in (
        "アクメ銀行",
        "住宅ローンの審査",
        "地方税関係情報",
        "合計所得金額",
        "課税年度",
        "10分",
        "一度だけ",
        "取り消せます",
    ):
        assert text in page
    assert "<script" not in page
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    assert "SameSite=Strict" in response.headers["Set-Cookie"]
    assert "HttpOnly" in response.headers["Set-Cookie"]
    assert 'name="viewport"' in page


def test_portal_errors_reach_the_partner_as_oauth_errors(journey: Journey) -> None:
    journey.push()
    journey.show_consent()
    journey.decide()
    journey.at_portal("expired-certificate")
    query = location_query(journey.callback())
    assert (query["error"], query["state"]) == ("access_denied", journey.state)
    assert "certificate" in query["error_description"]


def test_a_resident_who_refuses_consent_at_the_portal(journey: Journey) -> None:
    journey.push()
    journey.show_consent()
    journey.decide()
    journey.at_portal("salaried", agree=False)
    assert location_query(journey.callback())["error"] == "access_denied"


def test_a_replayed_callback_does_nothing(
    journey: Journey, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    journey.to_partner_code()
    before = only_flow(dynamodb_client, resources["RELAY_STATE_TABLE"])
    again = journey.callback()
    assert again.status_code == 400
    assert "Location" not in again.headers
    assert only_flow(dynamodb_client, resources["RELAY_STATE_TABLE"]) == before


# -- the portal's errors as a working integration observes them (docs/mynaportal.md) ---------------


def _left_for_the_portal(journey: Journey) -> str:
    """PAR, interstitial, continue; the portal state the resident took to the portal."""
    assert journey.push().status_code == 201
    assert journey.show_consent().status_code == 200
    assert journey.decide().status_code == 303
    return location_query_of(journey.portal_url)["state"]


def location_query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@pytest.mark.parametrize(
    ("query", "reason", "described"),
    [
        # observed: the resident's cancel comes as the error word where the code would be
        pytest.param({"code": "access_denied"}, "portal.cancelled", "cancelled", id="code-access_denied"),
        # the OAuth form of the same cancel
        pytest.param({"error": "access_denied"}, "portal.cancelled", "cancelled", id="error-access_denied"),
        pytest.param(
            {"error": "certificate_expired"},
            "portal.certificate_expired",
            "certificate",
            id="error-certificate_expired",
        ),
    ],
)
def test_a_portal_refusal_with_the_state_sends_the_resident_back_with_the_named_outcome(
    journey: Journey,
    dynamodb_client: Any,
    resources: dict[str, str],
    query: dict[str, str],
    reason: str,
    described: str,
) -> None:
    # GIVEN a resident who left for the portal
    state = _left_for_the_portal(journey)
    # WHEN the portal sends them back with its refusal and the state
    back = journey.callback(urlencode({**query, "state": state}))
    # THEN they go back to the partner with error, state and iss (RFC 9207), no token exchange
    assert back.status_code == 303, back.body
    assert back.headers["Location"].startswith(journey.partner.redirect_uri + "?")
    answer = location_query(back)
    assert set(answer) == {"error", "error_description", "state", "iss"}
    assert (answer["error"], answer["state"], answer["iss"]) == ("access_denied", journey.state, ISSUER)
    assert described in answer["error_description"]
    # AND the flow ended with the named reason, its state and binding spent
    flow = only_flow(dynamodb_client, resources["RELAY_STATE_TABLE"])
    assert (flow["status"], flow["failure_reason"]) == ("failed", reason)
    assert flow["portal_state_hash"] is None
    assert flow["browser_binding_hash"] is None
    # AND the portal was never asked for a token
    assert journey.sandbox.portal.history() == []


def test_an_expired_certificate_in_place_of_the_state_finds_the_flow_by_the_browser_binding(
    journey: Journey, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN a resident who left for the portal (the binding cookie names the flow)
    _left_for_the_portal(journey)
    flow_id = only_flow(dynamodb_client, resources["RELAY_STATE_TABLE"])["flow_id"]
    assert journey.portal_cookie.startswith(flow_id + ".")
    # WHEN the portal sends them back with the state replaced by its error text
    back = journey.callback(urlencode({"state": "Certificate expired"}))
    # THEN they go back to the partner with the named outcome and the partner's own state
    assert back.status_code == 303, back.body
    answer = location_query(back)
    assert set(answer) == {"error", "error_description", "state", "iss"}
    assert (answer["error"], answer["state"], answer["iss"]) == ("access_denied", journey.state, ISSUER)
    assert "certificate" in answer["error_description"]
    assert back.headers["Set-Cookie"].startswith("relay_portal=; Path=/portal/callback")
    # AND the flow ended certificate_expired, with its audit record
    flow = only_flow(dynamodb_client, resources["RELAY_STATE_TABLE"])
    assert (flow["status"], flow["failure_reason"]) == ("failed", "portal.certificate_expired")
    audit = dynamodb_client.scan(TableName=resources["RELAY_AUDIT_TABLE"])["Items"]
    outcomes = [json.loads(item["document"]["S"])["outcome"] for item in audit if "document" in item]
    assert "portal.certificate_expired" in outcomes
    # AND the same callback again changes nothing: the flow is no longer at the portal
    again = journey.callback(urlencode({"state": "Certificate expired"}))
    assert again.status_code == 400
    assert "Location" not in again.headers


def test_a_pinned_inquiry_date_is_the_one_the_retrieval_asks_for(
    journey: Journey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a stage that pins the inquiry date, as integrations do for the portal's test environment
    monkeypatch.setenv("RELAY_PORTAL_INQUIRY_DATE", "20260101")
    # WHEN a resident goes through the portal
    journey.to_partner_code()
    # THEN the retrieval the portal started is for that date, not today's
    (process,) = journey.sandbox.portal._processes.values()
    assert process.inquiry_date == date(2026, 1, 1)
