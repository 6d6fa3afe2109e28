"""Attacks on the HTTP layer itself: header injection and smuggling, parameter pollution, inputs
that are too long, too many, not UTF-8, or that a storage key cannot hold, and the wrong method
for a credential-bearing request (OWASP WSTG-INPV-04/-15, OWASP API4:2023, RFC 6749 §3.2,
FAPI 2.0 §5.2.2 interaction id).

A storage layer refusing a malformed key must not turn into a 503 "try again later": an input no
partner can send is the caller's 4xx. Every refusal leaves the tables as they were.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from urllib.parse import urlencode

import pytest

from tests.functional.conftest import ISSUER, Journey
from tests.functional.test_authorization_refusals import par_fields, post_form
from tests.security.helpers import (
    FORM,
    Tables,
    assert_error_page,
    assert_oauth_error,
    assert_problem,
    assert_resource_refusal,
)

Snapshot = Callable[[], Tables]
EMPTY: Tables = {"RELAY_STATE_TABLE": [], "RELAY_AUDIT_TABLE": []}


@pytest.mark.parametrize(
    "supplied",
    [
        pytest.param(
            f"{uuid.uuid4()}\r\nSet-Cookie: relay_csrf=attacker",
            id="crlf-in-interaction-id",
            marks=pytest.mark.attack(
                source="OWASP WSTG-INPV-15 / FAPI 2.0 §5.2.2",
                threat="response splitting: CRLF and a Set-Cookie in the echoed interaction id",
            ),
        ),
        pytest.param(
            f"{uuid.uuid4()}, {uuid.uuid4()}",
            id="two-interaction-ids",
            marks=pytest.mark.attack(
                source="RFC 9110 §5.3 / FAPI 2.0 §5.2.2",
                threat="two interaction ids, comma-joined as a proxy folds repeated headers",
            ),
        ),
    ],
)
def test_an_injected_interaction_id_is_refused_and_never_echoed(
    journey: Journey, tables: Snapshot, supplied: str
) -> None:
    response = journey.client.http.post(
        "/par",
        body=urlencode(par_fields(journey)),
        headers={"Content-Type": FORM, "x-fapi-interaction-id": supplied},
    )
    assert_problem(response, 400, "invalid-interaction-id", "x-fapi-interaction-id")
    echoed = response.headers["x-fapi-interaction-id"]
    assert str(uuid.UUID(echoed)) == echoed  # a fresh id of our own
    assert echoed not in supplied
    assert "Set-Cookie" not in response.headers
    assert "attacker" not in response.body.decode()
    assert tables() == EMPTY


@pytest.mark.parametrize(
    "client_id",
    [
        pytest.param(
            "",
            id="empty-client-id",
            marks=pytest.mark.attack(
                source="CWE-20 / OWASP API8:2023",
                threat="an empty client_id that the partner store cannot look up (DynamoDB refuses empty keys)",
            ),
        ),
        pytest.param(
            "あ" * 1000,
            id="3000-byte-client-id",
            marks=pytest.mark.attack(
                source="CWE-20 / OWASP API8:2023",
                threat="a client_id longer than a DynamoDB key may be (2048 bytes)",
            ),
        ),
        pytest.param(
            "acme-bank\x00",
            id="nul-terminated-client-id",
            marks=pytest.mark.attack(
                source="CWE-158", threat="a NUL-terminated client_id read as the partner's by C-string code"
            ),
        ),
    ],
)
def test_a_client_id_no_partner_can_have_is_an_error_page_not_an_outage(
    journey: Journey, tables: Snapshot, client_id: str
) -> None:
    # GIVEN a pushed request of the real partner
    assert journey.push().status_code == 201
    before = tables()
    # WHEN the authorization URL names a client id no partner can have
    query = urlencode({"client_id": client_id, "request_uri": journey.request_uri})
    response = journey.client.http.get(f"/authorize?{query}")
    # THEN the resident sees the unknown-client page (not "unavailable"), and nothing changes
    assert_error_page(response, 400, "client_id")
    assert tables() == before


@pytest.mark.attack(
    source="CWE-20 / OWASP API8:2023",
    threat="a multibyte client_id over the key limit, sent to PAR beside a valid assertion",
)
def test_an_oversized_client_id_at_par_is_an_unknown_client(journey: Journey, tables: Snapshot) -> None:
    response = journey.push(client_id="あ" * 700)  # 700 characters, 2100 bytes
    assert_oauth_error(response, 401, "invalid_client", "client_id")
    assert tables() == EMPTY


@pytest.mark.attack(
    source="OWASP WSTG-INPV-04",
    threat="HTTP parameter pollution: the registered redirect_uri followed by the attacker's",
)
def test_a_polluted_redirect_uri_is_refused(journey: Journey, tables: Snapshot) -> None:
    fields = [*par_fields(journey).items(), ("redirect_uri", "https://attacker.example/callback")]
    response = post_form(journey, "/par", fields)
    assert_oauth_error(response, 400, "invalid_request", "redirect_uri")
    assert tables() == EMPTY


@pytest.mark.attack(source="OWASP API4:2023", threat="a 100 KiB URL at the portal callback")
def test_a_very_long_callback_url_is_an_error_page(journey: Journey, tables: Snapshot) -> None:
    assert journey.push().status_code == 201
    before = tables()
    response = journey.client.http.get(f"/portal/callback?{urlencode({'code': 'c', 'state': 's' * 100_000})}")
    assert_error_page(response, 400, "state")
    assert tables() == before


@pytest.mark.attack(source="OWASP API4:2023", threat="an oversized token request body (64 KiB)")
def test_an_oversized_token_request_is_refused_with_413(journey: Journey, tables: Snapshot) -> None:
    code = journey.to_partner_code()
    before = tables()
    response = journey.redeem(code, code_verifier="v" * (64 * 1024))
    assert_oauth_error(response, 413, "invalid_request", "body")
    assert tables() == before


@pytest.mark.attack(source="OWASP API4:2023 / CWE-770", threat="a form with 200 fields (hash flooding)")
def test_a_form_with_too_many_fields_is_refused(journey: Journey, tables: Snapshot) -> None:
    fields = [*par_fields(journey).items(), *((f"f{i}", "x") for i in range(200))]
    response = post_form(journey, "/par", fields)
    assert_oauth_error(response, 400, "invalid_request", "body")
    assert tables() == EMPTY


@pytest.mark.attack(
    source="CWE-176 / RFC 6749 Appendix B", threat="a form body in UTF-16 read differently by two parsers"
)
def test_a_form_body_that_is_not_utf8_is_refused(journey: Journey, tables: Snapshot) -> None:
    body = urlencode(par_fields(journey)).encode("utf-16")
    response = journey.client.http.post(
        "/par", body=body, headers={"Content-Type": f"{FORM}; charset=utf-16"}
    )
    assert_oauth_error(response, 400, "invalid_request", "body")
    assert tables() == EMPTY


@pytest.mark.attack(
    source="RFC 6749 §3.2 / RFC 9700 §4.3",
    threat="a token request sent as GET, with the code and assertion in the URL",
)
def test_a_token_request_in_the_query_string_is_refused(journey: Journey, tables: Snapshot) -> None:
    code = journey.to_partner_code()
    before = tables()
    query = urlencode(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": journey.partner.redirect_uri,
            "code_verifier": journey.pkce.verifier,
            **journey.partner.authentication(ISSUER),
        }
    )
    response = journey.client.http.get(f"/token?{query}")
    assert response.status_code == 405, response.body
    assert response.headers["Allow"] == "POST"
    assert "access_token" not in response.body.decode()
    assert tables() == before
    assert journey.redeem(code).status_code == 200  # the code was not used up


@pytest.mark.attack(
    source="RFC 9110 §9.3.8 / OWASP WSTG-CONF-06",
    threat="an undeclared method (TRACE) on the token endpoint, probing for cross-site tracing",
)
def test_an_undeclared_method_is_a_405_problem(journey: Journey, tables: Snapshot) -> None:
    before = tables()
    # WHEN a method no route declares reaches a credential-bearing endpoint
    response = journey.client.http.request(
        "TRACE", "/token", headers={"Content-Type": FORM}, body=b"grant_type=authorization_code"
    )
    # THEN it is a 405 problem naming the method and what is allowed, not the framework's own body
    assert_problem(response, 405, "method-not-allowed", "method")
    assert response.headers["Allow"] == "POST"
    assert "grant_type" not in response.body.decode()  # nothing of the request is traced back
    assert tables() == before


@pytest.mark.attack(
    source="RFC 9457 / OWASP WSTG-INFO-02",
    threat="a path no route has, fingerprinting the gateway or framework from its not-found answer",
)
def test_a_path_no_route_has_is_the_services_404_problem(journey: Journey, tables: Snapshot) -> None:
    from chalice.config import Config

    from app import app
    from scripts.chalice_local import ServiceGateway

    before = tables()
    # WHEN an unknown path is probed on the local server, with and without an Authorization header
    # (stock chalice local, like API Gateway, answers 403 "Missing Authentication Token" or echoes it)
    gateway = ServiceGateway(app, Config(chalice_stage="test"))
    for headers in ({}, {"Authorization": "Bearer probe"}):
        answer = gateway.handle_request("GET", "/.env", headers, None)
        # THEN it is the service's own 404 problem, naming the path as the failed check
        assert answer["statusCode"] == 404
        assert answer["headers"]["Content-Type"] == "application/problem+json"
        body = answer["body"]
        assert '"type": "urn:myna-relay:problem:not-found"' in body
        assert '"check": "path"' in body
        assert "Authentication Token" not in body
        assert "probe" not in body
    assert tables() == before


@pytest.mark.attack(
    source="RFC 6750 §3.1 / FAPI 2.0 §5.2.2",
    threat="a pickup with no credential and a malformed interaction id, answered as a 400 that hides the missing credential",
)
def test_a_pickup_without_a_credential_is_a_401_whatever_else_is_wrong(
    journey: Journey, tables: Snapshot
) -> None:
    before = tables()
    # WHEN a pickup carries no Authorization, a malformed interaction id and an unexpected parameter
    response = journey.client.http.get(
        "/v1/self-info?bogus=1", headers={"x-fapi-interaction-id": "0", "DPoP": ""}
    )
    # THEN the missing credential is the answer: 401 with the DPoP challenge (RFC 6750 section 3)
    assert_resource_refusal(response, 401, "invalid_token", "authorization")
    assert response.headers["x-fapi-interaction-id"] != "0"  # the malformed id is never echoed
    assert tables() == before
