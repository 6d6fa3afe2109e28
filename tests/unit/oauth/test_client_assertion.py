"""private_key_jwt client assertions (RFC 7523 section 3, FAPI 2.0, RFC 9700): each refusal names its check."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from chalicelib.domain.oauth.client_assertion import (
    ALLOWED_ALGORITHMS,
    CLIENT_ASSERTION_TYPE,
    ClientAssertion,
    parse_unverified_client_id,
    verify_client_assertion,
)
from chalicelib.domain.oauth.errors import InvalidClient
from chalicelib.domain.partners import PartnerJwks
from tests.unit.oauth.conftest import (
    NOW,
    NOW_TS,
    Json,
    b64url,
    hmac_signed,
    partner_jwks,
    public_dict,
    sign,
    signing_input,
    unsigned,
)

# joserfc warns that RFC 9864 deprecates the polymorphic "EdDSA" name; FAPI 2.0 and our metadata use it.
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")

CLIENT_ID = "acme-bank"
ISSUER = "https://relay.example"
TOKEN_ENDPOINT = "https://relay.example/token"
PAR_ENDPOINT = "https://relay.example/par"
KID = "acme-sig-1"
DROP = object()  # claims(exp=DROP) removes the claim
ES256_HEADER = b64url(b'{"alg":"ES256"}')
EMPTY_OBJECT = b64url(b"{}")


def claims(**overrides: Any) -> Json:
    values: Json = {
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": ISSUER,
        "iat": NOW_TS,
        "exp": NOW_TS + 60,
        "jti": "a1b2c3d4-assertion",
    }
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not DROP}


def header(alg: str = "ES256", **extra: Any) -> Json:
    return {"alg": alg, "kid": KID, **extra}


def verify(
    assertion: str, jwks: PartnerJwks, *, now: datetime = NOW, client_id: str = CLIENT_ID
) -> ClientAssertion:
    return verify_client_assertion(assertion, client_id=client_id, jwks=jwks, issuer=ISSUER, now=now)


def refusal(assertion: str, jwks: PartnerJwks, *, now: datetime = NOW) -> InvalidClient:
    with pytest.raises(InvalidClient) as caught:
        verify(assertion, jwks, now=now)
    return caught.value


@pytest.fixture
def jwks(ec_key: ECKey) -> PartnerJwks:
    """The partner registered one ES256 signing key, ``ec_key``, under KID."""
    return partner_jwks((ec_key, "ES256", KID))


# --- happy paths -------------------------------------------------------------------------------------


def test_an_es256_assertion_signed_with_the_registered_key_is_accepted(
    ec_key: ECKey, jwks: PartnerJwks
) -> None:
    # GIVEN an assertion made by a standard library with the partner's registered key
    assertion = jwt.encode(header(), claims(), ec_key, algorithms=["ES256"])
    # WHEN it is verified  THEN what it proves is returned
    assert verify(assertion, jwks) == ClientAssertion(
        client_id=CLIENT_ID,
        jti="a1b2c3d4-assertion",
        expires_at=datetime.fromtimestamp(NOW_TS + 60, UTC),
        kid=KID,
    )


def test_a_ps256_assertion_signed_with_a_2048_bit_rsa_key_is_accepted(rsa_key: RSAKey) -> None:
    jwks = partner_jwks((rsa_key, "PS256", KID))
    assertion = jwt.encode(header("PS256"), claims(), rsa_key, algorithms=["PS256"])
    assert verify(assertion, jwks).kid == KID


def test_an_eddsa_assertion_signed_with_an_ed25519_key_is_accepted(ed_key: OKPKey) -> None:
    jwks = partner_jwks((ed_key, "EdDSA", KID))
    assertion = jwt.encode(header("EdDSA"), claims(), ed_key, algorithms=["EdDSA"])
    assert verify(assertion, jwks).kid == KID


def test_expires_at_is_the_exp_claim_as_an_aware_utc_datetime(ec_key: ECKey, jwks: PartnerJwks) -> None:
    result = verify(sign(header(), claims(exp=NOW_TS + 90), ec_key, "ES256"), jwks)
    assert result.expires_at == NOW + timedelta(seconds=90)
    assert result.expires_at.tzinfo is UTC


def test_aud_as_a_string_naming_the_issuer_is_accepted(ec_key: ECKey, jwks: PartnerJwks) -> None:
    assert verify(sign(header(), claims(aud=ISSUER), ec_key, "ES256"), jwks).client_id == CLIENT_ID


def test_an_assertion_without_kid_is_verified_with_the_only_signing_key_of_its_alg(
    ec_key: ECKey, rsa_key: RSAKey
) -> None:
    # GIVEN two signing keys with different algorithms  WHEN the header names no kid
    jwks = partner_jwks((rsa_key, "PS256", "acme-rsa"), (ec_key, "ES256", "acme-ec"))
    assertion = sign({"alg": "ES256"}, claims(), ec_key, "ES256")
    # THEN the one ES256 key is selected
    assert verify(assertion, jwks).kid == "acme-ec"


def test_the_kid_selects_among_several_signing_keys_with_the_same_alg(ec_key: ECKey) -> None:
    other = ECKey.generate_key("P-256")
    jwks = partner_jwks((other, "ES256", "acme-old"), (ec_key, "ES256", "acme-new"))
    assertion = sign({"alg": "ES256", "kid": "acme-new"}, claims(), ec_key, "ES256")
    assert verify(assertion, jwks).kid == "acme-new"


@pytest.mark.parametrize("typ", ["JWT", "jwt"])
def test_typ_jwt_in_any_case_is_accepted(typ: str, ec_key: ECKey, jwks: PartnerJwks) -> None:
    assert verify(sign(header(typ=typ), claims(), ec_key, "ES256"), jwks).kid == KID


def test_an_unknown_non_critical_header_parameter_is_ignored(ec_key: ECKey, jwks: PartnerJwks) -> None:
    # RFC 7515 section 4: header parameters not understood are ignored unless listed in crit.
    assert verify(sign(header(vendor_hint="x"), claims(), ec_key, "ES256"), jwks).kid == KID


def test_constants_are_those_of_fapi_2_and_rfc_7523() -> None:
    assert ALLOWED_ALGORITHMS == ("ES256", "PS256", "EdDSA")
    assert CLIENT_ASSERTION_TYPE == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


# --- client_assertion: structure ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "assertion",
    [
        pytest.param("", id="empty"),
        pytest.param("not-a-jwt", id="one-part"),
        pytest.param("a.b", id="two-parts"),
        pytest.param("a.b.c.d", id="four-parts"),
        pytest.param("a.b.c.d.e", id="jwe-shaped"),
        pytest.param(b64url(b"{not json") + "." + EMPTY_OBJECT + ".c2ln", id="header-not-json"),
        pytest.param(ES256_HEADER + ".***.c2ln", id="payload-not-base64url"),
        pytest.param(ES256_HEADER + "." + b64url(b"[1,2]") + ".c2ln", id="payload-an-array"),
        pytest.param(b64url(b'"ES256"') + "." + EMPTY_OBJECT + ".c2ln", id="header-a-string"),
        pytest.param(ES256_HEADER + "..c2ln", id="detached-payload"),
        pytest.param("é.b.c", id="non-ascii"),
    ],
)
def test_a_value_that_is_not_a_compact_jws_with_json_objects_is_refused(
    assertion: str, jwks: PartnerJwks
) -> None:
    assert refusal(assertion, jwks).check == "client_assertion"


def test_an_assertion_longer_than_8192_bytes_is_refused_before_parsing(
    ec_key: ECKey, jwks: PartnerJwks
) -> None:
    # GIVEN a validly signed assertion padded with a large claim
    assertion = sign(header(), claims(padding="x" * 8192), ec_key, "ES256")
    assert len(assertion) > 8192
    # THEN it is refused as a whole, not for its signature or claims
    assert refusal(assertion, jwks).check == "client_assertion"


def test_a_payload_with_a_duplicate_claim_name_is_refused(ec_key: ECKey, jwks: PartnerJwks) -> None:
    # RFC 7515 section 4: two parsers could read two different iss values out of this payload.
    payload = b'{"iss":"someone-else","iss":"acme-bank","sub":"acme-bank","aud":"https://relay.example"}'
    assert refusal(sign(header(), payload, ec_key, "ES256"), jwks).check == "client_assertion"


def test_a_header_with_a_duplicate_parameter_name_is_refused(ec_key: ECKey, jwks: PartnerJwks) -> None:
    raw_header = b'{"alg":"HS256","alg":"ES256","kid":"acme-sig-1"}'
    assert refusal(sign(raw_header, claims(), ec_key, "ES256"), jwks).check == "client_assertion"


def test_a_payload_with_a_nan_number_is_refused(ec_key: ECKey, jwks: PartnerJwks) -> None:
    payload = b'{"iss":"acme-bank","sub":"acme-bank","aud":"https://relay.example","exp":NaN}'
    assert refusal(sign(header(), payload, ec_key, "ES256"), jwks).check == "client_assertion"


# --- client_assertion.alg ------------------------------------------------------------------------------


def test_an_unsigned_assertion_with_alg_none_is_refused(jwks: PartnerJwks) -> None:
    # GIVEN the classic downgrade: alg=none and an empty signature
    assertion = unsigned({"alg": "none", "kid": KID}, claims())
    # THEN it is refused on its algorithm
    assert refusal(assertion, jwks).check == "client_assertion.alg"


@pytest.mark.parametrize("spelling", ["None", "NONE", "nOnE"])
def test_alg_none_in_any_spelling_is_refused(spelling: str, jwks: PartnerJwks) -> None:
    assert refusal(unsigned({"alg": spelling, "kid": KID}, claims()), jwks).check == "client_assertion.alg"


@pytest.mark.parametrize("encoding", ["pem", "der", "jwk-json"])
def test_an_assertion_signed_with_hs256_using_the_public_key_is_refused(
    encoding: str, ec_key: ECKey, jwks: PartnerJwks
) -> None:
    # GIVEN the key-confusion attack: HMAC keyed with the partner's *public* key, which anyone has
    public = ec_key.public_key
    secret = {
        "pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk-json": jwks.signing_keys()[0].model_dump_json(exclude_none=True).encode(),
    }[encoding]
    assertion = hmac_signed({"alg": "HS256", "kid": KID}, claims(), secret)
    # THEN HMAC is never an accepted algorithm
    assert refusal(assertion, jwks).check == "client_assertion.alg"


def test_an_rs256_assertion_is_refused_even_with_a_registered_rsa_key(rsa_key: RSAKey) -> None:
    jwks = partner_jwks((rsa_key, "PS256", KID))
    assertion = sign(header("RS256"), claims(), rsa_key, "RS256")
    assert refusal(assertion, jwks).check == "client_assertion.alg"


def test_an_assertion_without_alg_is_refused(ec_key: ECKey, jwks: PartnerJwks) -> None:
    assert refusal(sign({"kid": KID}, claims(), ec_key, "ES256"), jwks).check == "client_assertion.alg"


def test_an_alg_other_than_the_registered_keys_alg_is_refused(ed_key: OKPKey, ec_key: ECKey) -> None:
    # GIVEN the partner registered ed_key for EdDSA under KID
    jwks = partner_jwks((ed_key, "EdDSA", KID), (ec_key, "ES256", "acme-ec"))
    # WHEN an assertion names KID but says ES256
    assertion = sign(header("ES256"), claims(), ec_key, "ES256")
    # THEN the algorithm the key is bound to wins
    assert refusal(assertion, jwks).check == "client_assertion.alg"


# --- client_assertion.header ---------------------------------------------------------------------------


def test_an_assertion_carrying_its_own_verification_key_in_jwk_is_refused(jwks: PartnerJwks) -> None:
    # GIVEN an attacker who signs with their own key and embeds its public half
    attacker = ECKey.generate_key("P-256")
    assertion = sign({"alg": "ES256", "jwk": public_dict(attacker)}, claims(), attacker, "ES256")
    # THEN the embedded key is never trusted
    assert refusal(assertion, jwks).check == "client_assertion.header"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("jku", "https://attacker.example/jwks.json"),
        ("x5u", "https://attacker.example/cert.pem"),
        ("x5c", ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]),
        ("crit", ["exp"]),
    ],
)
def test_an_assertion_pointing_at_keys_or_critical_extensions_is_refused(
    name: str, value: Any, ec_key: ECKey, jwks: PartnerJwks
) -> None:
    # Even when signed with the registered key: keys come only from the registered JWKS.
    assertion = sign(header(**{name: value}), claims(), ec_key, "ES256")
    assert refusal(assertion, jwks).check == "client_assertion.header"


@pytest.mark.parametrize("typ", ["dpop+jwt", "at+jwt", "JWS", 1])
def test_a_typ_other_than_jwt_is_refused(typ: Any, ec_key: ECKey, jwks: PartnerJwks) -> None:
    assert refusal(sign(header(typ=typ), claims(), ec_key, "ES256"), jwks).check == "client_assertion.header"


def test_an_unencoded_payload_b64_false_is_refused(ec_key: ECKey, jwks: PartnerJwks) -> None:
    assert (
        refusal(sign(header(b64=False), claims(), ec_key, "ES256"), jwks).check == "client_assertion.header"
    )


# --- client_assertion.kid ------------------------------------------------------------------------------


def test_an_unknown_kid_is_refused(ec_key: ECKey, jwks: PartnerJwks) -> None:
    assertion = sign({"alg": "ES256", "kid": "someone-elses-key"}, claims(), ec_key, "ES256")
    assert refusal(assertion, jwks).check == "client_assertion.kid"


def test_the_kid_of_the_partners_encryption_key_is_refused(ec_key: ECKey, jwks: PartnerJwks) -> None:
    assertion = sign({"alg": "ES256", "kid": "acme-enc-1"}, claims(), ec_key, "ES256")
    assert refusal(assertion, jwks).check == "client_assertion.kid"


def test_a_kid_that_is_not_a_string_is_refused(ec_key: ECKey, jwks: PartnerJwks) -> None:
    assert (
        refusal(sign({"alg": "ES256", "kid": 1}, claims(), ec_key, "ES256"), jwks).check
        == "client_assertion.kid"
    )


def test_no_kid_is_refused_when_two_signing_keys_have_the_alg(ec_key: ECKey) -> None:
    jwks = partner_jwks((ECKey.generate_key("P-256"), "ES256", "acme-a"), (ec_key, "ES256", "acme-b"))
    assert refusal(sign({"alg": "ES256"}, claims(), ec_key, "ES256"), jwks).check == "client_assertion.kid"


def test_no_kid_is_refused_when_no_signing_key_has_the_alg(ed_key: OKPKey, jwks: PartnerJwks) -> None:
    # GIVEN only an ES256 key is registered  WHEN an EdDSA assertion names no kid
    assert refusal(sign({"alg": "EdDSA"}, claims(), ed_key, "EdDSA"), jwks).check == "client_assertion.kid"


# --- client_assertion.signature ------------------------------------------------------------------------


def test_an_assertion_signed_by_another_key_under_the_registered_kid_is_refused(jwks: PartnerJwks) -> None:
    attacker = ECKey.generate_key("P-256")
    assert refusal(sign(header(), claims(), attacker, "ES256"), jwks).check == "client_assertion.signature"


def test_an_assertion_whose_claims_were_changed_after_signing_is_refused(
    ec_key: ECKey, jwks: PartnerJwks
) -> None:
    # GIVEN a genuine assertion for another audience  WHEN its payload is swapped for ours
    genuine = sign(header(), claims(aud="https://other-as.example"), ec_key, "ES256")
    forged_payload = signing_input(header(), claims()).split(".")[1]
    head, _, signature = genuine.split(".")
    assert refusal(f"{head}.{forged_payload}.{signature}", jwks).check == "client_assertion.signature"


@pytest.mark.parametrize("signature", ["AAAA", "not*base64", "A" * 200])
def test_a_malformed_signature_is_refused(signature: str, ec_key: ECKey, jwks: PartnerJwks) -> None:
    data = signing_input(header(), claims())
    assert refusal(f"{data}.{signature}", jwks).check == "client_assertion.signature"


def test_an_assertion_with_an_empty_signature_is_refused(jwks: PartnerJwks) -> None:
    assert refusal(f"{signing_input(header(), claims())}.", jwks).check == "client_assertion.signature"


def test_a_bad_signature_is_reported_before_any_claim(jwks: PartnerJwks) -> None:
    # GIVEN an assertion that is both forged and expired  THEN the signature is what is reported
    attacker = ECKey.generate_key("P-256")
    assertion = sign(header(), claims(exp=NOW_TS - 600, iat=NOW_TS - 660), attacker, "ES256")
    assert refusal(assertion, jwks).check == "client_assertion.signature"


# --- client_assertion.iss / .sub ----------------------------------------------------------------------


@pytest.mark.parametrize("iss", ["other-bank", DROP, ["acme-bank"]])
def test_an_iss_other_than_the_client_id_is_refused(iss: Any, ec_key: ECKey, jwks: PartnerJwks) -> None:
    assert refusal(sign(header(), claims(iss=iss), ec_key, "ES256"), jwks).check == "client_assertion.iss"


@pytest.mark.parametrize("sub", ["other-bank", DROP, "resident-42"])
def test_a_sub_other_than_the_client_id_is_refused(sub: Any, ec_key: ECKey, jwks: PartnerJwks) -> None:
    assert refusal(sign(header(), claims(sub=sub), ec_key, "ES256"), jwks).check == "client_assertion.sub"


def test_an_assertion_of_one_partner_is_refused_as_another_partners(ec_key: ECKey, jwks: PartnerJwks) -> None:
    assertion = sign(header(), claims(), ec_key, "ES256")
    with pytest.raises(InvalidClient) as caught:
        verify(assertion, jwks, client_id="other-bank")
    assert caught.value.check == "client_assertion.iss"


# --- client_assertion.aud ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "aud",
    [
        pytest.param("https://other-as.example", id="other-server"),
        pytest.param(ISSUER + "/", id="issuer-with-trailing-slash"),
        pytest.param(ISSUER.upper(), id="issuer-in-other-case"),
        pytest.param(["https://other-as.example", "https://third.example"], id="list-without-ours"),
        pytest.param([], id="empty-list"),
        pytest.param([ISSUER, 7], id="list-with-a-non-string"),
        pytest.param(7, id="number"),
        pytest.param(DROP, id="missing"),
    ],
)
def test_an_aud_that_does_not_name_this_server_is_refused(aud: Any, ec_key: ECKey, jwks: PartnerJwks) -> None:
    assert refusal(sign(header(), claims(aud=aud), ec_key, "ES256"), jwks).check == "client_assertion.aud"


@pytest.mark.parametrize(
    "aud",
    [
        pytest.param(TOKEN_ENDPOINT, id="token-endpoint"),
        pytest.param(PAR_ENDPOINT, id="par-endpoint"),
        pytest.param([ISSUER], id="array-of-the-issuer"),
        pytest.param([ISSUER, "https://other-as.example"], id="array-with-the-issuer"),
        pytest.param(["https://other-as.example", ISSUER], id="array-with-the-issuer-last"),
    ],
)
def test_an_aud_that_is_not_the_issuer_as_a_string_is_refused(
    aud: Any, ec_key: ECKey, jwks: PartnerJwks
) -> None:
    # GIVEN an assertion whose aud names this server, but not as the issuer string (FAPI 2.0 final
    # 5.3.2.1 item 8: an endpoint URL or an array opens audience injection)
    assertion = sign(header(), claims(aud=aud), ec_key, "ES256")
    # WHEN it is verified  THEN it is refused naming the audience
    refused = refusal(assertion, jwks)
    assert refused.check == "client_assertion.aud"
    assert "issuer" in refused.detail


# --- client_assertion.exp ------------------------------------------------------------------------------


@pytest.mark.parametrize("exp", [DROP, str(NOW_TS + 60), True, None])
def test_an_exp_that_is_missing_or_not_a_number_is_refused(
    exp: Any, ec_key: ECKey, jwks: PartnerJwks
) -> None:
    assert refusal(sign(header(), claims(exp=exp), ec_key, "ES256"), jwks).check == "client_assertion.exp"


def test_an_exp_beyond_the_float_range_is_refused_as_not_a_number(ec_key: ECKey, jwks: PartnerJwks) -> None:
    # 1e400 is valid JSON but parses to infinity, which would compare greater than any time.
    payload = claims(exp=DROP)
    raw = json.dumps(payload, separators=(",", ":"))[:-1] + ',"exp":1e400}'
    assert refusal(sign(header(), raw.encode(), ec_key, "ES256"), jwks).check == "client_assertion.exp"


@pytest.mark.parametrize("offset", [0, -1])
def test_an_assertion_expiring_now_or_earlier_is_refused(
    offset: int, ec_key: ECKey, jwks: PartnerJwks
) -> None:
    assertion = sign(header(), claims(iat=NOW_TS - 60, exp=NOW_TS + offset), ec_key, "ES256")
    assert refusal(assertion, jwks).check == "client_assertion.exp"


def test_an_exp_with_a_fraction_just_after_now_is_accepted(ec_key: ECKey, jwks: PartnerJwks) -> None:
    assertion = sign(header(), claims(iat=NOW_TS - 60, exp=NOW_TS + 0.5), ec_key, "ES256")
    assert verify(assertion, jwks).expires_at == NOW + timedelta(milliseconds=500)


# --- client_assertion.iat ------------------------------------------------------------------------------


@pytest.mark.parametrize("iat", [DROP, str(NOW_TS), False, 10**400])
def test_an_iat_that_is_missing_or_not_a_number_is_refused(
    iat: Any, ec_key: ECKey, jwks: PartnerJwks
) -> None:
    assert refusal(sign(header(), claims(iat=iat), ec_key, "ES256"), jwks).check == "client_assertion.iat"


def test_an_iat_11_seconds_in_the_future_is_refused(ec_key: ECKey, jwks: PartnerJwks) -> None:
    assertion = sign(header(), claims(iat=NOW_TS + 11, exp=NOW_TS + 60), ec_key, "ES256")
    assert refusal(assertion, jwks).check == "client_assertion.iat"


@pytest.mark.parametrize("ahead", [9, 10])
def test_an_iat_up_to_10_seconds_in_the_future_is_accepted(
    ahead: int, ec_key: ECKey, jwks: PartnerJwks
) -> None:
    assertion = sign(header(), claims(iat=NOW_TS + ahead, exp=NOW_TS + 60), ec_key, "ES256")
    assert verify(assertion, jwks).kid == KID


# --- client_assertion.lifetime -------------------------------------------------------------------------


def test_an_exp_121_seconds_after_iat_is_refused(ec_key: ECKey, jwks: PartnerJwks) -> None:
    assertion = sign(header(), claims(iat=NOW_TS, exp=NOW_TS + 121), ec_key, "ES256")
    assert refusal(assertion, jwks).check == "client_assertion.lifetime"


def test_an_exp_120_seconds_after_iat_is_accepted(ec_key: ECKey, jwks: PartnerJwks) -> None:
    assertion = sign(header(), claims(iat=NOW_TS, exp=NOW_TS + 120), ec_key, "ES256")
    assert verify(assertion, jwks).expires_at == NOW + timedelta(seconds=120)


def test_a_long_lived_assertion_is_refused_even_when_iat_is_backdated(
    ec_key: ECKey, jwks: PartnerJwks
) -> None:
    # GIVEN an assertion made once to be reused for a day, iat set long ago
    assertion = sign(header(), claims(iat=NOW_TS - 3600, exp=NOW_TS + 86400), ec_key, "ES256")
    assert refusal(assertion, jwks).check == "client_assertion.lifetime"


# --- client_assertion.nbf ------------------------------------------------------------------------------


def test_an_nbf_11_seconds_in_the_future_is_refused(ec_key: ECKey, jwks: PartnerJwks) -> None:
    assertion = sign(header(), claims(nbf=NOW_TS + 11), ec_key, "ES256")
    assert refusal(assertion, jwks).check == "client_assertion.nbf"


@pytest.mark.parametrize("nbf", [NOW_TS - 5, NOW_TS, NOW_TS + 10])
def test_an_nbf_not_beyond_the_clock_skew_is_accepted(nbf: int, ec_key: ECKey, jwks: PartnerJwks) -> None:
    assert verify(sign(header(), claims(nbf=nbf), ec_key, "ES256"), jwks).kid == KID


@pytest.mark.parametrize("nbf", [str(NOW_TS), None, True])
def test_an_nbf_that_is_not_a_number_is_refused(nbf: Any, ec_key: ECKey, jwks: PartnerJwks) -> None:
    assert refusal(sign(header(), claims(nbf=nbf), ec_key, "ES256"), jwks).check == "client_assertion.nbf"


# --- client_assertion.jti ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "jti",
    [
        pytest.param(DROP, id="missing"),
        pytest.param("", id="empty"),
        pytest.param(12345, id="number"),
        pytest.param("j" * 257, id="257-characters"),
    ],
)
def test_a_jti_that_is_missing_empty_not_a_string_or_too_long_is_refused(
    jti: Any, ec_key: ECKey, jwks: PartnerJwks
) -> None:
    assert refusal(sign(header(), claims(jti=jti), ec_key, "ES256"), jwks).check == "client_assertion.jti"


def test_a_jti_of_256_characters_is_accepted(ec_key: ECKey, jwks: PartnerJwks) -> None:
    assert verify(sign(header(), claims(jti="j" * 256), ec_key, "ES256"), jwks).jti == "j" * 256


def test_the_same_assertion_verifies_twice_because_replay_is_the_callers_check(
    ec_key: ECKey, jwks: PartnerJwks
) -> None:
    # The jti is returned for the ReplayStore; this pure function keeps no state.
    assertion = sign(header(), claims(), ec_key, "ES256")
    assert verify(assertion, jwks) == verify(assertion, jwks)


# --- errors and inputs ---------------------------------------------------------------------------------


def test_refusals_are_invalid_client_answered_with_401(jwks: PartnerJwks) -> None:
    error = refusal(unsigned({"alg": "none"}, claims()), jwks)
    assert (error.error, error.status) == ("invalid_client", 401)
    assert error.description.startswith("client_assertion.alg: ")


@pytest.mark.parametrize(
    "case",
    ["structure", "header", "kid", "signature", "aud", "jti"],
)
def test_a_refusal_detail_never_contains_the_assertion_or_key_material(
    case: str, ec_key: ECKey, jwks: PartnerJwks
) -> None:
    attacker = ECKey.generate_key("P-256")
    assertion = {
        "structure": "eyJhbGciOiJFUzI1NiJ9.secret-looking-payload",
        "header": sign(header(jwk=public_dict(attacker)), claims(), attacker, "ES256"),
        "kid": sign({"alg": "ES256", "kid": "kid-from-attacker"}, claims(), ec_key, "ES256"),
        "signature": sign(header(), claims(), attacker, "ES256"),
        "aud": sign(header(), claims(aud="https://aud-from-attacker.example"), ec_key, "ES256"),
        "jti": sign(header(), claims(jti="j" * 300), ec_key, "ES256"),
    }[case]
    error = refusal(assertion, jwks)
    text = f"{error} {error.description}"
    registered = public_dict(ec_key)
    forbidden = [
        *assertion.split("."),
        registered["x"],
        registered["y"],
        public_dict(attacker)["x"],
        "kid-from-attacker",
        "aud-from-attacker",
        "j" * 300,
    ]
    assert not [value for value in forbidden if value and value in text]


def test_a_naive_now_is_a_programming_error(ec_key: ECKey, jwks: PartnerJwks) -> None:
    assertion = sign(header(), claims(), ec_key, "ES256")
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(assertion, jwks, now=NOW.replace(tzinfo=None))


# --- parse_unverified_client_id ------------------------------------------------------------------------


def test_the_unverified_client_id_is_the_iss_claim(ec_key: ECKey) -> None:
    assert parse_unverified_client_id(sign(header(), claims(), ec_key, "ES256")) == CLIENT_ID


def test_the_unverified_client_id_is_read_even_from_a_forged_assertion() -> None:
    # It only chooses which JWKS to verify with; verification still has to succeed afterwards.
    assert parse_unverified_client_id(unsigned({"alg": "none"}, claims())) == CLIENT_ID


@pytest.mark.parametrize(
    "assertion",
    [
        pytest.param("", id="empty"),
        pytest.param("a.b", id="two-parts"),
        pytest.param(EMPTY_OBJECT + "." + b64url(b"[]") + ".", id="payload-not-an-object"),
        pytest.param(EMPTY_OBJECT + "." + b64url(b'{"iss":7}') + ".", id="iss-not-a-string"),
        pytest.param(EMPTY_OBJECT + "." + b64url(b'{"sub":"x"}') + ".", id="no-iss"),
        pytest.param(EMPTY_OBJECT + "." + b64url(b'{"iss":""}') + ".", id="empty-iss"),
        pytest.param(EMPTY_OBJECT + "." + b64url(b'{"iss":"' + b"x" * 9000 + b'"}') + ".", id="too-long"),
    ],
)
def test_the_unverified_client_id_is_none_when_it_cannot_be_read(assertion: str) -> None:
    assert parse_unverified_client_id(assertion) is None
