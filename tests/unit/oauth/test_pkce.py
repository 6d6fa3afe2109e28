"""PKCE (RFC 7636), S256 only: no downgrade to plain; the verifier must hash to the challenge."""

from __future__ import annotations

import hashlib

import pytest

from chalicelib.domain.oauth.errors import InvalidGrant, InvalidRequest
from chalicelib.domain.oauth.pkce import (
    CHALLENGE_PATTERN,
    VERIFIER_PATTERN,
    validate_challenge,
    verify_code_verifier,
)
from tests.unit.oauth.conftest import b64url

# RFC 7636 Appendix B.
RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def s256(verifier: str) -> str:
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


# --- validate_challenge --------------------------------------------------------------------------------


def test_an_s256_challenge_is_accepted_and_returned() -> None:
    assert validate_challenge(RFC_CHALLENGE, "S256") == RFC_CHALLENGE


@pytest.mark.parametrize(
    "method",
    [
        pytest.param(None, id="missing-means-plain"),
        pytest.param("plain", id="plain"),
        pytest.param("s256", id="lower-case"),
        pytest.param("", id="empty"),
        pytest.param("S512", id="unknown"),
    ],
)
def test_a_method_other_than_s256_is_refused(method: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_challenge(RFC_CHALLENGE, method)
    assert caught.value.check == "code_challenge_method"


def test_the_method_is_checked_before_the_challenge() -> None:
    # A plain-method request carries the verifier itself as the challenge: the method is what is wrong.
    with pytest.raises(InvalidRequest) as caught:
        validate_challenge(RFC_VERIFIER + "-longer-plain-verifier", "plain")
    assert caught.value.check == "code_challenge_method"


@pytest.mark.parametrize(
    "challenge",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param(RFC_CHALLENGE[:42], id="42-characters"),
        pytest.param(RFC_CHALLENGE + "A", id="44-characters"),
        pytest.param(RFC_CHALLENGE[:42] + "=", id="padded"),
        pytest.param(RFC_CHALLENGE[:41] + "+/", id="standard-base64-alphabet"),
        pytest.param(RFC_CHALLENGE[:42] + ".", id="verifier-only-character"),
        pytest.param(RFC_CHALLENGE + "\n", id="trailing-newline"),
    ],
)
def test_a_challenge_that_is_not_43_base64url_characters_is_refused(challenge: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_challenge(challenge, "S256")
    assert caught.value.check == "code_challenge"


def test_a_refused_challenge_is_an_oauth_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_challenge(None, "plain")
    assert (caught.value.error, caught.value.status) == ("invalid_request", 400)


def test_the_patterns_are_those_of_rfc_7636() -> None:
    assert CHALLENGE_PATTERN.pattern == r"^[A-Za-z0-9_-]{43}$"
    assert VERIFIER_PATTERN.pattern == r"^[A-Za-z0-9._~-]{43,128}$"


# --- verify_code_verifier ------------------------------------------------------------------------------


def test_the_rfc_7636_example_verifier_matches_its_challenge() -> None:
    verify_code_verifier(RFC_VERIFIER, RFC_CHALLENGE)


@pytest.mark.parametrize("length", [43, 128])
def test_verifiers_of_43_and_128_characters_are_accepted(length: int) -> None:
    verifier = ("aZ09-._~" * 16)[:length]
    verify_code_verifier(verifier, s256(verifier))


def test_a_verifier_that_does_not_hash_to_the_challenge_is_refused() -> None:
    with pytest.raises(InvalidGrant) as caught:
        verify_code_verifier("x" * 43, RFC_CHALLENGE)
    assert caught.value.check == "code_verifier"


def test_the_challenge_presented_as_the_verifier_is_refused() -> None:
    # GIVEN an attacker who saw the authorization request (and so the challenge) but not the verifier
    with pytest.raises(InvalidGrant) as caught:
        verify_code_verifier(RFC_CHALLENGE, RFC_CHALLENGE)
    assert caught.value.check == "code_verifier"


@pytest.mark.parametrize(
    "verifier",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("a" * 42, id="42-characters"),
        pytest.param("a" * 129, id="129-characters"),
        pytest.param("a" * 42 + "+", id="plus"),
        pytest.param("a" * 42 + " ", id="space"),
        pytest.param("a" * 42 + "é", id="non-ascii"),
        pytest.param(RFC_VERIFIER + "\n", id="trailing-newline"),
    ],
)
def test_a_missing_or_malformed_verifier_is_refused(verifier: str | None) -> None:
    with pytest.raises(InvalidGrant) as caught:
        verify_code_verifier(verifier, RFC_CHALLENGE)
    assert caught.value.check == "code_verifier"


def test_a_refused_verifier_is_an_invalid_grant_that_does_not_echo_it() -> None:
    with pytest.raises(InvalidGrant) as caught:
        verify_code_verifier("y" * 43, RFC_CHALLENGE)
    error = caught.value
    assert error.error == "invalid_grant"
    assert "y" * 43 not in error.description
    assert RFC_CHALLENGE not in error.description
