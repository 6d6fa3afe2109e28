"""DPoP proofs (RFC 9449 section 4.3): each refusal names its check; the clock window is 60 s back, 10 s ahead."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from chalicelib.domain.oauth.dpop import (
    ALLOWED_ALGORITHMS,
    DPOP_TYP,
    MAX_AGE,
    MAX_FUTURE,
    DpopProof,
    access_token_hash,
    normalise_htu,
    verify_dpop_proof,
)
from chalicelib.domain.oauth.errors import InvalidDpopProof
from tests.unit.oauth.conftest import (
    NOW,
    NOW_TS,
    Json,
    Key,
    b64url,
    hmac_signed,
    public_dict,
    sign,
    signing_input,
    unsigned,
)

# joserfc warns that RFC 9864 deprecates the polymorphic "EdDSA" name; FAPI 2.0 and our metadata use it.
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")

METHOD = "POST"
URL = "https://relay.example/token"
ACCESS_TOKEN = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"  # RFC 9449 section 7.1 example
DROP = object()  # claims(htu=DROP) removes the claim


def claims(**overrides: Any) -> Json:
    values: Json = {"jti": "e1j3V_bKic8-LAEB", "htm": METHOD, "htu": URL, "iat": NOW_TS}
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not DROP}


def header(key: Key, alg: str = "ES256", **overrides: Any) -> Json:
    values: Json = {"typ": DPOP_TYP, "alg": alg, "jwk": public_dict(key)}
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not DROP}


def proof(key: Key, alg: str = "ES256", *, head: Json | None = None, **claim_overrides: Any) -> str:
    return sign(header(key, alg) if head is None else head, claims(**claim_overrides), key, alg)


def verify(value: str | None, *, method: str = METHOD, url: str = URL, **kwargs: Any) -> DpopProof:
    return verify_dpop_proof(value, method=method, url=url, now=kwargs.pop("now", NOW), **kwargs)


def refusal(value: str | None, **kwargs: Any) -> InvalidDpopProof:
    with pytest.raises(InvalidDpopProof) as caught:
        verify(value, **kwargs)
    return caught.value


def rfc7638_thumbprint(members: Json) -> str:
    """RFC 7638 section 3, written out independently of the code under test."""
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode("ascii")


# --- happy paths -------------------------------------------------------------------------------------


def test_an_es256_proof_is_accepted_and_yields_its_key_thumbprint_jti_and_time(ec_key: ECKey) -> None:
    # GIVEN a proof made by a standard library
    value = jwt.encode(header(ec_key), claims(), ec_key, algorithms=["ES256"])
    # WHEN it is verified  THEN the RFC 7638 thumbprint, jti and iat come back
    jwk = public_dict(ec_key)
    assert verify(value) == DpopProof(
        jkt=rfc7638_thumbprint({"crv": jwk["crv"], "kty": "EC", "x": jwk["x"], "y": jwk["y"]}),
        jti="e1j3V_bKic8-LAEB",
        issued_at=NOW,
    )


def test_a_ps256_proof_with_a_2048_bit_rsa_key_is_accepted(rsa_key: RSAKey) -> None:
    jwk = public_dict(rsa_key)
    result = verify(jwt.encode(header(rsa_key, "PS256"), claims(), rsa_key, algorithms=["PS256"]))
    assert result.jkt == rfc7638_thumbprint({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]})


def test_an_eddsa_proof_with_an_ed25519_key_is_accepted(ed_key: OKPKey) -> None:
    jwk = public_dict(ed_key)
    result = verify(jwt.encode(header(ed_key, "EdDSA"), claims(), ed_key, algorithms=["EdDSA"]))
    assert result.jkt == rfc7638_thumbprint({"crv": "Ed25519", "kty": "OKP", "x": jwk["x"]})


def test_the_thumbprint_ignores_optional_jwk_members(ec_key: ECKey) -> None:
    plain = verify(proof(ec_key)).jkt
    decorated = verify(
        proof(ec_key, head=header(ec_key, jwk={**public_dict(ec_key), "kid": "k", "use": "sig"}))
    ).jkt
    assert decorated == plain


def test_the_issued_at_is_an_aware_utc_datetime(ec_key: ECKey) -> None:
    issued_at = verify(proof(ec_key, iat=NOW_TS - 5)).issued_at
    assert issued_at == NOW - timedelta(seconds=5)
    assert issued_at.tzinfo is UTC


def test_constants_are_those_of_the_standards() -> None:
    assert (DPOP_TYP, ALLOWED_ALGORITHMS) == ("dpop+jwt", ("ES256", "PS256", "EdDSA"))
    assert (timedelta(seconds=60), timedelta(seconds=10)) == (MAX_AGE, MAX_FUTURE)


# --- dpop: structure ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("not-a-jwt", id="one-part"),
        pytest.param("a.b.c.d.e", id="five-parts"),
        pytest.param("é.b.c", id="non-ascii"),
        pytest.param(b64url(b'{"typ":"dpop+jwt"}') + "." + b64url(b"[]") + ".c2ln", id="payload-an-array"),
        pytest.param(b64url(b"not json") + "." + b64url(b"{}") + ".c2ln", id="header-not-json"),
        pytest.param(b64url(b'{"typ":"dpop+jwt"}') + "..c2ln", id="detached-payload"),
    ],
)
def test_a_missing_or_malformed_proof_is_refused(value: str | None) -> None:
    assert refusal(value).check == "dpop"


def test_a_proof_longer_than_8192_bytes_is_refused(ec_key: ECKey) -> None:
    value = proof(ec_key, padding="x" * 8192)
    assert len(value) > 8192
    assert refusal(value).check == "dpop"


def test_a_proof_with_a_duplicate_claim_name_is_refused(ec_key: ECKey) -> None:
    payload = b'{"htu":"https://attacker.example/","htu":"https://relay.example/token","htm":"POST"}'
    assert refusal(sign(header(ec_key), payload, ec_key, "ES256")).check == "dpop"


# --- dpop.typ ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("typ", [DROP, "JWT", "DPOP+JWT", "application/dpop+jwt", "at+jwt"])
def test_a_typ_other_than_exactly_dpop_jwt_is_refused(typ: Any, ec_key: ECKey) -> None:
    # Explicit typing (RFC 8725 section 3.11): an ID token or client assertion is not a DPoP proof.
    assert refusal(proof(ec_key, head=header(ec_key, typ=typ))).check == "dpop.typ"


# --- dpop.alg ------------------------------------------------------------------------------------------


def test_an_unsigned_proof_with_alg_none_is_refused(ec_key: ECKey) -> None:
    assert refusal(unsigned(header(ec_key, "none"), claims())).check == "dpop.alg"


def test_a_proof_signed_with_hs256_keyed_by_its_own_jwk_is_refused(ec_key: ECKey) -> None:
    secret = json.dumps(public_dict(ec_key)).encode()
    assert refusal(hmac_signed(header(ec_key, "HS256"), claims(), secret)).check == "dpop.alg"


@pytest.mark.parametrize("alg", ["RS256", "ES384", "Ed25519", DROP])
def test_an_alg_outside_the_allowed_list_is_refused(alg: Any, rsa_key: RSAKey) -> None:
    head = header(rsa_key, alg)
    assert refusal(sign(head, claims(), rsa_key, "PS256")).check == "dpop.alg"


# --- dpop.jwk ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("jwk", [DROP, "not-an-object", ["list"], None])
def test_a_missing_or_non_object_jwk_is_refused(jwk: Any, ec_key: ECKey) -> None:
    assert refusal(proof(ec_key, head=header(ec_key, jwk=jwk))).check == "dpop.jwk"


def test_a_jwk_carrying_the_private_key_is_refused(ec_key: ECKey) -> None:
    # The prover leaked its private key into the header; it must not be used (RFC 9449 section 4.3 point 7).
    private = dict(ec_key.as_dict(private=True))
    assert "d" in private
    assert refusal(proof(ec_key, head=header(ec_key, jwk=private))).check == "dpop.jwk"


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "k"])
def test_a_jwk_with_any_private_member_is_refused(member: str, rsa_key: RSAKey) -> None:
    jwk = {**public_dict(rsa_key), member: "AQAB"}
    assert refusal(proof(rsa_key, "PS256", head=header(rsa_key, "PS256", jwk=jwk))).check == "dpop.jwk"


def test_a_symmetric_jwk_is_refused(ec_key: ECKey) -> None:
    oct_public = {"kty": "oct"}
    assert OctKey.generate_key(256).as_dict()["kty"] == "oct"
    assert refusal(proof(ec_key, head=header(ec_key, jwk=oct_public))).check == "dpop.jwk"


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda jwk: {**jwk, "x": jwk["y"]}, id="point-not-on-curve"),
        pytest.param(lambda jwk: {**jwk, "x": "!!"}, id="x-not-base64url"),
        pytest.param(lambda jwk: {k: v for k, v in jwk.items() if k != "y"}, id="y-missing"),
        pytest.param(lambda jwk: {**jwk, "x": 7}, id="x-not-a-string"),
        pytest.param(lambda jwk: {**jwk, "kty": "XYZ"}, id="unknown-kty"),
        pytest.param(lambda jwk: {k: v for k, v in jwk.items() if k != "kty"}, id="kty-missing"),
    ],
)
def test_a_jwk_that_is_not_a_valid_public_key_is_refused(mutate: Any, ec_key: ECKey) -> None:
    jwk = mutate(public_dict(ec_key))
    assert refusal(proof(ec_key, head=header(ec_key, jwk=jwk))).check == "dpop.jwk"


def test_an_es256_proof_with_a_p384_key_is_refused() -> None:
    key = ECKey.generate_key("P-384")
    assert refusal(sign(header(key, "ES256"), claims(), key, "ES384")).check == "dpop.jwk"


@pytest.mark.filterwarnings("error")
def test_a_ps256_proof_with_a_1024_bit_rsa_key_is_refused_without_importing_it() -> None:
    # GIVEN a weak key (joserfc warns when it imports one, so the test's own import expects that)
    with pytest.warns(SecurityWarning, match="2048"):
        weak = RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    value = proof(weak, "PS256")
    # THEN verification refuses it, and raises no warning of its own (any warning is an error here)
    assert refusal(value).check == "dpop.jwk"


def test_an_eddsa_proof_with_an_ed448_key_is_refused() -> None:
    key = OKPKey.generate_key("Ed448")
    assert refusal(proof(key, "EdDSA")).check == "dpop.jwk"


def test_an_es256_header_with_an_rsa_jwk_is_refused(ec_key: ECKey, rsa_key: RSAKey) -> None:
    head = header(ec_key, "ES256", jwk=public_dict(rsa_key))
    assert refusal(proof(ec_key, head=head)).check == "dpop.jwk"


def test_a_ps256_header_with_an_ec_jwk_is_refused(ec_key: ECKey, rsa_key: RSAKey) -> None:
    head = header(rsa_key, "PS256", jwk=public_dict(ec_key))
    assert refusal(proof(rsa_key, "PS256", head=head)).check == "dpop.jwk"


# --- dpop.signature ------------------------------------------------------------------------------------


def test_a_proof_signed_by_a_key_other_than_the_header_jwk_is_refused(ec_key: ECKey) -> None:
    # GIVEN an attacker who stole a token bound to ec_key: they can copy its jwk but not sign with it
    attacker = ECKey.generate_key("P-256")
    value = sign(header(ec_key), claims(), attacker, "ES256")
    assert refusal(value).check == "dpop.signature"


def test_a_proof_whose_claims_were_changed_after_signing_is_refused(ec_key: ECKey) -> None:
    genuine = proof(ec_key, htu="https://relay.example/other")
    head, _, signature = genuine.split(".")
    forged_payload = signing_input(header(ec_key), claims()).split(".")[1]
    assert refusal(f"{head}.{forged_payload}.{signature}").check == "dpop.signature"


@pytest.mark.parametrize("signature", ["", "AAAA", "not*base64"])
def test_an_empty_or_malformed_signature_is_refused(signature: str, ec_key: ECKey) -> None:
    assert refusal(f"{signing_input(header(ec_key), claims())}.{signature}").check == "dpop.signature"


# --- dpop.jti ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "jti",
    [
        pytest.param(DROP, id="missing"),
        pytest.param("", id="empty"),
        pytest.param(42, id="number"),
        pytest.param("j" * 257, id="257-characters"),
    ],
)
def test_a_jti_that_is_missing_empty_not_a_string_or_too_long_is_refused(jti: Any, ec_key: ECKey) -> None:
    assert refusal(proof(ec_key, jti=jti)).check == "dpop.jti"


def test_a_jti_of_256_characters_is_accepted(ec_key: ECKey) -> None:
    assert verify(proof(ec_key, jti="j" * 256)).jti == "j" * 256


def test_the_same_proof_verifies_twice_because_replay_is_the_callers_check(ec_key: ECKey) -> None:
    value = proof(ec_key)
    assert verify(value) == verify(value)


# --- dpop.htm ------------------------------------------------------------------------------------------


def test_a_proof_replayed_with_another_method_is_refused(ec_key: ECKey) -> None:
    # GIVEN a proof made for POST  WHEN it is presented on a GET
    assert refusal(proof(ec_key, htm="POST"), method="GET").check == "dpop.htm"


@pytest.mark.parametrize("htm", ["post", "Post", DROP, ["POST"]])
def test_an_htm_not_exactly_the_method_is_refused(htm: Any, ec_key: ECKey) -> None:
    assert refusal(proof(ec_key, htm=htm)).check == "dpop.htm"


# --- dpop.htu ------------------------------------------------------------------------------------------


def test_a_proof_replayed_against_another_url_is_refused(ec_key: ECKey) -> None:
    # GIVEN a proof made for the token endpoint  WHEN it is presented at a resource endpoint
    value = proof(ec_key, htu=URL)
    assert refusal(value, url="https://relay.example/v1/deliveries/abc").check == "dpop.htu"


@pytest.mark.parametrize(
    ("htu", "url"),
    [
        pytest.param(URL, URL + "?resource=x", id="request-has-a-query"),
        pytest.param(URL + "?resource=x", URL, id="htu-has-a-query"),
        pytest.param(URL + "#frag", URL, id="htu-has-a-fragment"),
        pytest.param("https://RELAY.Example/token", URL, id="host-case"),
        pytest.param("HTTPS://relay.example/token", URL, id="scheme-case"),
        pytest.param("https://relay.example:443/token", URL, id="default-port"),
        pytest.param("https://relay.example/%74oken", URL, id="percent-encoded-unreserved"),
        pytest.param("https://relay.example", "https://relay.example/", id="empty-path"),
    ],
)
def test_an_htu_equal_after_normalisation_is_accepted(htu: str, url: str, ec_key: ECKey) -> None:
    assert verify(proof(ec_key, htu=htu), url=url).jti


@pytest.mark.parametrize(
    "htu",
    [
        pytest.param("https://relay.example/TOKEN", id="path-case"),
        pytest.param("https://relay.example/token/", id="trailing-slash"),
        pytest.param("https://relay.example/par", id="other-path"),
        pytest.param("http://relay.example/token", id="other-scheme"),
        pytest.param("https://relay.example:8443/token", id="other-port"),
        pytest.param("https://relay.example.attacker.example/token", id="other-host"),
        pytest.param("/token", id="relative"),
        pytest.param("https://relay.example:99999/token", id="invalid-port"),
        pytest.param(DROP, id="missing"),
        pytest.param(["https://relay.example/token"], id="not-a-string"),
    ],
)
def test_an_htu_for_another_resource_is_refused(htu: Any, ec_key: ECKey) -> None:
    assert refusal(proof(ec_key, htu=htu)).check == "dpop.htu"


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("HTTPS://Relay.Example:443/token?x=1#f", "https://relay.example/token"),
        ("http://relay.example:80", "http://relay.example/"),
        ("http://relay.example:8080/a", "http://relay.example:8080/a"),
        ("https://relay.example/a/./b/../c", "https://relay.example/a/c"),
        ("https://relay.example/%7euser/%2f", "https://relay.example/~user/%2F"),
        ("https://[::1]:8443/x", "https://[::1]:8443/x"),
    ],
)
def test_normalise_htu_follows_rfc_3986_section_6(url: str, normalised: str) -> None:
    assert normalise_htu(url) == normalised


@pytest.mark.parametrize("url", ["/token", "ftp://relay.example/x", "https:///token", "https://h:70000/"])
def test_normalise_htu_refuses_what_is_not_an_absolute_http_uri(url: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        normalise_htu(url)


# --- dpop.iat ------------------------------------------------------------------------------------------


def test_an_iat_61_seconds_old_is_refused(ec_key: ECKey) -> None:
    assert refusal(proof(ec_key, iat=NOW_TS - 61)).check == "dpop.iat"


@pytest.mark.parametrize("age", [59, 60])
def test_an_iat_up_to_60_seconds_old_is_accepted(age: int, ec_key: ECKey) -> None:
    assert verify(proof(ec_key, iat=NOW_TS - age)).issued_at == NOW - timedelta(seconds=age)


def test_an_iat_11_seconds_in_the_future_is_refused(ec_key: ECKey) -> None:
    assert refusal(proof(ec_key, iat=NOW_TS + 11)).check == "dpop.iat"


@pytest.mark.parametrize("ahead", [9, 10])
def test_an_iat_up_to_10_seconds_in_the_future_is_accepted(ahead: int, ec_key: ECKey) -> None:
    assert verify(proof(ec_key, iat=NOW_TS + ahead)).issued_at == NOW + timedelta(seconds=ahead)


def test_a_captured_proof_is_refused_once_the_window_has_passed(ec_key: ECKey) -> None:
    # GIVEN a proof accepted now  WHEN it is replayed 61 s later (time injected, no sleeping)
    value = proof(ec_key)
    verify(value)
    assert refusal(value, now=NOW + timedelta(seconds=61)).check == "dpop.iat"


@pytest.mark.parametrize("iat", [DROP, str(NOW_TS), True, None, 10**400])
def test_an_iat_that_is_missing_or_not_a_number_is_refused(iat: Any, ec_key: ECKey) -> None:
    assert refusal(proof(ec_key, iat=iat)).check == "dpop.iat"


# --- dpop.ath ------------------------------------------------------------------------------------------


def test_access_token_hash_matches_the_rfc_9449_example() -> None:
    assert access_token_hash(ACCESS_TOKEN) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


def test_a_proof_with_the_access_token_hash_is_accepted_on_a_resource_request(ec_key: ECKey) -> None:
    value = proof(ec_key, ath=access_token_hash(ACCESS_TOKEN))
    assert verify(value, access_token=ACCESS_TOKEN).jti


def test_a_proof_without_ath_is_refused_on_a_resource_request(ec_key: ECKey) -> None:
    assert refusal(proof(ec_key), access_token=ACCESS_TOKEN).check == "dpop.ath"


@pytest.mark.parametrize("ath", [access_token_hash("another-token"), 7, ""])
def test_a_proof_for_another_access_token_is_refused(ath: Any, ec_key: ECKey) -> None:
    assert refusal(proof(ec_key, ath=ath), access_token=ACCESS_TOKEN).check == "dpop.ath"


def test_a_non_ascii_access_token_is_refused_on_ath(ec_key: ECKey) -> None:
    assert refusal(proof(ec_key, ath="x"), access_token="tökén").check == "dpop.ath"


def test_an_ath_is_ignored_when_there_is_no_access_token(ec_key: ECKey) -> None:
    # At the token endpoint there is no access token yet; an ath there proves nothing and harms nothing.
    assert verify(proof(ec_key, ath=access_token_hash("whatever"))).jti


# --- dpop.jkt ------------------------------------------------------------------------------------------


def test_a_proof_by_the_key_the_token_is_bound_to_is_accepted(ec_key: ECKey) -> None:
    bound = verify(proof(ec_key)).jkt
    assert verify(proof(ec_key), expected_jkt=bound).jkt == bound


def test_a_proof_by_another_key_than_the_token_is_bound_to_is_refused(ec_key: ECKey) -> None:
    # GIVEN a token bound to ec_key  WHEN a thief presents it with a valid proof of their own key
    bound = verify(proof(ec_key)).jkt
    thief = ECKey.generate_key("P-256")
    value = proof(thief, ath=access_token_hash(ACCESS_TOKEN))
    assert refusal(value, access_token=ACCESS_TOKEN, expected_jkt=bound).check == "dpop.jkt"


# --- errors and inputs ---------------------------------------------------------------------------------


def test_refusals_are_invalid_dpop_proof_errors(ec_key: ECKey) -> None:
    error = refusal(proof(ec_key, iat=NOW_TS - 61))
    assert (error.error, error.status) == ("invalid_dpop_proof", 400)
    assert error.description.startswith("dpop.iat: ")


@pytest.mark.parametrize("case", ["jwk", "signature", "htu", "ath", "jkt"])
def test_a_refusal_detail_never_contains_the_proof_the_token_or_key_material(
    case: str, ec_key: ECKey
) -> None:
    other = ECKey.generate_key("P-256")
    bound = verify(proof(other)).jkt
    value, kwargs = {
        "jwk": (proof(ec_key, head=header(ec_key, jwk=dict(ec_key.as_dict(private=True)))), {}),
        "signature": (sign(header(ec_key), claims(), other, "ES256"), {}),
        "htu": (proof(ec_key, htu="https://htu-from-attacker.example/"), {}),
        "ath": (proof(ec_key, ath="ath-from-attacker"), {"access_token": ACCESS_TOKEN}),
        "jkt": (proof(ec_key), {"expected_jkt": bound}),
    }[case]
    error = refusal(value, **kwargs)
    text = f"{error} {error.description}"
    private = ec_key.as_dict(private=True)
    forbidden = [
        *value.split("."),
        ACCESS_TOKEN,
        str(private["d"]),
        str(private["x"]),
        bound,
        verify(proof(ec_key)).jkt,
        "htu-from-attacker",
        "ath-from-attacker",
    ]
    assert not [item for item in forbidden if item and item in text]


def test_a_naive_now_is_a_programming_error(ec_key: ECKey) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(proof(ec_key), now=NOW.replace(tzinfo=None))
