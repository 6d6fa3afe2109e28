"""Every refusal of the authorization flow, over HTTP, and proof that a refused request changes nothing.

What a bank's penetration tester will try against PAR, the consent interstitial, the portal callback,
the token and the revocation endpoints (docs/standards.md "Toward partners" / "Toward Mynaportal"),
each answered with its exact contract: the HTTP status, the RFC 6749 ``error`` (or an error page for
browser steps: 400/403 HTML, never a redirect), an ``error_description`` that starts with the failed
check, and a state table that is the same before and after.

Time is moved with the ``relay_clock`` fixture: a ``FixedClock`` set at the real "now" is installed on
the container before the first request builds the services (they take the container's clock when
they are built), then advanced by hand. Partners keep signing with real time, which stays within the
relay's 10 s skew of the frozen clock while a test runs; after the clock is moved, assertions and
proofs are signed with the moved time.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from chalicelib.adapters.dynamodb_partners import DynamoPartnerStore
from chalicelib.adapters.dynamodb_state import flow_document
from chalicelib.container import get_container
from chalicelib.domain.clock import SystemClock
from chalicelib.domain.registry import PartnerRegistry
from tests.fakes import FixedClock
from tests.functional.conftest import ISSUER, Journey, location_query
from tests.functional.test_authorization_flow import only_flow
from tests.partner_helpers import Pkce, TestPartner, hmac_jws, unsigned_jws

TOKEN_URL = f"{ISSUER}/token"
PAR_URL = f"{ISSUER}/par"
FORM = "application/x-www-form-urlencoded"

Items = list[dict[str, Any]]


# -- fixtures and helpers ---------------------------------------------------------------------------


@pytest.fixture
def stored(dynamodb_client: Any, resources: dict[str, str]) -> Callable[[], Items]:
    """A snapshot of the whole state table, in a stable order."""

    def scan() -> Items:
        items = dynamodb_client.scan(TableName=resources["RELAY_STATE_TABLE"])["Items"]
        return sorted(items, key=lambda item: (item["pk"]["S"], item["sk"]["S"]))

    return scan


@pytest.fixture
def flow(dynamodb_client: Any, resources: dict[str, str]) -> Callable[[], dict[str, Any]]:
    """The one flow in the table (its stored document)."""
    return lambda: only_flow(dynamodb_client, resources["RELAY_STATE_TABLE"])


def registry(dynamodb_client: Any, resources: dict[str, str]) -> PartnerRegistry:
    store = DynamoPartnerStore(dynamodb_client, resources["RELAY_PARTNERS_TABLE"], allow_loopback=True)
    return PartnerRegistry(store, SystemClock(), allow_loopback=True)


@pytest.fixture
def other_partner(resources: dict[str, str], dynamodb_client: Any) -> TestPartner:
    """A second registered partner with its own keys and redirect URI."""
    other = TestPartner(
        client_id="other-bank", redirect_uri="https://other.example/callback", kid="other-sig-1"
    )
    registry(dynamodb_client, resources).register(other.document())
    return other


@pytest.fixture
def relay_clock(resources: dict[str, str]) -> FixedClock:
    clock = FixedClock(datetime.now(UTC).replace(microsecond=0))
    get_container().clock = clock  # before the first request: the services take it when built
    return clock


def another_journey(journey: Journey, state: str = "partner-state-2") -> Journey:
    """A second flow of the same partner, in the same relay and sandbox."""
    return Journey(
        client=journey.client, partner=journey.partner, sandbox=journey.sandbox, pkce=Pkce(), state=state
    )


def token_items(items: Items) -> Items:
    """The flows holding a live access token (its fingerprint lives in the flow's item)."""
    return [
        item
        for item in items
        if item["pk"]["S"].startswith("FLOW#") and flow_document(item)["access_token_hash"] is not None
    ]


def added(before: Items, after: Items) -> list[str]:
    """The keys of the items present after and not before (or changed)."""
    return [item["pk"]["S"] for item in after if item not in before]


def without(items: Items, *prefixes: str) -> Items:
    return [item for item in items if not item["pk"]["S"].startswith(prefixes)]


def assert_oauth_error(response: Any, status: int, error: str, check: str) -> None:
    """RFC 6749 section 5.2 error JSON, not cacheable, naming the failed check, with an interaction id."""
    assert response.status_code == status, response.body
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["x-fapi-interaction-id"]
    assert "Location" not in response.headers
    body = json.loads(response.body)
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert body["error_description"].startswith(f"{check}:"), body["error_description"]


def assert_error_page(response: Any, status: int, check: str) -> None:
    """A browser step that cannot continue: an HTML error page naming the check, never a redirect."""
    assert response.status_code == status, response.body
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Location" not in response.headers
    assert response.headers["x-fapi-interaction-id"]
    assert response.headers["Cache-Control"] == "no-store"
    assert f"({check})" in response.body.decode()


def post_form(
    journey: Journey, path: str, fields: dict[str, str] | list[tuple[str, str]], **headers: str
) -> Any:
    return journey.client.http.post(path, body=urlencode(fields), headers={"Content-Type": FORM, **headers})


def par_fields(journey: Journey, **overrides: str | None) -> dict[str, str]:
    """A valid pushed request (what Journey.push sends), with overrides; None removes a field."""
    fields: dict[str, str | None] = {
        "response_type": "code",
        "client_id": journey.partner.client_id,
        "redirect_uri": journey.partner.redirect_uri,
        "state": journey.state,
        "code_challenge": journey.pkce.challenge,
        "code_challenge_method": "S256",
        "scope": "local_tax",
        "purpose": "loan-screening",
        **journey.partner.authentication(ISSUER),
        **overrides,
    }
    return {name: value for name, value in fields.items() if value is not None}


def assertion_claims(partner: TestPartner, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": partner.client_id,
        "sub": partner.client_id,
        "aud": ISSUER,
        "iat": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
    }
    claims.update(changes)
    return claims


def public_signing_jwk(partner: TestPartner) -> dict[str, Any]:
    jwk = dict(partner.signing_key.as_dict(private=False))
    jwk.update({"kid": partner.kid, "use": "sig", "alg": "ES256"})
    return jwk


def redeem_at(journey: Journey, code: str, clock: FixedClock) -> Any:
    """A token request whose assertion and proof are signed at the relay's (moved) time."""
    now = int(clock.now().timestamp())
    return journey.redeem(
        code,
        dpop=journey.partner.dpop("POST", TOKEN_URL, iat=now),
        **journey.partner.authentication(ISSUER, iat=now, exp=now + 60),
    )


def revoke(journey: Journey, token: str, partner: TestPartner | None = None) -> Any:
    fields = {
        "token": token,
        "token_type_hint": "access_token",
        **(partner or journey.partner).authentication(ISSUER),
    }
    return post_form(journey, "/revoke", fields)


def issued_token(journey: Journey) -> str:
    response = journey.redeem(journey.to_partner_code())
    assert response.status_code == 200, response.body
    return str(json.loads(response.body)["access_token"])


# -- PAR: client authentication ---------------------------------------------------------------------


def test_an_unknown_client_is_refused_and_stores_nothing(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    ghost = TestPartner(client_id="ghost-bank", kid="ghost-sig-1")
    response = journey.push(client_id=ghost.client_id, **ghost.authentication(ISSUER))
    assert_oauth_error(response, 401, "invalid_client", "client_id")
    assert stored() == []


def test_a_disabled_partner_is_refused_and_stores_nothing(
    journey: Journey, stored: Callable[[], Items], dynamodb_client: Any, resources: dict[str, str]
) -> None:
    registry(dynamodb_client, resources).set_enabled(journey.partner.client_id, enabled=False)
    response = journey.push()
    assert_oauth_error(response, 401, "invalid_client", "client_id")
    assert stored() == []


def _signed_by_another_key(partner: TestPartner) -> str:
    impostor = TestPartner(client_id=partner.client_id, kid=partner.kid)  # same kid, other key
    return impostor.client_assertion(ISSUER)


def _alg_none(partner: TestPartner) -> str:
    return unsigned_jws({"alg": "none", "typ": "JWT"}, assertion_claims(partner))


def _hs256_keyed_with_the_public_key(partner: TestPartner) -> str:
    secret = json.dumps(public_signing_jwk(partner)).encode()
    return hmac_jws({"alg": "HS256", "typ": "JWT", "kid": partner.kid}, assertion_claims(partner), secret)


def _embedded_jwk(partner: TestPartner) -> str:
    # correctly signed by the registered key: only the jwk header is wrong
    header = {"alg": "ES256", "kid": partner.kid, "jwk": dict(partner.signing_key.as_dict(private=False))}
    return jwt.encode(header, assertion_claims(partner), partner.signing_key)


def _jku(partner: TestPartner) -> str:
    header = {"alg": "ES256", "kid": partner.kid, "jku": "https://attacker.example/jwks.json"}
    return jwt.encode(header, assertion_claims(partner), partner.signing_key)


@pytest.mark.parametrize(
    ("make_assertion", "check"),
    [
        pytest.param(_signed_by_another_key, "client_assertion.signature", id="bad-signature"),
        pytest.param(
            lambda p: p.client_assertion(ISSUER, iat=int(time.time()) - 90, exp=int(time.time()) - 30),
            "client_assertion.exp",
            id="expired",
        ),
        pytest.param(
            lambda p: p.client_assertion(ISSUER, iat=int(time.time()) + 30, exp=int(time.time()) + 90),
            "client_assertion.iat",
            id="iat-30s-in-the-future",
        ),
        pytest.param(
            lambda p: p.client_assertion(ISSUER, exp=int(time.time()) + 121 + 5),
            "client_assertion.lifetime",
            id="lifetime-over-120s",
        ),
        pytest.param(
            lambda p: p.client_assertion("https://other-as.example"), "client_assertion.aud", id="wrong-aud"
        ),
        pytest.param(
            lambda p: p.client_assertion(ISSUER, sub="someone-else"), "client_assertion.sub", id="sub-not-iss"
        ),
        pytest.param(_alg_none, "client_assertion.alg", id="alg-none"),
        pytest.param(_hs256_keyed_with_the_public_key, "client_assertion.alg", id="hs256-public-key-secret"),
        pytest.param(_embedded_jwk, "client_assertion.header", id="jwk-header"),
        pytest.param(_jku, "client_assertion.header", id="jku-header"),
    ],
)
def test_a_bad_client_assertion_is_refused_and_stores_nothing(
    journey: Journey,
    stored: Callable[[], Items],
    make_assertion: Callable[[TestPartner], str],
    check: str,
) -> None:
    response = journey.push(client_assertion=make_assertion(journey.partner))
    assert_oauth_error(response, 401, "invalid_client", check)
    assert stored() == []


def test_other_bad_client_assertions_are_refused_and_store_nothing(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    partner = journey.partner
    for assertion, check in (
        (partner.client_assertion(ISSUER, iss="someone-else"), "client_assertion.iss"),
        (partner.client_assertion(ISSUER, jti=None), "client_assertion.jti"),
        (partner.client_assertion(ISSUER, exp=None), "client_assertion.exp"),
        (partner.client_assertion(ISSUER, iat=None), "client_assertion.iat"),
        (partner.client_assertion(ISSUER, nbf=int(time.time()) + 60), "client_assertion.nbf"),
        (partner.client_assertion([f"{ISSUER}/revoke"]), "client_assertion.aud"),
        ("not-a-jwt", "client_assertion"),
    ):
        assert_oauth_error(journey.push(client_assertion=assertion), 401, "invalid_client", check)
    assert stored() == []


def test_a_replayed_client_assertion_is_refused_and_changes_nothing(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    assertion = journey.partner.client_assertion(ISSUER)
    assert journey.push(client_assertion=assertion).status_code == 201
    before = stored()
    again = journey.push(client_assertion=assertion)
    assert_oauth_error(again, 401, "invalid_client", "client_assertion.jti")
    assert stored() == before


@pytest.mark.parametrize(
    "assertion_type",
    [
        pytest.param(None, id="missing"),
        pytest.param("urn:ietf:params:oauth:client-assertion-type:saml2-bearer", id="saml2"),
    ],
)
def test_a_missing_or_wrong_client_assertion_type_is_refused_and_stores_nothing(
    journey: Journey, stored: Callable[[], Items], assertion_type: str | None
) -> None:
    response = journey.push(client_assertion_type=assertion_type)
    assert_oauth_error(response, 401, "invalid_client", "client_assertion_type")
    assert stored() == []


def test_a_missing_client_assertion_is_refused_and_stores_nothing(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    # RFC 6749 section 5.2: "no client authentication included" is invalid_client
    response = journey.push(client_assertion=None)
    assert_oauth_error(response, 401, "invalid_client", "client_assertion")
    assert stored() == []


@pytest.mark.parametrize(
    "audience",
    [
        pytest.param(PAR_URL, id="par-endpoint"),
        pytest.param(TOKEN_URL, id="token-endpoint"),
        pytest.param([ISSUER], id="array-of-the-issuer"),
        pytest.param([ISSUER, PAR_URL], id="array-with-the-issuer"),
    ],
)
def test_an_assertion_audience_other_than_the_issuer_string_is_refused_at_par(
    journey: Journey, stored: Callable[[], Items], audience: str | list[str]
) -> None:
    # GIVEN an assertion whose aud names this server, but not as the issuer string: FAPI 2.0
    # Security Profile final 5.3.2.1 item 8 (no longer RFC 9126 section 2's list of endpoint URLs)
    # WHEN it authenticates a pushed request
    response = journey.push(**journey.partner.authentication(audience))
    # THEN the client is refused naming the audience, and nothing is stored
    assert_oauth_error(response, 401, "invalid_client", "client_assertion.aud")
    assert stored() == []


# -- PAR: redirect_uri (exact string comparison, no near-misses) -----------------------------------


@pytest.mark.parametrize(
    "redirect_uri",
    [
        pytest.param("https://attacker.example/callback", id="unregistered"),
        pytest.param("https://bank.example/callback/", id="trailing-slash"),
        pytest.param("https://bank.example:8443/callback", id="other-port"),
        pytest.param("https://Bank.example/callback", id="host-case"),
        pytest.param("https://bank.example/Callback", id="path-case"),
        pytest.param("https://bank.example/callback?next=https://attacker.example", id="extra-query"),
        pytest.param("https://b\u0430nk.example/callback", id="cyrillic-a-host"),
        pytest.param("https://bank.example/%63allback", id="percent-encoded-path"),
    ],
)
def test_a_redirect_uri_that_is_not_exactly_registered_is_refused_and_stores_nothing(
    journey: Journey, stored: Callable[[], Items], redirect_uri: str
) -> None:
    response = journey.push(redirect_uri=redirect_uri)
    assert_oauth_error(response, 400, "invalid_request", "redirect_uri")
    assert stored() == []


def test_other_near_misses_of_the_redirect_uri_are_refused_and_store_nothing(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    for redirect_uri in (
        "https://bank.example:443/callback",  # equal after normalisation, not as a string
        "http://bank.example/callback",
        "https://bank.example/callback#x",
        "https://bank.example%2Fcallback",
        "https://bank.example/callback/../callback",
        "https://bank.example.attacker.example/callback",
        "https://user@bank.example/callback",
        " https://bank.example/callback",
        "https://bank.example/callback\n",
        None,
    ):
        response = journey.push(redirect_uri=redirect_uri)
        assert_oauth_error(response, 400, "invalid_request", "redirect_uri")
    assert stored() == []


def test_a_redirect_uri_of_another_partner_is_refused_and_stores_nothing(
    journey: Journey, other_partner: TestPartner, stored: Callable[[], Items]
) -> None:
    before = stored()
    response = journey.push(redirect_uri=other_partner.redirect_uri)
    assert_oauth_error(response, 400, "invalid_request", "redirect_uri")
    assert stored() == before


# -- PAR: PKCE, scope, purpose, other parameters ----------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "check"),
    [
        pytest.param({"code_challenge": None}, "code_challenge", id="no-challenge"),
        pytest.param({"code_challenge_method": "plain"}, "code_challenge_method", id="plain"),
        pytest.param({"code_challenge": "too-short"}, "code_challenge", id="malformed-challenge"),
    ],
)
def test_a_request_without_s256_pkce_is_refused_and_stores_nothing(
    journey: Journey, stored: Callable[[], Items], overrides: dict[str, str | None], check: str
) -> None:
    response = journey.push(**overrides)
    assert_oauth_error(response, 400, "invalid_request", check)
    assert stored() == []


def test_other_pkce_downgrades_and_malformed_challenges_are_refused_and_store_nothing(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    for overrides, check in (
        ({"code_challenge": None, "code_challenge_method": None}, "code_challenge_method"),
        ({"code_challenge_method": None}, "code_challenge_method"),  # no method means plain
        ({"code_challenge_method": "s256"}, "code_challenge_method"),
        (
            {"code_challenge_method": "plain", "code_challenge": journey.pkce.verifier},
            "code_challenge_method",
        ),
        ({"code_challenge": "A" * 42 + "="}, "code_challenge"),
        ({"code_challenge": "+" * 43}, "code_challenge"),
        ({"code_challenge": "A" * 43 + "\n"}, "code_challenge"),
        ({"code_challenge": "A" * 44}, "code_challenge"),
    ):
        assert_oauth_error(journey.push(**overrides), 400, "invalid_request", check)
    assert stored() == []


@pytest.mark.parametrize(
    ("purpose", "scope", "check"),
    [
        pytest.param("marketing", "local_tax", "purpose", id="unregistered-purpose"),
        pytest.param("loan-screening", "vaccination", "scope", id="scope-outside-the-purpose"),
        pytest.param("loan-screening", "local_tax vaccination", "scope", id="two-scopes"),
        pytest.param("loan-screening", "openid", "scope", id="unknown-scope"),
    ],
)
def test_a_scope_or_purpose_outside_the_registration_is_refused_and_stores_nothing(
    journey: Journey, stored: Callable[[], Items], purpose: str, scope: str, check: str
) -> None:
    response = journey.push(purpose=purpose, scope=scope)
    assert_oauth_error(response, 400, "invalid_scope", check)
    assert stored() == []


@pytest.mark.parametrize(
    ("overrides", "check"),
    [
        pytest.param({"state": None}, "state", id="no-state"),
        pytest.param({"response_mode": "form_post"}, "response_mode", id="unsupported-response-mode"),
    ],
)
def test_a_malformed_pushed_request_is_refused_and_stores_nothing(
    journey: Journey, stored: Callable[[], Items], overrides: dict[str, str | None], check: str
) -> None:
    response = journey.push(**overrides)
    assert_oauth_error(response, 400, "invalid_request", check)
    assert stored() == []


def test_other_malformed_pushed_requests_are_refused_and_store_nothing(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    for overrides, check in (
        ({"state": ""}, "state"),
        ({"state": "x" * 513}, "state"),
        ({"state": "a\u00e9b"}, "state"),
        ({"state": "a\nb"}, "state"),
        ({"response_type": "token"}, "response_type"),
        ({"response_type": "code id_token"}, "response_type"),
        ({"response_type": None}, "response_type"),
        ({"request_uri": "urn:ietf:params:oauth:request_uri:x"}, "request_uri"),  # RFC 9126 2.1
        ({"scope": None}, "scope"),
        ({"purpose": None}, "purpose"),
        ({"client_secret": "s3cret"}, "client_secret"),
        ({"code_challenge": "A" * 2049}, "code_challenge"),
        ({"nonce": "n" * 2049}, "nonce"),  # an ignored parameter is held to the same limit
    ):
        assert_oauth_error(journey.push(**overrides), 400, "invalid_request", check)
    # no request objects (JAR): PAR takes plain parameters only (request_parameter_supported: false)
    assert_oauth_error(
        journey.push(request="eyJhbGciOiJub25lIn0.e30."), 400, "request_not_supported", "request"
    )
    assert stored() == []


def test_a_repeated_parameter_is_refused_and_stores_nothing(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    fields = [*par_fields(journey).items(), ("state", "second-state")]
    response = post_form(journey, "/par", fields)
    assert_oauth_error(response, 400, "invalid_request", "state")
    assert stored() == []


def test_an_oversized_body_is_refused_with_413_and_stores_nothing(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    response = post_form(journey, "/par", par_fields(journey, state="s" * (16 * 1024)))
    assert_oauth_error(response, 413, "invalid_request", "body")
    assert stored() == []


def test_a_body_that_is_not_a_form_is_refused_and_stores_nothing(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    response = journey.client.http.post("/par", body=b"\xff\xfe=%", headers={"Content-Type": FORM})
    assert_oauth_error(response, 400, "invalid_request", "body")
    assert stored() == []


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "multipart/form-data"])
def test_a_wrong_content_type_is_refused_with_415_and_stores_nothing(
    journey: Journey, stored: Callable[[], Items], content_type: str
) -> None:
    response = journey.client.http.post(
        "/par", body=urlencode(par_fields(journey)), headers={"Content-Type": content_type}
    )
    assert_oauth_error(response, 415, "invalid_request", "content-type")
    assert stored() == []


# -- the consent interstitial -----------------------------------------------------------------------


def get_authorize(journey: Journey, client_id: str, request_uri: str) -> Any:
    return journey.client.http.get(
        f"/authorize?{urlencode({'client_id': client_id, 'request_uri': request_uri})}"
    )


def post_decision(journey: Journey, fields: dict[str, str], cookie: str | None) -> Any:
    headers = {"Cookie": f"relay_csrf={cookie}"} if cookie is not None else {}
    return post_form(journey, "/authorize/decision", fields, **headers)


@pytest.mark.parametrize(
    ("client_id", "request_uri", "check"),
    [
        pytest.param("ghost-bank", None, "client_id", id="unknown-client"),
        pytest.param(
            None, "urn:ietf:params:oauth:request_uri:" + "A" * 43, "request_uri", id="unknown-request-uri"
        ),
        pytest.param(None, "https://attacker.example/request", "request_uri", id="not-a-request-uri-urn"),
    ],
)
def test_the_interstitial_refuses_an_unusable_request_and_leaves_the_flow_alone(
    journey: Journey,
    stored: Callable[[], Items],
    client_id: str | None,
    request_uri: str | None,
    check: str,
) -> None:
    journey.push()
    before = stored()
    response = get_authorize(
        journey, client_id or journey.partner.client_id, request_uri or journey.request_uri
    )
    assert_error_page(response, 400, check)
    assert "Set-Cookie" not in response.headers
    assert stored() == before


def test_the_interstitial_escapes_the_text_a_partner_registered(
    journey: Journey, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    markup = TestPartner(client_id="markup-bank", kid="markup-sig-1")
    document = markup.document(
        names={"ja": "<script>alert(1)</script>", "en": '"><img src=x onerror=alert(1)>'}
    )
    document["purposes"][0]["titles"] = {"ja": "<b>審査</b>", "en": "<i>screening</i>"}
    registry(dynamodb_client, resources).register(document)
    visitor = Journey(client=journey.client, partner=markup, sandbox=journey.sandbox, pkce=Pkce())
    assert visitor.push().status_code == 201
    for lang in ("ja", "en"):
        page = visitor.show_consent(lang=lang).body.decode()
        assert "<script" not in page
        assert "<img" not in page
        assert "<b>" not in page
        assert "<i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in visitor.show_consent(lang="ja").body.decode()


def test_the_interstitial_refuses_missing_or_repeated_parameters(journey: Journey) -> None:
    for query, check in (
        ("", "client_id"),
        ("client_id=acme-bank", "request_uri"),
        ("client_id=acme-bank&client_id=other-bank&request_uri=x", "client_id"),
        ("client_id=acme-bank&request_uri=a&request_uri=b", "request_uri"),
    ):
        assert_error_page(journey.client.http.get(f"/authorize?{query}"), 400, check)


def test_the_interstitial_refuses_a_request_uri_pushed_by_another_client(
    journey: Journey,
    other_partner: TestPartner,
    stored: Callable[[], Items],
    flow: Callable[[], dict[str, Any]],
) -> None:
    journey.push()
    before = stored()
    response = get_authorize(journey, other_partner.client_id, journey.request_uri)
    assert_error_page(response, 400, "client_id")
    assert stored() == before
    assert flow()["status"] == "created"


def test_a_request_uri_cannot_be_used_again_after_the_resident_continued(
    journey: Journey, stored: Callable[[], Items], flow: Callable[[], dict[str, Any]]
) -> None:
    journey.push()
    journey.show_consent()
    assert journey.decide("continue").status_code == 303
    before = stored()
    assert_error_page(journey.show_consent(), 400, "request_uri")
    assert_error_page(journey.decide("continue"), 400, "request_uri")
    assert_error_page(journey.decide("cancel"), 400, "request_uri")
    assert stored() == before
    assert flow()["status"] == "at_portal"


def test_a_request_uri_cannot_be_used_again_after_the_resident_cancelled(
    journey: Journey, stored: Callable[[], Items], flow: Callable[[], dict[str, Any]]
) -> None:
    journey.push()
    journey.show_consent()
    assert journey.decide("cancel").status_code == 303
    before = stored()
    assert_error_page(journey.show_consent(), 400, "request_uri")
    assert_error_page(journey.decide("continue"), 400, "request_uri")
    assert stored() == before
    assert flow()["status"] == "cancelled"


def test_an_expired_request_uri_is_refused_and_the_flow_is_left_alone(
    journey: Journey, relay_clock: FixedClock, stored: Callable[[], Items], flow: Callable[[], dict[str, Any]]
) -> None:
    assert journey.push().status_code == 201
    assert journey.show_consent().status_code == 200
    before = stored()
    relay_clock.advance(seconds=300)  # the request_uri lives 300 s
    assert_error_page(journey.show_consent(), 400, "request_uri")
    assert_error_page(journey.decide("continue"), 400, "request_uri")
    assert stored() == before
    assert (flow()["status"], flow()["version"]) == ("created", 2)


def test_a_request_uri_is_still_usable_just_before_it_expires(
    journey: Journey, relay_clock: FixedClock
) -> None:
    journey.push()
    relay_clock.advance(seconds=299)
    assert journey.show_consent().status_code == 200
    assert journey.decide("continue").status_code == 303


@pytest.mark.parametrize(
    ("csrf", "cookie"),
    [
        pytest.param("", "page", id="no-form-token"),
        pytest.param("forged", "page", id="wrong-form-token"),
        pytest.param("page", None, id="no-cookie"),
        pytest.param("page", "forged", id="cookie-differs-from-form"),
    ],
)
def test_a_decision_without_a_valid_csrf_token_is_refused_and_leaves_the_flow_alone(
    journey: Journey,
    stored: Callable[[], Items],
    flow: Callable[[], dict[str, Any]],
    csrf: str,
    cookie: str | None,
) -> None:
    journey.push()
    journey.show_consent()
    before = stored()
    fields = {
        "request_uri": journey.request_uri,
        "csrf_token": journey.csrf_token if csrf == "page" else csrf,
        "action": "continue",
    }
    response = post_decision(journey, fields, journey.csrf_cookie if cookie == "page" else cookie)
    assert_error_page(response, 403, "csrf_token")
    assert stored() == before
    assert (flow()["status"], flow()["version"]) == ("created", 2)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("action=continue&pad=" + "a" * (16 * 1024), id="oversized"),
        pytest.param(b"action=continue&\xff\xfe=%", id="not-utf8"),
    ],
)
def test_an_oversized_or_malformed_decision_form_is_an_error_page_and_changes_nothing(
    journey: Journey, stored: Callable[[], Items], body: str | bytes
) -> None:
    journey.push()
    journey.show_consent()
    before = stored()
    response = journey.client.http.post(
        "/authorize/decision",
        body=body,
        headers={"Content-Type": FORM, "Cookie": f"relay_csrf={journey.csrf_cookie}"},
    )
    assert_error_page(response, 400, "body")
    assert stored() == before


def test_other_forged_decisions_are_refused_and_leave_the_flow_alone(
    journey: Journey, stored: Callable[[], Items], flow: Callable[[], dict[str, Any]]
) -> None:
    journey.push()
    journey.show_consent()
    before = stored()
    assert_error_page(journey.decide("cancel", csrf="forged", cookie="forged"), 403, "csrf_token")
    assert_error_page(journey.decide("cancel", cookie=""), 403, "csrf_token")
    # and the same forgeries for continue: form and cookie agreeing but not ours, an empty cookie
    assert_error_page(journey.decide("continue", csrf="forged", cookie="forged"), 403, "csrf_token")
    assert_error_page(journey.decide("continue", cookie=""), 403, "csrf_token")
    assert stored() == before
    assert flow()["status"] == "created"


def test_a_csrf_token_of_another_flow_is_refused(journey: Journey, stored: Callable[[], Items]) -> None:
    journey.push()
    journey.show_consent()
    other = another_journey(journey)
    other.push()
    other.show_consent()
    before = stored()
    # the attacker's own, valid page and cookie, posted against the victim's request_uri
    response = post_decision(
        journey,
        {"request_uri": journey.request_uri, "csrf_token": other.csrf_token, "action": "continue"},
        other.csrf_cookie,
    )
    assert_error_page(response, 403, "csrf_token")
    assert stored() == before


def test_a_csrf_token_of_an_earlier_page_view_is_refused(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    journey.push()
    journey.show_consent()
    first_token, first_cookie = journey.csrf_token, journey.csrf_cookie
    journey.show_consent()  # a second view binds a new token to the flow
    before = stored()
    assert_error_page(journey.decide("continue", csrf=first_token, cookie=first_cookie), 403, "csrf_token")
    assert stored() == before


def test_an_unknown_action_is_refused_and_leaves_the_flow_alone(
    journey: Journey, stored: Callable[[], Items], flow: Callable[[], dict[str, Any]]
) -> None:
    journey.push()
    journey.show_consent()
    before = stored()
    assert_error_page(journey.decide("approve"), 400, "action")
    assert stored() == before
    assert (flow()["status"], flow()["version"]) == ("created", 2)


# -- the portal callback ----------------------------------------------------------------------------


def at_the_portal(journey: Journey) -> None:
    """PAR, interstitial, continue: the flow waits for the portal (no portal call needed)."""
    assert journey.push().status_code == 201
    assert journey.show_consent().status_code == 200
    assert journey.decide("continue").status_code == 303


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(f"code=portal-code&state={secrets.token_urlsafe(32)}", id="forged-state"),
        pytest.param("code=portal-code", id="no-state"),
    ],
)
def test_a_forged_or_stateless_callback_is_an_error_page_and_changes_nothing(
    journey: Journey, stored: Callable[[], Items], flow: Callable[[], dict[str, Any]], query: str
) -> None:
    at_the_portal(journey)
    before = stored()
    assert_error_page(journey.callback(query), 400, "state")
    assert stored() == before
    assert flow()["status"] == "at_portal"


def test_other_forged_callbacks_are_error_pages_and_change_nothing(
    journey: Journey, stored: Callable[[], Items], flow: Callable[[], dict[str, Any]]
) -> None:
    at_the_portal(journey)
    before = stored()
    for query in (
        f"error=access_denied&state={secrets.token_urlsafe(32)}",  # a forged cancel must not fail the flow
        "error=access_denied",
        "",
        "code=portal-code&state=",
        "code=portal-code&state=a&state=b",
        f"code=portal-code&state={'s' * 201}",
    ):
        assert_error_page(journey.callback(query), 400, "state")
    assert stored() == before
    assert flow()["status"] == "at_portal"


def test_a_replayed_callback_is_an_error_page_and_changes_nothing(
    journey: Journey, stored: Callable[[], Items], flow: Callable[[], dict[str, Any]]
) -> None:
    journey.to_partner_code()
    before = stored()
    assert_error_page(journey.callback(), 400, "state")
    assert stored() == before
    assert flow()["status"] == "retrieving"


def test_a_consumed_state_with_another_flows_code_is_refused_and_that_flow_still_completes(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    journey.to_partner_code()
    consumed_state = parse_qs(journey.callback_query)["state"][0]
    victim = another_journey(journey)
    at_the_portal(victim)
    victim_query = victim.at_portal()
    before = stored()
    response = victim.callback(urlencode({"code": victim_query["code"], "state": consumed_state}))
    assert_error_page(response, 400, "state")
    assert stored() == before
    # the victim's own callback still works: nothing was consumed by the mismatched one
    back = victim.callback()
    assert back.status_code == 303
    assert location_query(back)["state"] == victim.state


# -- token ------------------------------------------------------------------------------------------


def test_codes_request_uris_and_portal_states_carry_at_least_128_bits(journey: Journey) -> None:
    code = journey.to_partner_code()
    portal_state = parse_qs(journey.callback_query)["state"][0]
    request_uri = journey.request_uri.removeprefix("urn:ietf:params:oauth:request_uri:")
    for secret in (code, portal_state, request_uri):
        # ``<flow id>.<random>``: the flow id lets the step read its flow and is no secret (the
        # partner is told it); the random part alone must carry the entropy
        flow_id, _, random_part = secret.partition(".")
        assert flow_id == code.partition(".")[0]
        assert len(base64.urlsafe_b64decode(random_part + "=" * (-len(random_part) % 4))) >= 16
    other = another_journey(journey)
    assert other.to_partner_code() != code


def test_a_reused_code_is_refused_and_revokes_what_the_first_use_issued(
    journey: Journey, stored: Callable[[], Items], flow: Callable[[], dict[str, Any]]
) -> None:
    code = journey.to_partner_code()
    assert journey.redeem(code).status_code == 200
    assert len(token_items(stored())) == 1
    again = journey.redeem(code)
    assert_oauth_error(again, 400, "invalid_grant", "code")
    assert token_items(stored()) == []
    assert flow()["status"] == "revoked"
    assert flow()["failure_reason"] == "code.replayed"
    assert flow()["portal_token_ciphertext"] is None


def test_an_expired_code_is_refused_and_changes_nothing(
    journey: Journey, relay_clock: FixedClock, stored: Callable[[], Items], flow: Callable[[], dict[str, Any]]
) -> None:
    code = journey.to_partner_code()
    before = stored()
    relay_clock.advance(seconds=60)  # codes live 60 s
    response = redeem_at(journey, code, relay_clock)
    assert_oauth_error(response, 400, "invalid_grant", "code")
    assert stored() == before
    assert flow()["status"] == "retrieving"


def test_a_code_is_still_redeemable_just_before_it_expires(journey: Journey, relay_clock: FixedClock) -> None:
    code = journey.to_partner_code()
    relay_clock.advance(seconds=59)
    response = redeem_at(journey, code, relay_clock)
    assert response.status_code == 200, response.body


@pytest.mark.parametrize(
    ("overrides", "check"),
    [
        pytest.param({"verifier": Pkce().verifier}, "code_verifier", id="wrong-verifier"),
        pytest.param({"code_verifier": None}, "code_verifier", id="no-verifier"),
        pytest.param(
            {"redirect_uri": "https://bank.example/callback/"}, "redirect_uri", id="other-redirect-uri"
        ),
    ],
)
def test_a_token_request_that_does_not_match_the_code_is_refused_and_changes_nothing(
    journey: Journey,
    stored: Callable[[], Items],
    flow: Callable[[], dict[str, Any]],
    overrides: dict[str, str | None],
    check: str,
) -> None:
    code = journey.to_partner_code()
    before = stored()
    verifier = overrides.pop("verifier", None)
    response = journey.redeem(code, verifier=verifier, **overrides)
    assert_oauth_error(response, 400, "invalid_grant", check)
    assert stored() == before
    assert flow()["status"] == "retrieving"


def test_other_token_requests_that_do_not_match_the_code_are_refused_and_change_nothing(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    code = journey.to_partner_code()
    before = stored()
    for presented, overrides, check in (
        (code, {"code_verifier": "short"}, "code_verifier"),
        (
            code,
            {"code_verifier": journey.pkce.challenge},
            "code_verifier",
        ),  # the challenge is not the verifier
        (code, {"redirect_uri": None}, "redirect_uri"),
        (code, {"redirect_uri": "https://Bank.example/callback"}, "redirect_uri"),
        ("not-a-code", {}, "code"),
        (code + "x", {}, "code"),
    ):
        assert_oauth_error(journey.redeem(presented, **overrides), 400, "invalid_grant", check)
    assert stored() == before
    assert journey.redeem(code).status_code == 200  # the rightful request still works


def test_a_code_presented_by_another_client_is_refused_and_changes_nothing(
    journey: Journey, other_partner: TestPartner, stored: Callable[[], Items]
) -> None:
    code = journey.to_partner_code()
    before = stored()
    stolen = journey.redeem(
        code, dpop=other_partner.dpop("POST", TOKEN_URL), **other_partner.authentication(ISSUER)
    )
    assert_oauth_error(stolen, 400, "invalid_grant", "client_id")
    assert stored() == before
    # the code is still the rightful client's
    assert journey.redeem(code).status_code == 200


def test_a_token_request_without_client_authentication_is_refused(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    code = journey.to_partner_code()
    before = stored()
    response = journey.redeem(code, client_assertion=None, client_assertion_type=None)
    assert_oauth_error(response, 401, "invalid_client", "client_assertion_type")
    assert stored() == before


def test_a_client_assertion_used_at_par_cannot_be_replayed_at_the_token_endpoint(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    assertion = journey.partner.client_assertion(ISSUER)
    journey.push(client_assertion=assertion)
    journey.show_consent()
    journey.decide()
    journey.at_portal()
    code = location_query(journey.callback())["code"]
    before = stored()
    response = journey.redeem(code, client_assertion=assertion)
    assert_oauth_error(response, 401, "invalid_client", "client_assertion.jti")
    assert stored() == before


def _dpop_typ_jwt(partner: TestPartner) -> str:
    claims = {"jti": str(uuid.uuid4()), "htm": "POST", "htu": TOKEN_URL, "iat": int(time.time())}
    header = {"typ": "JWT", "alg": "ES256", "jwk": dict(partner.dpop_key.as_dict(private=False))}
    return jwt.encode(header, claims, partner.dpop_key)


def _dpop_signed_by_another_key(partner: TestPartner) -> str:
    claims = {"jti": str(uuid.uuid4()), "htm": "POST", "htu": TOKEN_URL, "iat": int(time.time())}
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": dict(partner.dpop_key.as_dict(private=False))}
    return jwt.encode(header, claims, ECKey.generate_key("P-256"))


def _dpop_alg_none(partner: TestPartner) -> str:
    claims = {"jti": str(uuid.uuid4()), "htm": "POST", "htu": TOKEN_URL, "iat": int(time.time())}
    return unsigned_jws(
        {"typ": "dpop+jwt", "alg": "none", "jwk": dict(partner.dpop_key.as_dict(private=False))}, claims
    )


def _dpop_private_jwk(partner: TestPartner) -> str:
    claims = {"jti": str(uuid.uuid4()), "htm": "POST", "htu": TOKEN_URL, "iat": int(time.time())}
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": dict(partner.dpop_key.as_dict(private=True))}
    return jwt.encode(header, claims, partner.dpop_key)


@pytest.mark.parametrize(
    ("make_proof", "check"),
    [
        pytest.param(lambda p: None, "dpop", id="missing"),
        pytest.param(lambda p: "not-a-jwt", "dpop", id="malformed"),
        pytest.param(lambda p: p.dpop("POST", PAR_URL), "dpop.htu", id="htu-of-par"),
        pytest.param(lambda p: p.dpop("GET", TOKEN_URL), "dpop.htm", id="htm-get"),
        pytest.param(
            lambda p: p.dpop("POST", TOKEN_URL, iat=int(time.time()) - 61), "dpop.iat", id="iat-61s-old"
        ),
        pytest.param(_dpop_typ_jwt, "dpop.typ", id="typ-jwt"),
        pytest.param(_dpop_signed_by_another_key, "dpop.signature", id="signed-by-another-key"),
    ],
)
def test_a_token_request_with_a_bad_dpop_proof_is_refused_and_changes_nothing(
    journey: Journey,
    stored: Callable[[], Items],
    make_proof: Callable[[TestPartner], str | None],
    check: str,
) -> None:
    code = journey.to_partner_code()
    before = stored()
    response = journey.redeem(code, dpop=make_proof(journey.partner))
    assert_oauth_error(response, 400, "invalid_dpop_proof", check)
    assert "WWW-Authenticate" not in response.headers  # a token error, not a resource challenge
    assert stored() == before


def test_other_bad_dpop_proofs_are_refused_and_change_nothing(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    code = journey.to_partner_code()
    before = stored()
    partner = journey.partner
    for proof, check in (
        (partner.dpop("POST", "https://attacker.example/token"), "dpop.htu"),
        (partner.dpop("POST", TOKEN_URL, iat=int(time.time()) + 30), "dpop.iat"),
        (partner.dpop("POST", TOKEN_URL, jti=None), "dpop.jti"),
        (partner.dpop("POST", TOKEN_URL, htm=None), "dpop.htm"),
        (_dpop_alg_none(partner), "dpop.alg"),
        (_dpop_private_jwk(partner), "dpop.jwk"),
    ):
        assert_oauth_error(journey.redeem(code, dpop=proof), 400, "invalid_dpop_proof", check)
    assert stored() == before
    assert journey.redeem(code).status_code == 200  # the code was never used up


def test_a_replayed_dpop_proof_is_refused_and_issues_nothing(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    first_code = journey.to_partner_code()
    second = another_journey(journey)
    second_code = second.to_partner_code()
    proof = journey.partner.dpop("POST", TOKEN_URL)
    assert journey.redeem(first_code, dpop=proof).status_code == 200
    before = stored()
    response = second.redeem(second_code, dpop=proof)
    assert_oauth_error(response, 400, "invalid_dpop_proof", "dpop.jti")
    after = stored()
    # Nothing issued, the second code unused, the second flow unchanged. The refused request's own
    # client assertion was valid and is used up (its jti recorded before the proof's jti is checked).
    assert without(after, "JTI#ca:") == without(before, "JTI#ca:")
    assert [key.split("#")[1].split(":")[0] for key in added(before, after)] == ["ca"]


def test_two_dpop_proofs_in_one_request_are_refused_and_change_nothing(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    code = journey.to_partner_code()
    before = stored()
    proofs = f"{journey.partner.dpop('POST', TOKEN_URL)}, {journey.partner.dpop('POST', TOKEN_URL)}"
    response = journey.redeem(code, dpop=proofs)
    assert response.status_code == 400
    assert json.loads(response.body)["error_description"].startswith("dpop:")
    assert stored() == before


def test_two_dpop_proofs_are_answered_invalid_dpop_proof(journey: Journey) -> None:
    proofs = f"{journey.partner.dpop('POST', TOKEN_URL)}, {journey.partner.dpop('POST', TOKEN_URL)}"
    response = journey.redeem("any-code", dpop=proofs)
    assert_oauth_error(response, 400, "invalid_dpop_proof", "dpop")


def test_two_dpop_headers_as_api_gateway_rest_delivers_them_are_refused(
    journey: Journey, stored: Callable[[], Items], monkeypatch: pytest.MonkeyPatch
) -> None:
    # API Gateway REST APIs (what Chalice deploys) keep the last value of a repeated header in the
    # event's headers and every value in multiValueHeaders only
    code = journey.to_partner_code()
    first, second = journey.partner.dpop("POST", TOKEN_URL), journey.partner.dpop("POST", TOKEN_URL)
    converter = journey.client.http._local_gateway.event_converter
    build_event = converter.create_lambda_event

    def rest_api_event(**request: Any) -> dict[str, Any]:
        # the REST API (payload 1.0) form of a request carrying "DPoP: <first>" and "DPoP: <second>"
        event: dict[str, Any] = build_event(**request)
        event["multiValueHeaders"] = {name: [value] for name, value in event["headers"].items()}
        if "dpop" in event["headers"]:
            event["headers"]["dpop"] = second
            event["multiValueHeaders"]["dpop"] = [first, second]
        return event

    monkeypatch.setattr(converter, "create_lambda_event", rest_api_event)
    before = stored()
    response = journey.redeem(code, dpop=first)
    assert response.status_code == 400, response.body
    assert json.loads(response.body)["error_description"].startswith("dpop:")
    assert stored() == before


def test_the_client_credentials_grant_is_refused_and_changes_nothing(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    journey.push()
    before = stored()
    response = journey.redeem("any-code", grant_type="client_credentials")
    assert_oauth_error(response, 400, "unsupported_grant_type", "grant_type")
    for grant_type in ("refresh_token", "password", "urn:ietf:params:oauth:grant-type:jwt-bearer", None):
        assert_oauth_error(
            journey.redeem("any-code", grant_type=grant_type), 400, "unsupported_grant_type", "grant_type"
        )
    assert stored() == before


# -- revocation -------------------------------------------------------------------------------------


def test_revoking_the_token_deletes_it_and_revokes_the_flow(
    journey: Journey, stored: Callable[[], Items], flow: Callable[[], dict[str, Any]]
) -> None:
    token = issued_token(journey)
    assert flow()["portal_token_ciphertext"]  # retrieving: the portal token is needed to poll
    response = revoke(journey, token)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["x-fapi-interaction-id"]
    assert token_items(stored()) == []
    assert (flow()["status"], flow()["failure_reason"]) == ("revoked", "partner.revoked")
    assert flow()["portal_token_ciphertext"] is None  # ends with the flow, not at the item's TTL


def test_revoking_an_unknown_token_answers_200_and_changes_nothing(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    issued_token(journey)
    before = stored()
    response = revoke(journey, secrets.token_urlsafe(32))
    assert response.status_code == 200
    after = stored()
    # RFC 7009 2.2: an unknown token is 200. Only the (valid, single-use) client assertion is used up.
    assert without(after, "JTI#ca:") == without(before, "JTI#ca:")
    assert [key.split("#")[1].split(":")[0] for key in added(before, after)] == ["ca"]


def test_revoking_another_clients_token_is_refused_and_changes_nothing(
    journey: Journey, other_partner: TestPartner, stored: Callable[[], Items]
) -> None:
    token = issued_token(journey)
    before = stored()
    response = revoke(journey, token, partner=other_partner)
    assert_oauth_error(response, 400, "unauthorized_client", "token")
    assert stored() == before
    assert len(token_items(stored())) == 1


def test_revoking_with_another_token_type_hint_still_revokes_the_token(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    # RFC 7009 section 2.1: the hint may be ignored; the search covers every token type
    token = issued_token(journey)
    fields = {"token": token, "token_type_hint": "refresh_token", **journey.partner.authentication(ISSUER)}
    response = post_form(journey, "/revoke", fields)
    assert response.status_code == 200, response.body
    assert token_items(stored()) == []


def test_revocation_without_client_authentication_is_refused_and_changes_nothing(
    journey: Journey, stored: Callable[[], Items]
) -> None:
    token = issued_token(journey)
    before = stored()
    response = post_form(journey, "/revoke", {"token": token})
    assert_oauth_error(response, 401, "invalid_client", "client_assertion_type")
    assert stored() == before


# -- every response ---------------------------------------------------------------------------------


def test_refusals_echo_the_partners_interaction_id(journey: Journey) -> None:
    sent = str(uuid.uuid4())
    oauth = journey.client.http.post(
        "/par",
        body=urlencode(par_fields(journey, redirect_uri="https://attacker.example/")),
        headers={"Content-Type": FORM, "x-fapi-interaction-id": sent},
    )
    assert_oauth_error(oauth, 400, "invalid_request", "redirect_uri")
    assert oauth.headers["x-fapi-interaction-id"] == sent
    page = journey.client.http.get("/portal/callback?state=forged", headers={"x-fapi-interaction-id": sent})
    assert_error_page(page, 400, "state")
    assert page.headers["x-fapi-interaction-id"] == sent
    assert sent in page.body.decode()  # the resident can quote it
    unsupported = journey.client.http.post(
        "/token", body="{}", headers={"Content-Type": "application/json", "x-fapi-interaction-id": sent}
    )
    assert_oauth_error(unsupported, 415, "invalid_request", "content-type")
    assert unsupported.headers["x-fapi-interaction-id"] == sent


# -- DPoP at PAR (RFC 9449 section 10, 10.1) --------------------------------------------------------


@pytest.mark.parametrize(
    "binding",
    [
        pytest.param("header", id="dpop-header"),
        pytest.param("dpop_jkt", id="dpop-jkt"),
        pytest.param("both", id="header-and-matching-dpop-jkt"),
    ],
)
def test_a_request_pushed_with_dpop_binds_the_code_and_the_token_to_that_key(
    journey: Journey, flow: Callable[[], dict[str, Any]], binding: str
) -> None:
    # GIVEN a pushed request binding its code to the partner's DPoP key, by a proof, by dpop_jkt or both
    thumbprint = journey.partner.dpop_thumbprint()
    proof = journey.partner.dpop("POST", PAR_URL) if binding != "dpop_jkt" else None
    fields = {"dpop_jkt": thumbprint} if binding != "header" else {}
    assert journey.push(dpop=proof, **fields).status_code == 201
    # THEN the flow remembers the key from the start
    assert flow()["dpop_jkt"] == thumbprint
    # AND WHEN the resident goes through and the partner redeems the code with a proof by that key
    assert journey.show_consent().status_code == 200
    assert journey.decide().status_code == 303
    journey.at_portal()
    code = location_query(journey.callback())["code"]
    issued = journey.redeem(code)
    # THEN the token is issued, bound to the same key
    assert issued.status_code == 200, issued.body
    assert flow()["dpop_jkt"] == thumbprint
