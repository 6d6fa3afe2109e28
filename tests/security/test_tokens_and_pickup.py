"""Attacks on codes, access tokens and the pickup of sealed deliveries.

A bank's tester holding (or having stolen) a code or a DPoP-bound access token tries to redeem,
replay or re-bind it: proofs forged, replayed or made for another method, URL, moment, token or
key (RFC 9449), a bearer downgrade, a code injected into another session or redeemed by another
partner (RFC 9700 §4.5, RFC 7636), and a partner reaching for another partner's delivery
(OWASP API1:2023, broken object level authorization). Every refusal names the failed check and
leaves the tables as they were, except where a replay must be remembered (the proof's jti).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from chalicelib.adapters.dynamodb_state import flow_document
from chalicelib.settings import PARTNER_CACHE_MAX_TTL_S
from tests.fakes import ShiftedClock
from tests.functional.conftest import ISSUER, Journey, location_query
from tests.functional.test_authorization_refusals import another_journey, post_form, registry
from tests.functional.test_delivery import pick_up, redeemed, run_due
from tests.partner_helpers import Pkce, TestPartner, b64url, hmac_jws, unsigned_jws
from tests.security.helpers import (
    PAR_URL,
    SELF_INFO,
    TOKEN_URL,
    Tables,
    assert_oauth_error,
    assert_problem,
    assert_resource_refusal,
    deliver_repeated_header,
    ready_delivery,
    without,
)

Snapshot = Callable[[], Tables]
Headers = Callable[[TestPartner, str], dict[str, str]]


def _ath(token: str) -> str:
    return b64url(hashlib.sha256(token.encode()).digest())


def _proof_claims(token: str, **changes: Any) -> dict[str, Any]:
    claims = {
        "jti": str(uuid.uuid4()),
        "htm": "GET",
        "htu": SELF_INFO,
        "iat": int(time.time()),
        "ath": _ath(token),
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def _dpop(token: str, proof: str) -> dict[str, str]:
    return {"Authorization": f"DPoP {token}", "DPoP": proof}


def _hs256_with_an_oct_jwk(partner: TestPartner, token: str) -> dict[str, str]:
    secret = secrets.token_bytes(32)
    header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": b64url(secret)}}
    return _dpop(token, hmac_jws(header, _proof_claims(token), secret))


def _private_jwk(partner: TestPartner, token: str) -> dict[str, str]:
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": dict(partner.dpop_key.as_dict(private=True))}
    return _dpop(token, jwt.encode(header, _proof_claims(token), partner.dpop_key))


def _rsa_1024(partner: TestPartner, token: str) -> dict[str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc warns about the short key: that is the attack
        weak = RSAKey.generate_key(1024)
        header = {"typ": "dpop+jwt", "alg": "PS256", "jwk": dict(weak.as_dict(private=False))}
        return _dpop(token, jwt.encode(header, _proof_claims(token), weak, algorithms=["PS256"]))


def _jku_to_the_attackers_keys(partner: TestPartner, token: str) -> dict[str, str]:
    # the partner's public key in jwk, the attacker's signature, and a jku naming the attacker's JWKS
    attacker = ECKey.generate_key("P-256")
    header = {
        "typ": "dpop+jwt",
        "alg": "ES256",
        "jwk": dict(partner.dpop_key.as_dict(private=False)),
        "jku": "https://attacker.example/jwks.json",
    }
    return _dpop(token, jwt.encode(header, _proof_claims(token), attacker))


def _alg_none(partner: TestPartner, token: str) -> dict[str, str]:
    header = {"typ": "dpop+jwt", "alg": "none", "jwk": dict(partner.dpop_key.as_dict(private=False))}
    return _dpop(token, unsigned_jws(header, _proof_claims(token)))


def case(source: str, threat: str, make: Headers, status: int, error: str, check: str, name: str) -> Any:
    return pytest.param(
        make, status, error, check, id=name, marks=pytest.mark.attack(source=source, threat=threat)
    )


@pytest.mark.parametrize(
    ("make_headers", "status", "error", "check"),
    [
        case(
            "RFC 9449 §7.1 / FAPI 2.0 §5.3.3",
            "DPoP-bound token downgraded to a Bearer token",
            lambda p, t: {"Authorization": f"Bearer {t}", "DPoP": p.dpop("GET", SELF_INFO, access_token=t)},
            401,
            "invalid_token",
            "authorization",
            "bearer-downgrade",
        ),
        case(
            "RFC 9449 §7.1",
            "stolen token presented without any proof",
            lambda p, t: {"Authorization": f"DPoP {t}"},
            401,
            "invalid_dpop_proof",
            "dpop",
            "token-without-proof",
        ),
        case(
            "RFC 9449 §4.3 point 12 / §6.1",
            "stolen token replayed with the thief's own key",
            lambda p, t: _dpop(t, p.dpop("GET", SELF_INFO, access_token=t, key=ECKey.generate_key("P-256"))),
            401,
            "invalid_dpop_proof",
            "dpop.jkt",
            "token-with-another-key",
        ),
        case(
            "RFC 9449 §4.3 point 8",
            "proof made for POST replayed on GET (htm mismatch)",
            lambda p, t: _dpop(t, p.dpop("POST", SELF_INFO, access_token=t)),
            401,
            "invalid_dpop_proof",
            "dpop.htm",
            "htm-mismatch",
        ),
        case(
            "RFC 9449 §4.3 point 9",
            "proof made for the token endpoint replayed at pickup (htu mismatch)",
            lambda p, t: _dpop(t, p.dpop("GET", TOKEN_URL, access_token=t)),
            401,
            "invalid_dpop_proof",
            "dpop.htu",
            "htu-of-the-token-endpoint",
        ),
        case(
            "RFC 9449 §4.3 point 9",
            "proof made for another host's resource (htu of attacker.example)",
            lambda p, t: _dpop(t, p.dpop("GET", "https://attacker.example/v1/self-info", access_token=t)),
            401,
            "invalid_dpop_proof",
            "dpop.htu",
            "htu-of-another-host",
        ),
        case(
            "RFC 9449 §4.3 point 12 / §7.1",
            "proof not bound to the token (no ath)",
            lambda p, t: _dpop(t, p.dpop("GET", SELF_INFO)),
            401,
            "invalid_dpop_proof",
            "dpop.ath",
            "no-ath",
        ),
        case(
            "RFC 9449 §11.1",
            "clock abuse: a proof minted 61 s ago",
            lambda p, t: _dpop(t, p.dpop("GET", SELF_INFO, access_token=t, iat=int(time.time()) - 61)),
            401,
            "invalid_dpop_proof",
            "dpop.iat",
            "iat-61s-old",
        ),
        case(
            "RFC 9449 §11.1",
            "clock abuse: a proof pre-minted 15 s into the future (the window is 10 s)",
            lambda p, t: _dpop(t, p.dpop("GET", SELF_INFO, access_token=t, iat=int(time.time()) + 15)),
            401,
            "invalid_dpop_proof",
            "dpop.iat",
            "iat-15s-ahead",
        ),
        case(
            "RFC 8725 §3.1 / RFC 9449 §4.3 point 5",
            "unsigned proof (alg none)",
            _alg_none,
            401,
            "invalid_dpop_proof",
            "dpop.alg",
            "proof-alg-none",
        ),
        case(
            "RFC 8725 §3.1 / RFC 9449 §4.3 point 5",
            "HS256 proof carrying its own symmetric key (kty oct)",
            _hs256_with_an_oct_jwk,
            401,
            "invalid_dpop_proof",
            "dpop.alg",
            "proof-hs256-oct-jwk",
        ),
        case(
            "RFC 9449 §4.3 point 7",
            "proof whose jwk carries the private key",
            _private_jwk,
            401,
            "invalid_dpop_proof",
            "dpop.jwk",
            "proof-private-jwk",
        ),
        case(
            "FAPI 2.0 §5.4.1 / RFC 9449 §4.3 point 7",
            "proof signed with a 1024-bit RSA key",
            _rsa_1024,
            401,
            "invalid_dpop_proof",
            "dpop.jwk",
            "proof-rsa-1024",
        ),
        case(
            "RFC 8725 §3.10 / RFC 9449 §4.3 point 6",
            "jku pointing at the attacker's keys beside the partner's jwk",
            _jku_to_the_attackers_keys,
            401,
            "invalid_dpop_proof",
            "dpop.signature",
            "proof-jku-attacker-keys",
        ),
    ],
)
def test_a_forged_pickup_is_refused_and_changes_nothing(
    journey: Journey,
    clock: ShiftedClock,
    tables: Snapshot,
    make_headers: Headers,
    status: int,
    error: str,
    check: str,
) -> None:
    # GIVEN a sealed delivery waiting for its partner
    token, _ = ready_delivery(journey)
    before = tables()
    # WHEN the pickup carries a forged or misbound proof
    response = journey.client.http.get("/v1/self-info", headers=make_headers(journey.partner, token))
    # THEN it is refused naming the check, nothing is written, and the partner can still pick up
    assert_resource_refusal(response, status, error, check)
    assert tables() == before
    assert pick_up(journey, token).status_code == 200


@pytest.mark.parametrize(
    ("header", "status", "error"),
    [
        pytest.param(
            "dpop",
            401,
            "invalid_dpop_proof",
            id="two-dpop-headers",
            marks=pytest.mark.attack(
                source="RFC 9449 §4.3 point 1", threat="request smuggling: two DPoP headers, one per parser"
            ),
        ),
        pytest.param(
            "authorization",
            400,
            "invalid_request",
            id="two-authorization-headers",
            marks=pytest.mark.attack(
                source="RFC 6750 §2.1 / RFC 9110 §5.3",
                threat="request smuggling: two Authorization headers, one per parser",
            ),
        ),
    ],
)
def test_a_repeated_credential_header_is_refused_at_pickup(
    journey: Journey,
    clock: ShiftedClock,
    tables: Snapshot,
    monkeypatch: pytest.MonkeyPatch,
    header: str,
    status: int,
    error: str,
) -> None:
    token, _ = ready_delivery(journey)
    proof = journey.partner.dpop("GET", SELF_INFO, access_token=token)
    values = {
        "dpop": [proof, journey.partner.dpop("GET", SELF_INFO, access_token=token)],
        "authorization": ["DPoP stolen-or-forged", f"DPoP {token}"],
    }[header]
    before = tables()
    deliver_repeated_header(journey, monkeypatch, header, values)
    response = journey.client.http.get("/v1/self-info", headers=_dpop(token, proof))
    assert_resource_refusal(response, status, error, header)
    assert tables() == before


@pytest.mark.attack(source="RFC 9449 §11.1", threat="a proof captured from one pickup replayed")
def test_a_replayed_pickup_proof_is_refused(journey: Journey, clock: ShiftedClock, tables: Snapshot) -> None:
    token, _ = redeemed(journey)
    proof = journey.partner.dpop("GET", SELF_INFO, access_token=token)
    assert journey.client.http.get("/v1/self-info", headers=_dpop(token, proof)).status_code == 202
    before = tables()
    response = journey.client.http.get("/v1/self-info", headers=_dpop(token, proof))
    assert_resource_refusal(response, 401, "invalid_dpop_proof", "dpop.jti")
    assert tables() == before


@pytest.mark.attack(source="RFC 9449 §4.3 point 12", threat="proof bound (ath) to the partner's other token")
def test_a_proof_for_another_token_of_the_same_partner_is_refused(
    journey: Journey, clock: ShiftedClock, tables: Snapshot
) -> None:
    first, _ = redeemed(journey)
    second, _ = redeemed(another_journey(journey))
    assert run_due() == {"ready": 2}
    before = tables()
    response = journey.client.http.get(
        "/v1/self-info", headers=_dpop(first, journey.partner.dpop("GET", SELF_INFO, access_token=second))
    )
    assert_resource_refusal(response, 401, "invalid_dpop_proof", "dpop.ath")
    assert tables() == before


@pytest.mark.attack(
    source="OWASP API1:2023",
    threat="a partner picks up another partner's delivery by its id with its own token",
)
def test_a_partner_cannot_pick_up_another_partners_delivery(
    journey: Journey, clock: ShiftedClock, other_partner: TestPartner, tables: Snapshot
) -> None:
    _, victims_delivery = ready_delivery(journey)
    thief = Journey(client=journey.client, partner=other_partner, sandbox=journey.sandbox, pkce=Pkce())
    thiefs_token, _ = redeemed(thief)
    before = tables()
    response = pick_up(thief, thiefs_token, delivery_id=victims_delivery)
    assert_problem(response, 403, "delivery-forbidden", "delivery_id")
    assert tables() == before


@pytest.mark.attack(source="OWASP API5:2023", threat="a disabled partner keeps using a token issued before")
def test_a_disabled_partners_token_picks_up_nothing(
    journey: Journey, clock: ShiftedClock, tables: Snapshot, dynamodb_client: Any, resources: dict[str, str]
) -> None:
    token, _ = ready_delivery(journey)
    registry(dynamodb_client, resources).set_enabled(journey.partner.client_id, enabled=False)
    clock.advance(seconds=PARTNER_CACHE_MAX_TTL_S)  # every warm container refuses it by now
    before = tables()
    assert_problem(pick_up(journey, token), 403, "delivery-forbidden", "client_id")
    assert tables() == before


@pytest.mark.attack(source="RFC 7009 §2.2", threat="a token used again after the partner revoked it")
def test_a_revoked_token_picks_up_nothing(journey: Journey, clock: ShiftedClock, tables: Snapshot) -> None:
    token, _ = ready_delivery(journey)
    fields = {"token": token, **journey.partner.authentication(ISSUER)}
    assert post_form(journey, "/revoke", fields).status_code == 200
    before = tables()
    assert_resource_refusal(pick_up(journey, token), 401, "invalid_token", "access_token")
    assert tables() == before


@pytest.mark.attack(source="RFC 9700 §2.2.2 / FAPI 2.0 §5.3.2.2", threat="a token used after it expired")
def test_an_expired_token_picks_up_nothing(journey: Journey, clock: ShiftedClock, tables: Snapshot) -> None:
    token, _ = redeemed(journey)
    clock.advance(hours=2)  # past the retrieval deadline plus the purpose's data life
    before = tables()
    assert_resource_refusal(pick_up(journey, token), 401, "invalid_token", "access_token")
    assert tables() == before


@pytest.mark.attack(source="RFC 9700 §4.5 / OWASP API2:2023", threat="a token replayed after its one pickup")
def test_a_token_replayed_after_pickup_gets_nothing_again(
    journey: Journey, clock: ShiftedClock, tables: Snapshot
) -> None:
    token, _ = ready_delivery(journey)
    assert pick_up(journey, token).status_code == 200
    before = tables()
    again = pick_up(journey, token)
    assert_problem(again, 410, "delivery-gone", "delivery.picked_up")
    assert not again.body.startswith(b"ey")  # no sealed payload
    # only the fresh proof's jti is remembered
    assert without(tables(), "JTI#dpop:") == without(before, "JTI#dpop:")


@pytest.mark.attack(
    source="RFC 6749 §4.1.2 / RFC 9700 §4.5", threat="a code replayed after its delivery was picked up"
)
def test_a_code_replayed_after_pickup_issues_nothing(
    journey: Journey, clock: ShiftedClock, tables: Snapshot
) -> None:
    code = journey.to_partner_code()
    token = json.loads(journey.redeem(code).body)["access_token"]
    assert run_due() == {"ready": 1}
    assert pick_up(journey, token).status_code == 200
    before = tables()
    assert_oauth_error(journey.redeem(code), 400, "invalid_grant", "code")
    after = tables()
    # what the code issued is revoked (RFC 6749 §4.1.2); the picked-up flow and its records stay as
    # they were, and only the refused request's valid assertion and proof are spent
    # (the token's fingerprint lives in the flow's item since issue [13]: revoking it is the one
    # change to that item, besides its version)
    assert [flow["access_token_hash"] for flow in flows(before)] != [None]
    assert [flow["access_token_hash"] for flow in flows(after)] == [None]
    assert without(after, "JTI#", "FLOW#") == without(before, "JTI#", "FLOW#")
    unrelated = {"access_token_hash", "version", "updated_at"}
    assert [{k: v for k, v in flow.items() if k not in unrelated} for flow in flows(after)] == [
        {k: v for k, v in flow.items() if k not in unrelated} for flow in flows(before)
    ]


def flows(snapshot: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [
        flow_document(item) for item in snapshot["RELAY_STATE_TABLE"] if item["pk"]["S"].startswith("FLOW#")
    ]


@pytest.mark.attack(
    source="RFC 9700 §4.5 / RFC 7636 §1",
    threat="authorization code injection: the attacker's code redeemed in the victim's session",
)
def test_an_injected_code_cannot_be_redeemed_with_the_victims_verifier(
    journey: Journey, tables: Snapshot
) -> None:
    attackers_code = journey.to_partner_code()  # the attacker's own flow, at the same partner
    victims_session = Pkce()  # the partner's session of the victim holds its own verifier
    before = tables()
    response = journey.redeem(attackers_code, verifier=victims_session.verifier)
    assert_oauth_error(response, 400, "invalid_grant", "code_verifier")
    assert tables() == before


@pytest.mark.attack(
    source="RFC 9700 §4.5 / RFC 6749 §4.1.3",
    threat="another partner redeems a stolen code with the leaked PKCE verifier",
)
def test_a_stolen_code_and_verifier_are_useless_to_another_partner(
    journey: Journey, other_partner: TestPartner, tables: Snapshot
) -> None:
    code = journey.to_partner_code()
    before = tables()
    response = journey.redeem(
        code,
        verifier=journey.pkce.verifier,
        dpop=other_partner.dpop("POST", TOKEN_URL),
        redirect_uri=journey.partner.redirect_uri,
        **other_partner.authentication(ISSUER),
    )
    assert_oauth_error(response, 400, "invalid_grant", "client_id")
    assert tables() == before


@pytest.mark.attack(
    source="RFC 7636 §4.1", threat="PKCE verifier longer than 128 characters that hashes to the challenge"
)
def test_an_overlong_verifier_is_refused_even_when_it_hashes_right(
    journey: Journey, tables: Snapshot
) -> None:
    journey.pkce = Pkce(verifier="v" * 129)
    code = journey.to_partner_code()
    before = tables()
    assert_oauth_error(journey.redeem(code), 400, "invalid_grant", "code_verifier")
    assert tables() == before


@pytest.mark.attack(
    source="RFC 9449 §4.3 point 9 / OWASP WSTG-INPV-17",
    threat="Host header injection: proof htu names the attacker's host sent as Host",
)
def test_a_proof_for_a_forged_host_header_is_refused(journey: Journey, tables: Snapshot) -> None:
    code = journey.to_partner_code()
    before = tables()
    fields = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": journey.partner.redirect_uri,
        "code_verifier": journey.pkce.verifier,
        **journey.partner.authentication(ISSUER),
    }
    response = post_form(
        journey,
        "/token",
        fields,
        Host="attacker.example",
        **{"X-Forwarded-Host": "attacker.example", "X-Forwarded-Proto": "https"},
        DPoP=journey.partner.dpop("POST", "https://attacker.example/token"),
    )
    assert_oauth_error(response, 400, "invalid_dpop_proof", "dpop.htu")
    assert tables() == before


# -- a code presented by another client, unsupported grants ----------------------------------------


@pytest.mark.attack(
    source="RFC 6749 §4.1.3 / RFC 9700 §4.5",
    threat="another partner replays a used code to get its owner's token revoked",
)
def test_a_used_code_presented_by_another_partner_changes_nothing_for_its_owner(
    journey: Journey, other_partner: TestPartner, tables: Snapshot
) -> None:
    # GIVEN a code its owner redeemed
    code = journey.to_partner_code()
    token = json.loads(journey.redeem(code).body)["access_token"]
    before = tables()
    # WHEN another partner presents it with its own valid assertion and proof
    response = journey.redeem(
        code, dpop=other_partner.dpop("POST", TOKEN_URL), **other_partner.authentication(ISSUER)
    )
    # THEN it is refused for the code's owner, before the code's single use is looked at: the
    # owner's token and flow are as they were
    assert_oauth_error(response, 400, "invalid_grant", "client_id")
    assert tables() == before
    assert run_due() == {"ready": 1}
    assert pick_up(journey, token).status_code == 200


@pytest.mark.attack(
    source="RFC 6749 §5.2 / §6",
    threat="grant confusion: a refresh_token grant carrying a refresh_token and no code",
)
def test_a_refresh_token_grant_is_unsupported_whatever_it_carries(journey: Journey, tables: Snapshot) -> None:
    # GIVEN a flow pushed by the partner
    assert journey.push().status_code == 201
    before = tables()
    # WHEN the partner asks for a refresh_token grant (a parameter the code grant does not know, no code)
    fields = {
        "grant_type": "refresh_token",
        "refresh_token": secrets.token_urlsafe(32),
        **journey.partner.authentication(ISSUER),
    }
    response = post_form(journey, "/token", fields, DPoP=journey.partner.dpop("POST", TOKEN_URL))
    # THEN the grant type is named, not the parameters, and nothing is spent
    assert_oauth_error(response, 400, "unsupported_grant_type", "grant_type")
    assert tables() == before


# -- DPoP at PAR (RFC 9449 §10, §10.1): the code is bound to the key ------------------------------


def _code_pushed_with(journey: Journey, *, dpop: str | None = None, **fields: str) -> str:
    """PAR (with a DPoP header or a dpop_jkt) through the portal's callback: the partner's code."""
    assert journey.push(dpop=dpop, **fields).status_code == 201
    assert journey.show_consent().status_code == 200
    assert journey.decide().status_code == 303
    journey.at_portal()
    response = journey.callback()
    assert response.status_code == 303, response.body
    return location_query(response)["code"]


def _bound_by_proof(journey: Journey) -> str:
    return _code_pushed_with(journey, dpop=journey.partner.dpop("POST", PAR_URL))


def _bound_by_dpop_jkt(journey: Journey) -> str:
    return _code_pushed_with(journey, dpop_jkt=journey.partner.dpop_thumbprint())


@pytest.mark.parametrize(
    "push",
    [
        pytest.param(
            _bound_by_proof,
            id="bound-by-par-proof",
            marks=pytest.mark.attack(
                source="RFC 9449 §10.1",
                threat="a code pushed with a DPoP proof redeemed with a proof by another key",
            ),
        ),
        pytest.param(
            _bound_by_dpop_jkt,
            id="bound-by-dpop-jkt",
            marks=pytest.mark.attack(
                source="RFC 9449 §10",
                threat="a code pushed with dpop_jkt redeemed with a proof by another key",
            ),
        ),
    ],
)
def test_a_code_bound_at_par_cannot_be_redeemed_with_another_key(
    journey: Journey, tables: Snapshot, push: Callable[[Journey], str]
) -> None:
    # GIVEN a code the partner bound to its DPoP key when it pushed the request
    code = push(journey)
    before = tables()
    # WHEN it is redeemed (by the right client, verifier and redirect URI) with a proof by another key
    thief = ECKey.generate_key("P-256")
    response = journey.redeem(code, dpop=journey.partner.dpop("POST", TOKEN_URL, key=thief))
    # THEN the proof is refused naming the key binding, nothing changes, and the code still
    # redeems with the bound key, whose token is bound to it
    assert_oauth_error(response, 400, "invalid_dpop_proof", "dpop.jkt")
    assert "WWW-Authenticate" not in response.headers  # a token error, not a resource challenge
    assert tables() == before
    assert journey.redeem(code).status_code == 200


def _malformed(journey: Journey) -> dict[str, Any]:
    return {"dpop": "not.a-proof"}


def _htu_of_the_token_endpoint(journey: Journey) -> dict[str, Any]:
    return {"dpop": journey.partner.dpop("POST", TOKEN_URL)}


def _two_keys(journey: Journey) -> dict[str, Any]:
    return {
        "dpop": journey.partner.dpop("POST", PAR_URL),
        "dpop_jkt": ECKey.generate_key("P-256").thumbprint(),
    }


def _stale(journey: Journey) -> dict[str, Any]:
    return {"dpop": journey.partner.dpop("POST", PAR_URL, iat=int(time.time()) - 61)}


def par_case(
    source: str, threat: str, make: Callable[[Journey], dict[str, Any]], error: str, check: str, name: str
) -> Any:
    return pytest.param(make, error, check, id=name, marks=pytest.mark.attack(source=source, threat=threat))


@pytest.mark.parametrize(
    ("make", "error", "check"),
    [
        par_case(
            "RFC 9449 §10.1 / §4.3 point 2",
            "a malformed DPoP header at PAR, hoping it is ignored",
            _malformed,
            "invalid_dpop_proof",
            "dpop",
            "malformed-proof",
        ),
        par_case(
            "RFC 9449 §10.1 / §4.3 point 9",
            "a proof made for the token endpoint sent to PAR",
            _htu_of_the_token_endpoint,
            "invalid_dpop_proof",
            "dpop.htu",
            "proof-for-token-endpoint",
        ),
        par_case(
            "RFC 9449 §10.1 / §11.1",
            "a stale PAR proof (iat 61 s old)",
            _stale,
            "invalid_dpop_proof",
            "dpop.iat",
            "stale-proof",
        ),
        par_case(
            "RFC 9449 §10.1",
            "a DPoP header and a dpop_jkt naming two different keys",
            _two_keys,
            "invalid_dpop_proof",
            "dpop.jkt",
            "header-and-dpop-jkt-disagree",
        ),
        par_case(
            "RFC 9449 §10 / RFC 7638 §3",
            "a dpop_jkt that is not a SHA-256 JWK thumbprint",
            lambda j: {"dpop_jkt": "not-a-thumbprint"},
            "invalid_request",
            "dpop_jkt",
            "dpop-jkt-not-a-thumbprint",
        ),
    ],
)
def test_a_bad_dpop_binding_at_par_is_refused_and_stores_nothing(
    journey: Journey, tables: Snapshot, make: Callable[[Journey], dict[str, Any]], error: str, check: str
) -> None:
    # GIVEN a pushed request whose DPoP binding is wrong
    # WHEN it is pushed
    response = journey.push(**make(journey))
    # THEN it is refused naming the check, and nothing is stored (not even the assertion's jti)
    assert_oauth_error(response, 400, error, check)
    assert tables() == {"RELAY_STATE_TABLE": [], "RELAY_AUDIT_TABLE": []}


@pytest.mark.attack(source="RFC 9449 §10.1 / §11.1", threat="a PAR request's DPoP proof replayed at PAR")
def test_a_replayed_par_proof_is_refused_and_stores_nothing(journey: Journey, tables: Snapshot) -> None:
    # GIVEN a proof that bound a pushed request
    proof = journey.partner.dpop("POST", PAR_URL)
    assert journey.push(dpop=proof).status_code == 201
    before = tables()
    # WHEN it comes again with another (fresh) pushed request
    response = journey.push(dpop=proof)
    # THEN the proof is refused as a replay, and no flow is created
    assert_oauth_error(response, 400, "invalid_dpop_proof", "dpop.jti")
    assert tables() == before


def _forged(secret: str) -> str:
    """A secret of the attacker's making for the same flow: the flow's id (which leads every
    secret of a flow since issue [13], and which the partner is told) and a random part of its own."""
    return f"{secret.partition('.')[0]}.{secrets.token_urlsafe(32)}"


@pytest.mark.attack(
    source="RFC 6749 §10.10 / RFC 9700 §4.5",
    threat=(
        "a code forged from a real flow's id (every secret of a flow leads with its id),"
        " before and after the real code's redemption"
    ),
)
def test_a_made_up_code_naming_a_real_flow_is_unknown_and_revokes_nothing(
    journey: Journey, tables: Snapshot
) -> None:
    # GIVEN a code waiting for its partner
    code = journey.to_partner_code()
    before = tables()
    # WHEN a code made up for the same flow is presented, by the partner itself
    # THEN it is unknown, and nothing is spent or changed
    assert_oauth_error(journey.redeem(_forged(code)), 400, "invalid_grant", "code")
    assert tables() == before
    # AND once the real code is redeemed, a made-up one is still unknown: not a "replay" that
    # would revoke the token the real one issued
    token = json.loads(journey.redeem(code).body)["access_token"]
    redeemed_state = tables()
    assert_oauth_error(journey.redeem(_forged(code)), 400, "invalid_grant", "code")
    assert tables() == redeemed_state
    assert run_due() == {"ready": 1}
    assert pick_up(journey, token).status_code == 200


@pytest.mark.attack(
    source="RFC 9449 §7.1 / RFC 6750 §3.1",
    threat="an access token forged from a real flow's id (the delivery id the partner is told)",
)
def test_a_made_up_token_naming_a_real_flow_picks_up_nothing(journey: Journey, tables: Snapshot) -> None:
    # GIVEN a sealed delivery and its token
    token, _ = ready_delivery(journey)
    before = tables()
    # WHEN a token made up for the same flow is presented with a valid proof for it
    refused = pick_up(journey, _forged(token))
    # THEN it is an unknown token, nothing is handed over or changed, and the real token still works
    assert_resource_refusal(refused, 401, "invalid_token", "access_token")
    assert tables() == before
    assert pick_up(journey, token).status_code == 200


@pytest.mark.attack(
    source="RFC 9126 §2.2 / §7.1",
    threat="a request_uri forged from a real flow's id",
)
def test_a_made_up_request_uri_naming_a_real_flow_shows_nothing_and_spends_nothing(
    journey: Journey, tables: Snapshot
) -> None:
    # GIVEN a pushed request
    assert journey.push().status_code == 201
    real = journey.request_uri
    before = tables()
    # WHEN the consent page is asked for with a request_uri made up for the same flow
    journey.request_uri = "urn:ietf:params:oauth:request_uri:" + _forged(
        real.removeprefix("urn:ietf:params:oauth:request_uri:")
    )
    response = journey.show_consent()
    journey.request_uri = real
    # THEN it is an error page naming the request_uri, nothing changed, and the real one still works
    assert response.status_code == 400
    assert b"request_uri" in response.body
    assert tables() == before
    assert journey.show_consent().status_code == 200
