"""Attacks on client authentication: forged, confused and replayed ``private_key_jwt`` assertions.

What a bank's tester throws at the PAR, token, revocation and partner audit endpoints (RFC 7523,
RFC 8725 JWT BCP, FAPI 2.0 section 5.3.2.1, RFC 9700 section 2.5): JOSE algorithm confusion,
keys smuggled through headers, a signature that verifies with the wrong key or with none, parser
differentials, clock abuse and replay across endpoints. Each is refused with ``invalid_client``
naming the failed check, and leaves the state and audit tables as they were.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from joserfc.jwk import ECKey

from tests.functional.conftest import ISSUER, Journey
from tests.functional.test_authorization_refusals import assertion_claims, issued_token, post_form
from tests.partner_helpers import CLIENT_ASSERTION_TYPE, TestPartner, b64url, hmac_jws, unsigned_jws
from tests.security.helpers import (
    AUDIT_URL,
    REVOKE_URL,
    Tables,
    assert_oauth_error,
    es256_jws,
)

Snapshot = Callable[[], Tables]


def _header(partner: TestPartner, **extra: Any) -> dict[str, Any]:
    return {"alg": "ES256", "kid": partner.kid, **extra}


def _psychic_signature(partner: TestPartner) -> str:
    # CVE-2022-21449: an ECDSA signature with r = s = 0 "verifies" in a broken implementation
    signed = es256_jws(_header(partner), assertion_claims(partner), partner.signing_key)
    return signed.rsplit(".", 1)[0] + "." + b64url(bytes(64))


def _stripped_signature(partner: TestPartner) -> str:
    signed = es256_jws(_header(partner), assertion_claims(partner), partner.signing_key)
    return signed.rsplit(".", 1)[0] + "."


def _self_signed_x5c(partner: TestPartner) -> str:
    attacker = ECKey.generate_key("P-256")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, partner.client_id)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(attacker.private_key.public_key())  # type: ignore[union-attr]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(attacker.private_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    header = _header(partner, x5c=[base64.b64encode(der).decode()])
    return es256_jws(header, assertion_claims(partner), attacker)


def _duplicate_alg(partner: TestPartner) -> str:
    # correctly signed by the registered key; a last-wins parser would read alg=none
    header = f'{{"alg": "ES256", "kid": "{partner.kid}", "alg": "none"}}'
    return es256_jws(header, assertion_claims(partner), partner.signing_key)


def _deeply_nested_claims(partner: TestPartner) -> str:
    claims = json.dumps(assertion_claims(partner))[:-1] + ', "x": ' + "[" * 2000 + "]" * 2000 + "}"
    return es256_jws(_header(partner), claims, partner.signing_key)


def _infinite_exp(partner: TestPartner) -> str:
    # 1e309 parses as float infinity: an assertion that never expires, if nobody checks
    claims = json.dumps(assertion_claims(partner, exp=0)).replace('"exp": 0', '"exp": 1e309')
    return es256_jws(_header(partner), claims, partner.signing_key)


def _signed_by_the_encryption_key(partner: TestPartner) -> str:
    header = {"alg": "ES256", "kid": "acme-enc-1"}  # the partner's own key, registered for use=enc
    return es256_jws(header, assertion_claims(partner), partner.encryption_key)


def case(source: str, threat: str, check: str, make: Callable[[TestPartner], str], name: str) -> Any:
    return pytest.param(make, check, id=name, marks=pytest.mark.attack(source=source, threat=threat))


@pytest.mark.parametrize(
    ("make_assertion", "check"),
    [
        case(
            "RFC 8725 §3.1 / CVE-2022-21449",
            "ECDSA signature with r = s = 0 (psychic signature)",
            "client_assertion.signature",
            _psychic_signature,
            "psychic-signature",
        ),
        case(
            "RFC 8725 §3.1",
            "signature stripped, alg still ES256",
            "client_assertion.signature",
            _stripped_signature,
            "stripped-signature",
        ),
        case(
            "RFC 8725 §3.10 / RFC 7515 §4.1.5",
            "x5u header pointing at the attacker's certificate",
            "client_assertion.header",
            lambda p: es256_jws(
                _header(p, x5u="https://attacker.example/cert.pem"), assertion_claims(p), p.signing_key
            ),
            "x5u-header",
        ),
        case(
            "RFC 8725 §3.10 / RFC 7515 §4.1.6",
            "self-signed certificate of the attacker's key in x5c",
            "client_assertion.header",
            _self_signed_x5c,
            "x5c-self-signed",
        ),
        case(
            "RFC 7515 §4.1.11",
            "crit header demanding an extension the server ignores",
            "client_assertion.header",
            lambda p: es256_jws(_header(p, crit=["exp"]), assertion_claims(p), p.signing_key),
            "crit-header",
        ),
        case(
            "RFC 7797 §6",
            "unencoded payload (b64=false) read differently by two parsers",
            "client_assertion.header",
            lambda p: es256_jws(_header(p, b64=False), assertion_claims(p), p.signing_key),
            "b64-false",
        ),
        case(
            "RFC 7517 §4.2 / FAPI 2.0 §5.3.2.1",
            "assertion signed with the partner's encryption key (use=enc)",
            "client_assertion.kid",
            _signed_by_the_encryption_key,
            "encryption-key-signs",
        ),
        case(
            "OWASP WSTG-INPV-11",
            "kid path traversal to a predictable key file",
            "client_assertion.kid",
            lambda p: es256_jws(
                {"alg": "ES256", "kid": "../../../../dev/null"},
                assertion_claims(p),
                ECKey.generate_key("P-256"),
            ),
            "kid-path-traversal",
        ),
        case(
            "RFC 8725 §3.11",
            "a DPoP proof (typ dpop+jwt) presented as a client assertion",
            "client_assertion.header",
            lambda p: es256_jws(_header(p, typ="dpop+jwt"), assertion_claims(p), p.signing_key),
            "dpop-typ-as-assertion",
        ),
        case(
            "RFC 7519 §4 / RFC 8725 §3.1",
            "duplicate alg member: ES256 then none",
            "client_assertion",
            _duplicate_alg,
            "duplicate-alg-member",
        ),
        case(
            "OWASP API4:2023",
            "claims nested 2000 levels deep (parser exhaustion)",
            "client_assertion",
            _deeply_nested_claims,
            "deeply-nested-claims",
        ),
        case(
            "RFC 7523 §3 point 4",
            "exp of 1e309 (an assertion that never expires)",
            "client_assertion.exp",
            _infinite_exp,
            "infinite-exp",
        ),
    ],
)
def test_a_forged_client_assertion_is_refused_at_par_and_stores_nothing(
    journey: Journey, tables: Snapshot, make_assertion: Callable[[TestPartner], str], check: str
) -> None:
    # GIVEN an assertion a partner's key never produced as it stands
    assertion = make_assertion(journey.partner)
    # WHEN it authenticates a pushed request
    response = journey.push(client_assertion=assertion)
    # THEN the client is refused naming the check, and nothing is stored
    assert_oauth_error(response, 401, "invalid_client", check)
    assert tables() == {"RELAY_STATE_TABLE": [], "RELAY_AUDIT_TABLE": []}


@pytest.mark.attack(
    source="RFC 7523 §3 / FAPI 2.0 §5.3.2.1",
    threat="a partner signs an assertion claiming to be another partner",
)
def test_an_assertion_for_another_partner_signed_by_a_registered_partner_is_refused(
    journey: Journey, other_partner: TestPartner, tables: Snapshot
) -> None:
    forged = other_partner.client_assertion(
        ISSUER, iss=journey.partner.client_id, sub=journey.partner.client_id
    )
    response = journey.push(client_assertion=forged)
    assert_oauth_error(response, 401, "invalid_client", "client_assertion.kid")
    assert tables() == {"RELAY_STATE_TABLE": [], "RELAY_AUDIT_TABLE": []}


@pytest.mark.attack(source="RFC 8725 §3.1", threat="alg none in mixed case (nOnE) at the token endpoint")
def test_an_unsigned_assertion_in_mixed_case_cannot_redeem_a_code(journey: Journey, tables: Snapshot) -> None:
    code = journey.to_partner_code()
    before = tables()
    assertion = unsigned_jws({"alg": "nOnE", "typ": "JWT"}, assertion_claims(journey.partner))
    response = journey.redeem(code, client_assertion=assertion)
    assert_oauth_error(response, 401, "invalid_client", "client_assertion.alg")
    assert tables() == before
    assert journey.redeem(code).status_code == 200  # the code was not used up


@pytest.mark.attack(
    source="RFC 8725 §3.1 / CVE-2016-10555",
    threat="HS256 keyed with the PEM of the partner's public key, at revocation",
)
def test_an_hmac_assertion_keyed_with_the_public_pem_cannot_revoke(
    journey: Journey, tables: Snapshot
) -> None:
    token = issued_token(journey)
    before = tables()
    secret = journey.partner.signing_key.as_pem(private=False)
    assertion = hmac_jws(
        {"alg": "HS256", "typ": "JWT", "kid": journey.partner.kid},
        assertion_claims(journey.partner),
        secret,
    )
    fields = {"token": token, "client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": assertion}
    response = post_form(journey, "/revoke", fields)
    assert_oauth_error(response, 401, "invalid_client", "client_assertion.alg")
    assert tables() == before


@pytest.mark.attack(
    source="RFC 7523 §3 point 3 / RFC 9700 §2.5",
    threat="assertion minted for the revocation endpoint redeemed at the token endpoint",
)
def test_an_assertion_for_another_endpoint_cannot_redeem_a_code(journey: Journey, tables: Snapshot) -> None:
    code = journey.to_partner_code()
    before = tables()
    response = journey.redeem(code, **journey.partner.authentication(REVOKE_URL))
    assert_oauth_error(response, 401, "invalid_client", "client_assertion.aud")
    assert tables() == before


@pytest.mark.attack(
    source="RFC 7523 §3 point 7",
    threat="assertion spent at the partner audit endpoint replayed at revocation",
)
def test_an_assertion_spent_at_the_audit_endpoint_cannot_revoke(journey: Journey, tables: Snapshot) -> None:
    token = issued_token(journey)
    assertion = journey.partner.client_assertion(ISSUER)  # the issuer is a valid audience at both
    spent = journey.client.http.get("/v1/audit", headers={"Authorization": f"Bearer {assertion}"})
    assert spent.status_code == 200, spent.body
    before = tables()
    fields = {"token": token, "client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": assertion}
    response = post_form(journey, "/revoke", fields)
    assert_oauth_error(response, 401, "invalid_client", "client_assertion.jti")
    assert tables() == before


@pytest.mark.attack(
    source="FAPI 2.0 §5.3.2.1 / RFC 6749 §2.3.1",
    threat="downgrade to client_secret_basic (HTTP Basic, no assertion)",
)
def test_http_basic_client_authentication_cannot_redeem_a_code(journey: Journey, tables: Snapshot) -> None:
    code = journey.to_partner_code()
    before = tables()
    basic = base64.b64encode(f"{journey.partner.client_id}:guessed-secret".encode()).decode()
    fields = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": journey.partner.redirect_uri,
        "code_verifier": journey.pkce.verifier,
        "client_id": journey.partner.client_id,
    }
    response = post_form(
        journey,
        "/token",
        fields,
        Authorization=f"Basic {basic}",
        DPoP=journey.partner.dpop("POST", f"{ISSUER}/token"),
    )
    assert_oauth_error(response, 401, "invalid_client", "client_assertion_type")
    assert tables() == before


@pytest.mark.attack(
    source="RFC 7523 §3 point 4 / FAPI 2.0 §5.3.2.1",
    threat="clock abuse: a pre-minted assertion valid for 10 minutes at the audit endpoint",
)
def test_a_long_lived_assertion_cannot_read_the_audit_log(journey: Journey, tables: Snapshot) -> None:
    now = int(time.time())
    assertion = journey.partner.client_assertion(ISSUER, iat=now, exp=now + 600, jti=str(uuid.uuid4()))
    response = journey.client.http.get("/v1/audit", headers={"Authorization": f"Bearer {assertion}"})
    assert response.status_code == 401, response.body
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    body = json.loads(response.body)
    assert body["error"] == "invalid_token"
    assert body["error_description"].startswith("client_assertion.lifetime:")
    assert tables() == {"RELAY_STATE_TABLE": [], "RELAY_AUDIT_TABLE": []}


# -- audience injection: the issuer, as a string, is the only audience (FAPI 2.0 final §5.3.2.1) --

Send = Callable[[str], Any]  # sends a request authenticated by the given assertion


def _at_par(journey: Journey) -> Send:
    return lambda assertion: journey.push(client_assertion=assertion)


def _at_token(journey: Journey) -> Send:
    code = journey.to_partner_code()
    return lambda assertion: journey.redeem(code, client_assertion=assertion)


def _at_revocation(journey: Journey) -> Send:
    token = issued_token(journey)
    return lambda assertion: post_form(
        journey,
        "/revoke",
        {"token": token, "client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": assertion},
    )


def _at_audit(journey: Journey) -> Send:
    return lambda assertion: journey.client.http.get(
        "/v1/audit", headers={"Authorization": f"Bearer {assertion}"}
    )


def audience_case(
    threat: str, audience: str | list[str], endpoint: Callable[[Journey], Send], name: str
) -> Any:
    return pytest.param(
        audience,
        endpoint,
        id=name,
        marks=pytest.mark.attack(
            source="FAPI 2.0 §5.3.2.1 item 8 / draft-ietf-oauth-rfc7523bis", threat=threat
        ),
    )


@pytest.mark.parametrize(
    ("audience", "endpoint"),
    [
        audience_case(
            "audience injection: aud an array holding the issuer, at the token endpoint",
            [ISSUER],
            _at_token,
            "array-of-the-issuer-at-token",
        ),
        audience_case(
            "an assertion made for two servers (aud [issuer, other AS]) at revocation",
            [ISSUER, "https://other-as.example"],
            _at_revocation,
            "array-with-another-server-at-revoke",
        ),
        audience_case(
            "aud the PAR endpoint URL (RFC 9126 §2's older list) at PAR",
            f"{ISSUER}/par",
            _at_par,
            "par-endpoint-url-at-par",
        ),
        audience_case(
            "aud the token endpoint URL (RFC 7523 §3's SHOULD) at the token endpoint",
            f"{ISSUER}/token",
            _at_token,
            "token-endpoint-url-at-token",
        ),
        audience_case(
            "aud the audit endpoint URL at GET /v1/audit",
            AUDIT_URL,
            _at_audit,
            "audit-endpoint-url-at-audit",
        ),
    ],
)
def test_an_assertion_audience_other_than_the_issuer_string_is_refused_and_changes_nothing(
    journey: Journey, tables: Snapshot, audience: str | list[str], endpoint: Callable[[Journey], Send]
) -> None:
    # GIVEN what the endpoint needs (a code, a token), and an assertion by the partner's registered
    # key whose aud names this server, but not as the issuer string
    send = endpoint(journey)
    assertion = journey.partner.client_assertion(audience)
    before = tables()
    # WHEN it authenticates a request at the endpoint
    response = send(assertion)
    # THEN the client is refused naming the audience, and nothing changed
    if endpoint is _at_audit:
        assert response.status_code == 401, response.body
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert json.loads(response.body)["error_description"].startswith("client_assertion.aud:")
    else:
        assert_oauth_error(response, 401, "invalid_client", "client_assertion.aud")
    assert tables() == before
