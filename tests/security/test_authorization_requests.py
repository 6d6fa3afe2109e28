"""Attacks on the authorization request and response: redirect near-misses written with Unicode
and parser tricks, open redirects, mix-up, parameter injection through ``state`` and reuse of a
``request_uri`` (RFC 9700 §2.1 and §4.1-4.4, RFC 9126, RFC 9207, OWASP).

Every refused request leaves the state and audit tables as they were; a defence that works by
ignoring (a ``redirect_uri`` smuggled into the authorization URL) is shown by where the resident
ends up.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.functional.conftest import ISSUER, Journey
from tests.functional.test_authorization_refusals import par_fields, post_decision, post_form
from tests.security.helpers import Tables, assert_error_page, assert_oauth_error

Snapshot = Callable[[], Tables]


def near_miss(uri: str, name: str, threat: str, source: str = "RFC 9700 §4.1.3 / OWASP WSTG-CLNT-04") -> Any:
    return pytest.param(uri, id=name, marks=pytest.mark.attack(source=source, threat=threat))


@pytest.mark.parametrize(
    "redirect_uri",
    [
        near_miss(
            "https://ｂａｎｋ.example/callback",
            "fullwidth-host",
            "fullwidth host letters that NFKC-normalise to the registered host",
        ),
        near_miss(
            "https://bank\u3002example/callback",
            "ideographic-full-stop",
            "ideographic full stop that IDNA maps to a dot",
            "RFC 9700 §4.1.3 / UTS #46",
        ),
        near_miss(
            "https://bank.example\uff0fcallback",
            "fullwidth-solidus",
            "fullwidth solidus in place of the path slash",
        ),
        near_miss(
            "https://bank.example/callback\u202e",
            "right-to-left-override",
            "right-to-left override hiding a suffix",
            "RFC 9700 §4.1.3 / Unicode TR #36",
        ),
        near_miss(
            "https://bank\u200b.example/callback",
            "zero-width-space",
            "zero-width space inside the host",
            "RFC 9700 §4.1.3 / Unicode TR #36",
        ),
        near_miss(
            "https://bank.example./callback", "trailing-dot-host", "fully qualified host with a trailing dot"
        ),
        near_miss(
            "https://attacker.example\\@bank.example/callback",
            "backslash-userinfo",
            "backslash that browsers read as a path and parsers as userinfo",
        ),
        near_miss(
            "https://bank.example/callback%0d%0aLocation:%20https://attacker.example",
            "encoded-crlf",
            "encoded CRLF to split the redirect's Location header",
            "RFC 9700 §4.1.3 / OWASP WSTG-INPV-15",
        ),
    ],
)
def test_a_redirect_uri_near_miss_is_refused_and_stores_nothing(
    journey: Journey, tables: Snapshot, redirect_uri: str
) -> None:
    # GIVEN a partner registered with https://bank.example/callback only
    # WHEN it pushes a request whose redirect_uri only looks the same
    response = journey.push(redirect_uri=redirect_uri)
    # THEN the request is refused and nothing is stored
    assert_oauth_error(response, 400, "invalid_request", "redirect_uri")
    assert tables() == {"RELAY_STATE_TABLE": [], "RELAY_AUDIT_TABLE": []}


@pytest.mark.attack(
    source="RFC 9126 §4 / FAPI 2.0 §5.3.2.2",
    threat="open redirect: a redirect_uri smuggled into the authorization URL beside request_uri",
)
def test_a_redirect_uri_added_to_the_authorization_url_cannot_move_the_redirect(journey: Journey) -> None:
    # GIVEN a pushed request
    assert journey.push().status_code == 201
    # WHEN the authorization URL the resident opens carries the attacker's redirect_uri too
    query = {
        "client_id": journey.partner.client_id,
        "request_uri": journey.request_uri,
        "redirect_uri": "https://attacker.example/steal",
    }
    page = journey.client.http.get(f"/authorize?{urlencode(query)}")
    assert page.status_code == 200
    journey.csrf_cookie = page.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    journey.csrf_token = page.body.decode().split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    # THEN neither the page, its CSP, the portal redirect nor the final redirect names the attacker
    assert "attacker.example" not in page.body.decode()
    assert "attacker.example" not in page.headers["Content-Security-Policy"]
    decision = journey.decide()
    assert decision.status_code == 303
    assert urlsplit(decision.headers["Location"]).netloc == urlsplit(journey.sandbox.app_url).netloc
    journey.at_portal()
    back = journey.callback()
    assert back.status_code == 303
    assert back.headers["Location"].startswith(journey.partner.redirect_uri + "?")


@pytest.mark.attack(
    source="RFC 9207 / RFC 9700 §4.4",
    threat="mix-up: an authorization response that does not say which server issued it",
)
def test_every_authorization_response_names_its_issuer(journey: Journey) -> None:
    issuer = json.loads(journey.client.http.get("/.well-known/oauth-authorization-server").body)["issuer"]
    assert issuer == ISSUER
    # the success response: code, state, iss and nothing else
    assert journey.push().status_code == 201
    assert journey.show_consent().status_code == 200
    assert journey.decide().status_code == 303
    journey.at_portal()
    success = parse_qs(urlsplit(journey.callback().headers["Location"]).query)
    assert set(success) == {"code", "state", "iss"}
    assert (success["state"], success["iss"]) == ([journey.state], [ISSUER])
    # the error response: error, its description, state, iss and nothing else
    cancelled_journey = Journey(
        client=journey.client,
        partner=journey.partner,
        sandbox=journey.sandbox,
        pkce=journey.pkce,
        state="s-2",
    )
    assert cancelled_journey.push().status_code == 201
    assert cancelled_journey.show_consent().status_code == 200
    cancelled = cancelled_journey.decide("cancel")
    assert cancelled.status_code == 303
    error = parse_qs(urlsplit(cancelled.headers["Location"]).query)
    assert error == {
        "error": ["access_denied"],
        "error_description": ["the resident cancelled"],
        "state": ["s-2"],
        "iss": [ISSUER],
    }


@pytest.mark.attack(
    source="RFC 9207 §2.4 / RFC 6749 §4.1.2",
    threat="parameter injection: a state crafted to add a second iss and code to the response",
)
def test_a_state_carrying_parameters_cannot_inject_them_into_the_response(journey: Journey) -> None:
    crafted = "s&iss=https%3A%2F%2Fattacker.example&code=attacker-code&iss=https://attacker.example"
    journey.state = crafted
    assert journey.push().status_code == 201
    assert journey.show_consent().status_code == 200
    assert journey.decide().status_code == 303
    journey.at_portal()
    back = journey.callback()
    assert back.status_code == 303
    query = parse_qs(urlsplit(back.headers["Location"]).query)
    assert set(query) == {"code", "state", "iss"}
    assert query["iss"] == [ISSUER]
    assert query["state"] == [crafted]
    assert len(query["code"]) == 1
    assert query["code"] != ["attacker-code"]
    assert urlsplit(back.headers["Location"]).fragment == ""


@pytest.mark.attack(
    source="RFC 9126 §7.3 / FAPI 2.0 §5.3.2.2",
    threat="request_uri reuse: restarting consent after the resident continued",
)
def test_a_request_uri_cannot_restart_consent_once_used(journey: Journey, tables: Snapshot) -> None:
    assert journey.push().status_code == 201
    assert journey.show_consent().status_code == 200
    old_token, old_cookie = journey.csrf_token, journey.csrf_cookie
    assert journey.decide().status_code == 303
    before = tables()
    again = journey.show_consent()
    assert_error_page(again, 400, "request_uri")
    assert "Set-Cookie" not in again.headers
    assert_error_page(journey.decide(csrf=old_token, cookie=old_cookie), 400, "request_uri")
    assert tables() == before


@pytest.mark.attack(
    source="RFC 9700 §4.11.2 / OWASP WSTG-CLNT-04",
    threat="open redirect: a forged cancel for an unknown request_uri to reach the partner's redirect",
)
def test_a_forged_cancel_for_an_unknown_request_uri_is_an_error_page(
    journey: Journey, tables: Snapshot
) -> None:
    assert journey.push().status_code == 201
    before = tables()
    pair = secrets.token_urlsafe(32)
    forged = {
        "request_uri": "urn:ietf:params:oauth:request_uri:" + secrets.token_urlsafe(32),
        "csrf_token": pair,
        "action": "cancel",
    }
    response = post_decision(journey, forged, pair)
    assert_error_page(response, 400, "request_uri")
    assert tables() == before


@pytest.mark.attack(
    source="RFC 7636 §4.2 / RFC 9700 §2.1.1",
    threat="PKCE downgrade: no method (plain by default) with the verifier itself as challenge",
)
def test_a_pkce_downgrade_to_plain_is_refused(journey: Journey, tables: Snapshot) -> None:
    response = journey.push(code_challenge=journey.pkce.verifier, code_challenge_method=None)
    assert_oauth_error(response, 400, "invalid_request", "code_challenge_method")
    assert tables() == {"RELAY_STATE_TABLE": [], "RELAY_AUDIT_TABLE": []}


# -- parameters: unknown ones are ignored (RFC 6749 §3.1), within bounds, and never repeated ----------


@pytest.mark.attack(
    source="RFC 6749 §3.1 / OWASP WSTG-INPV-04",
    threat="HTTP parameter pollution: an ignored parameter sent twice, one value per parser",
)
def test_an_ignored_parameter_sent_twice_is_refused(journey: Journey, tables: Snapshot) -> None:
    # GIVEN a parameter the relay ignores (RFC 8707 resource) is accepted once
    assert journey.push(resource="https://api.bank.example/").status_code == 201
    before = tables()
    # WHEN it is sent twice, with two values a proxy and the relay might each pick one of
    fields = [
        *par_fields(journey).items(),
        ("resource", "https://a.example/"),
        ("resource", "https://b.example/"),
    ]
    response = post_form(journey, "/par", fields)
    # THEN the request is refused naming it, and nothing is stored
    assert_oauth_error(response, 400, "invalid_request", "resource")
    assert json.loads(response.body)["error_description"] == "resource: parameter repeated"
    assert tables() == before


@pytest.mark.parametrize(
    ("padding", "description"),
    [
        pytest.param(
            [(f"x{n}", "v") for n in range(21)],
            "body: more than 30 parameters",
            id="thirty-one-parameters",
            marks=pytest.mark.attack(
                source="OWASP API4:2023 / RFC 6749 §3.1",
                threat="resource sink: a request padded with parameters the relay ignores",
            ),
        ),
        pytest.param(
            [("x" * 65, "v")],
            "body: a parameter name is longer than 64 characters",
            id="long-parameter-name",
            marks=pytest.mark.attack(
                source="OWASP API4:2023 / RFC 6749 §3.1",
                threat="resource sink: an ignored parameter with an oversized name",
            ),
        ),
    ],
)
def test_ignoring_parameters_is_bounded(
    journey: Journey, tables: Snapshot, padding: list[tuple[str, str]], description: str
) -> None:
    # GIVEN a valid pushed request WHEN it is padded beyond the bounds on what is ignored
    response = post_form(journey, "/par", [*par_fields(journey).items(), *padding])
    # THEN it is refused before anything is read, naming the bound, and nothing is stored
    assert_oauth_error(response, 400, "invalid_request", "body")
    assert json.loads(response.body)["error_description"] == description
    assert tables() == {"RELAY_STATE_TABLE": [], "RELAY_AUDIT_TABLE": []}


@pytest.mark.attack(
    source="OWASP A09:2021 / RFC 6749 §10.3",
    threat="a token pasted into an ignored parameter written to the logs",
)
def test_an_ignored_parameter_is_logged_by_name_never_by_value(
    journey: Journey, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a partner that pastes a secret into a parameter the relay does not read
    secret = "eyJ-leaked-access-token-" + secrets.token_urlsafe(16)
    caplog.clear()
    # WHEN it pushes the request
    assert journey.push(access_token=secret).status_code == 201
    # THEN the request goes on, the parameter's name is logged and its value nowhere
    records = [{**vars(record), "message": record.getMessage()} for record in caplog.records]
    ignored = [record for record in records if record["message"] == "unrecognised parameters ignored"]
    assert [record["ignored_parameters"] for record in ignored] == [["access_token"]]
    assert secret not in json.dumps(records, default=str)


@pytest.mark.attack(
    source="RFC 9101 §6.3 / RFC 9126 §3",
    threat="JAR downgrade: a signed request object ignored while its plain parameters are honoured",
)
def test_a_request_object_is_refused_not_ignored(journey: Journey, tables: Snapshot) -> None:
    # GIVEN a client that signs its request as a request object, beside the plain parameters
    # WHEN it pushes both (we publish request_parameter_supported: false)
    response = journey.push(request="eyJhbGciOiJFUzI1NiJ9.eyJyZWRpcmVjdF91cmkiOiJ4In0.c2ln")
    # THEN it is told request objects are not supported, rather than having them silently dropped
    assert_oauth_error(response, 400, "request_not_supported", "request")
    assert tables() == {"RELAY_STATE_TABLE": [], "RELAY_AUDIT_TABLE": []}


@pytest.mark.attack(
    source="RFC 8414 §2 response_modes_supported / FAPI 2.0 Message Signing §5.4",
    threat="response mode downgrade: a client asking for a signed response (jwt) sent a plain code",
)
def test_a_response_mode_other_than_query_is_refused(journey: Journey, tables: Snapshot) -> None:
    # GIVEN response_mode=query (what the metadata publishes) is accepted
    assert journey.push(response_mode="query").status_code == 201
    before = tables()
    # WHEN a client asks for a JARM response, which the relay cannot give
    response = journey.push(response_mode="jwt")
    # THEN it is refused: the code is never sent in a form the client did not ask for
    assert_oauth_error(response, 400, "invalid_request", "response_mode")
    assert tables() == before
