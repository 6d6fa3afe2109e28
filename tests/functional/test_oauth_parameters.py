"""Request parameters to the letter (RFC 6749 sections 3.1 and 3.2, RFC 9126 section 2.1), and
discovery metadata that says what the endpoints do (RFC 8414).

A parameter an endpoint does not recognise is ignored, not refused, at ``/par``, ``/token``,
``/revoke`` and ``/authorize``; its name is logged, never its value. A parameter sent twice is
refused, known or not, and so is a request of more than 30 parameters or with a name longer than
64 characters (what keeps ignoring them cheap). ``ui_locales`` is honoured: it chooses the
language of the consent page.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest

from chalicelib.adapters.dynamodb_state import flow_document
from chalicelib.domain.datasets import DATASETS
from chalicelib.domain.oauth.client_assertion import ALLOWED_ALGORITHMS as CLIENT_ASSERTION_ALGORITHMS
from chalicelib.domain.oauth.dpop import ALLOWED_ALGORITHMS as DPOP_ALGORITHMS
from chalicelib.domain.oauth.parameters import ui_language
from tests.functional.conftest import ISSUER, Journey, location_query
from tests.functional.test_authorization_flow import only_flow
from tests.functional.test_authorization_refusals import (
    Items,
    assert_error_page,
    assert_oauth_error,
    par_fields,
    post_form,
    stored,
)

__all__ = ["stored"]  # the fixture, imported

# what clients commonly add: OIDC, RFC 8707, RFC 9396, RFC 9449 at PAR (dpop_jkt: not read yet)
UNKNOWN = {
    "nonce": "n-0S6_WzA2Mj",
    "prompt": "select_account",
    "resource": "https://api.bank.example/",
    "acr_values": "urn:mace:incommon:iap:silver",
    "claims": '{"userinfo":{"name":null}}',
    "authorization_details": '[{"type":"x"}]',
    "login_hint": "taro@example.jp",
}


def logged(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """Every log record of the step, with its extra keys (what the JSON logger writes)."""
    records = [{**vars(record), "message": record.getMessage()} for record in caplog.records]
    caplog.clear()
    return records


def assert_ignored_and_logged_by_name(records: list[dict[str, Any]], endpoint: str, names: set[str]) -> None:
    ignored = [record for record in records if record.get("message") == "unrecognised parameters ignored"]
    assert [record["endpoint"] for record in ignored] == [endpoint]
    assert set(ignored[0]["ignored_parameters"]) == names
    text = json.dumps(records, default=str)
    for value in UNKNOWN.values():
        assert json.dumps(value)[1:-1] not in text  # names only, never a value


# -- unknown parameters are ignored ------------------------------------------------------------------


def test_unknown_parameters_are_ignored_at_par_and_the_flow_goes_on(
    journey: Journey, dynamodb_client: Any, resources: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a pushed request carrying parameters the relay does not read
    caplog.clear()
    response = journey.push(**UNKNOWN)
    # THEN it is accepted as if they were absent, and only their names are logged
    assert response.status_code == 201, response.body
    assert_ignored_and_logged_by_name(logged(caplog), "/par", set(UNKNOWN))
    document = json.dumps(only_flow(dynamodb_client, resources["RELAY_STATE_TABLE"]))
    for value in UNKNOWN.values():
        assert value not in document
    # AND the resident goes on to the partner's code as usual
    assert journey.show_consent().status_code == 200
    assert journey.decide().status_code == 303
    journey.at_portal()
    assert "code" in location_query(journey.callback())


def test_unknown_parameters_are_ignored_at_the_token_and_revocation_endpoints(
    journey: Journey, stored: Callable[[], Items], caplog: pytest.LogCaptureFixture
) -> None:
    code = journey.to_partner_code()
    caplog.clear()
    # WHEN the token request carries a scope, a resource and a refresh hint the relay does not read
    issued = journey.redeem(code, scope="local_tax", resource="https://api.bank.example/", nonce="x")
    # THEN the code is redeemed as usual
    assert issued.status_code == 200, issued.body
    assert_ignored_and_logged_by_name(logged(caplog), "/token", {"scope", "resource", "nonce"})
    # AND a revocation with an unknown parameter revokes
    token = json.loads(issued.body)["access_token"]
    fields = {"token": token, "prompt": "none", **journey.partner.authentication(ISSUER)}
    assert post_form(journey, "/revoke", fields).status_code == 200
    # the flow holds no live token any more (its fingerprint lives in the flow's item)
    assert [flow_document(i)["access_token_hash"] for i in stored() if i["pk"]["S"].startswith("FLOW#")] == [
        None
    ]


def test_unknown_parameters_of_the_authorization_url_are_ignored(journey: Journey) -> None:
    journey.push()
    query = {"client_id": journey.partner.client_id, "request_uri": journey.request_uri}
    extra = {"response_type": "code", "scope": "vaccination", "nonce": "n", "ui_locales": "en"}
    page = journey.client.http.get(f"/authorize?{urlencode({**query, **extra})}")
    assert page.status_code == 200, page.body
    assert '<html lang="ja">' in page.body.decode()  # the pushed request decides, not the URL


# -- a parameter sent twice is refused, known or not -------------------------------------------------


def test_a_repeated_unknown_parameter_is_refused_at_par_naming_it(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    fields = [
        *par_fields(journey).items(),
        ("resource", "https://a.example/"),
        ("resource", "https://b.example/"),
    ]
    assert_oauth_error(post_form(journey, "/par", fields), 400, "invalid_request", "resource")
    assert stored() == []


def test_a_repeated_parameter_is_refused_at_the_token_and_revocation_endpoints(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    code = journey.to_partner_code()
    before = stored()
    fields = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": journey.partner.redirect_uri,
        "code_verifier": journey.pkce.verifier,
        **journey.partner.authentication(ISSUER),
    }
    twice = [*fields.items(), ("nonce", "a"), ("nonce", "b")]
    dpop = journey.partner.dpop("POST", f"{ISSUER}/token")
    response = post_form(journey, "/token", twice, DPoP=dpop)
    assert_oauth_error(response, 400, "invalid_request", "nonce")
    assert stored() == before
    token = json.loads(journey.redeem(code).body)["access_token"]
    before = stored()
    revocation = [("token", token), *journey.partner.authentication(ISSUER).items(), ("x", "1"), ("x", "2")]
    assert_oauth_error(post_form(journey, "/revoke", revocation), 400, "invalid_request", "x")
    assert stored() == before


def test_a_repeated_parameter_of_the_authorization_url_is_an_error_page(journey: Journey) -> None:
    journey.push()
    query = urlencode({"client_id": journey.partner.client_id, "request_uri": journey.request_uri})
    response = journey.client.http.get(f"/authorize?{query}&nonce=a&nonce=b")
    assert_error_page(response, 400, "nonce")
    assert "Set-Cookie" not in response.headers


# -- ignoring is bounded ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/par", "/token", "/revoke"])
def test_too_many_parameters_or_a_long_name_are_refused_before_anything_is_read(
    journey: Journey, stored: Callable[[], Items], path: str
) -> None:
    many = [*par_fields(journey).items(), *((f"p{n}", "v") for n in range(21))]  # 31 parameters
    assert_oauth_error(post_form(journey, path, many), 400, "invalid_request", "body")
    long_name = [*par_fields(journey).items(), ("n" * 65, "v")]
    assert_oauth_error(post_form(journey, path, long_name), 400, "invalid_request", "body")
    assert stored() == []


def test_thirty_parameters_are_accepted(journey: Journey) -> None:
    fields = [*par_fields(journey).items(), *((f"p{n}", "v") for n in range(20))]
    assert len(fields) == 30
    assert post_form(journey, "/par", fields).status_code == 201


# -- ui_locales chooses the consent page's language ---------------------------------------------------


@pytest.mark.parametrize(
    ("ui_locales", "accept_language", "lang"),
    [
        pytest.param("en-US ja", None, "en", id="first-supported-en"),
        pytest.param("fr ja", None, "ja", id="first-supported-ja"),
        pytest.param("EN-gb", None, "en", id="case-insensitive"),
        pytest.param("fr de", None, "ja", id="none-supported-default"),
        pytest.param("fr de", "en-GB,en", "en", id="none-supported-accept-language"),
        pytest.param("ja", "en-GB,en", "ja", id="pushed-wins-over-accept-language"),
    ],
)
def test_ui_locales_chooses_the_language_of_the_consent_page(
    journey: Journey, ui_locales: str, accept_language: str | None, lang: str
) -> None:
    # GIVEN a pushed request with ui_locales
    assert journey.push(ui_locales=ui_locales).status_code == 201
    # WHEN the resident opens the authorization URL (no lang of its own)
    query = urlencode({"client_id": journey.partner.client_id, "request_uri": journey.request_uri})
    headers = {"Accept-Language": accept_language} if accept_language else {}
    page = journey.client.http.get(f"/authorize?{query}", headers=headers)
    # THEN the page is in the chosen language, with a switch to the other one
    assert page.status_code == 200, page.body
    body = page.body.decode()
    assert f'<html lang="{lang}">' in body
    assert ("Continue to Mynaportal" in body) is (lang == "en")
    assert ("マイナポータルへ進む" in body) is (lang == "ja")
    other = "ja" if lang == "en" else "en"
    assert f"lang={other}" in body


def test_the_page_switch_still_wins_over_ui_locales(journey: Journey) -> None:
    assert journey.push(ui_locales="en").status_code == 201
    page = journey.show_consent(lang="ja").body.decode()
    assert '<html lang="ja">' in page
    assert 'name="lang" value="ja"' in page  # the decision (and its error pages) stay in Japanese


def test_ui_language_takes_the_first_supported_primary_subtag() -> None:
    assert ui_language("en-US ja") == "en"
    assert ui_language("fr ja") == "ja"
    assert ui_language("fr") is None
    assert ui_language("") is None
    assert ui_language(None) is None
    assert ui_language("english ja") == "ja"  # a tag is matched on its primary subtag, not a prefix


# -- the metadata says what the endpoints do ---------------------------------------------------------


def test_the_metadata_matches_what_the_endpoints_do(journey: Journey, stored: Callable[[], Items]) -> None:
    metadata = json.loads(journey.client.http.get("/.well-known/oauth-authorization-server").body)
    # every endpoint it names answers here
    for name in ("pushed_authorization_request_endpoint", "token_endpoint", "revocation_endpoint"):
        path = metadata[name].removeprefix(ISSUER)
        assert (
            journey.client.http.post(path, body="", headers={"Content-Type": "text/plain"}).status_code == 415
        )
    assert journey.client.http.get(metadata["jwks_uri"].removeprefix(ISSUER)).status_code == 200
    # response types and modes: code, in the query; anything else refused
    assert metadata["response_types_supported"] == ["code"]
    assert_oauth_error(journey.push(response_type="token"), 400, "invalid_request", "response_type")
    assert metadata["response_modes_supported"] == ["query"]
    assert_oauth_error(journey.push(response_mode="jwt"), 400, "invalid_request", "response_mode")
    # PKCE: S256 only
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    plain = journey.push(code_challenge_method="plain", code_challenge=journey.pkce.verifier)
    assert_oauth_error(plain, 400, "invalid_request", "code_challenge_method")
    # no request objects, by value or by reference
    assert metadata["request_parameter_supported"] is False
    assert_oauth_error(journey.push(request="e30.e30.sig"), 400, "request_not_supported", "request")
    assert metadata["request_uri_parameter_supported"] is False
    hosted = urlencode({"client_id": journey.partner.client_id, "request_uri": "https://bank.example/r.jwt"})
    assert_error_page(journey.client.http.get(f"/authorize?{hosted}"), 400, "request_uri")
    # PAR required: no authorization request without a pushed request_uri
    assert metadata["require_pushed_authorization_requests"] is True
    direct = urlencode({"client_id": journey.partner.client_id, "response_type": "code", "state": "s"})
    assert_error_page(journey.client.http.get(f"/authorize?{direct}"), 400, "request_uri")
    assert stored() == []
    # the algorithms and scopes are the ones the code checks (each algorithm is exercised in
    # tests/unit/oauth); a scope is listed only when a portal service is configured for it
    assert metadata["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert metadata["revocation_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert metadata["token_endpoint_auth_signing_alg_values_supported"] == list(CLIENT_ASSERTION_ALGORITHMS)
    assert metadata["revocation_endpoint_auth_signing_alg_values_supported"] == list(
        CLIENT_ASSERTION_ALGORITHMS
    )
    assert metadata["dpop_signing_alg_values_supported"] == list(DPOP_ALGORITHMS)
    assert set(metadata["scopes_supported"]) <= set(DATASETS)
    assert set(metadata["scopes_supported"]) == {"local_tax", "vaccination"}  # as portal_env configures
    # the consent page speaks each advertised locale when asked by ui_locales
    for locale in metadata["ui_locales_supported"]:
        visitor = Journey(
            client=journey.client, partner=journey.partner, sandbox=journey.sandbox, pkce=journey.pkce
        )
        assert visitor.push(ui_locales=locale).status_code == 201
        query = urlencode({"client_id": journey.partner.client_id, "request_uri": visitor.request_uri})
        assert f'<html lang="{locale}">' in journey.client.http.get(f"/authorize?{query}").body.decode()
    # grant types: only authorization_code, and any other is unsupported_grant_type
    assert metadata["grant_types_supported"] == ["authorization_code"]
    refresh = journey.redeem("not-a-code", grant_type="refresh_token", refresh_token="r")
    assert_oauth_error(refresh, 400, "unsupported_grant_type", "grant_type")
    # and the response names its issuer (RFC 9207)
    assert metadata["authorization_response_iss_parameter_supported"] is True
    journey.push()
    journey.show_consent()
    assert location_query(journey.decide("cancel"))["iss"] == metadata["issuer"]
