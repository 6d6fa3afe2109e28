"""PKCE (RFC 7636), S256 only: binds the authorization code to the client instance that asked for it.

Why this module exists: the FAPI 2.0 Security Profile and RFC 9700 section 2.1.1 require PKCE
with ``S256``; the challenge is validated at the PAR endpoint and the verifier at ``/token``.

What it must never do: accept ``plain`` or a missing method (a downgrade that hands the verifier to
whoever saw the authorization request, RFC 7636 section 7.2), compare the verifier with an
early-exit comparison, or put the verifier or the challenge in an error ``detail``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from chalicelib.domain.oauth.errors import InvalidGrant, InvalidRequest

CODE_CHALLENGE_METHOD = "S256"
# RFC 7636 section 4.2: BASE64URL(SHA256(verifier)) is 32 bytes, i.e. exactly 43 characters unpadded.
CHALLENGE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")
# RFC 7636 section 4.1: code-verifier = 43*128unreserved.
VERIFIER_PATTERN = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")


def _s256(code_verifier: str) -> str:
    """RFC 7636 section 4.2: BASE64URL-ENCODE(SHA256(ASCII(code_verifier))), no padding."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def validate_challenge(code_challenge: str | None, method: str | None) -> str:
    """Validate the ``code_challenge`` of an authorization (PAR) request; return it.

    Raises ``InvalidRequest`` with ``check="code_challenge_method"`` unless the method is ``S256``
    (RFC 7636 section 4.3: a missing method would mean ``plain``; section 4.4.1: ``invalid_request``), then with
    ``check="code_challenge"`` unless the challenge is 43 base64url characters.
    """
    if method != CODE_CHALLENGE_METHOD:
        raise InvalidRequest(
            "code_challenge_method must be S256 (plain is not supported)", check="code_challenge_method"
        )
    # fullmatch: ``$`` would also match before a trailing newline.
    if code_challenge is None or not CHALLENGE_PATTERN.fullmatch(code_challenge):
        raise InvalidRequest(
            "code_challenge must be 43 base64url characters (the S256 of the verifier)",
            check="code_challenge",
        )
    return code_challenge


def verify_code_verifier(code_verifier: str | None, code_challenge: str) -> None:
    """Check the ``code_verifier`` at the token endpoint (RFC 7636 section 4.6).

    Raises ``InvalidGrant`` with ``check="code_verifier"`` when it is missing, malformed or does not
    hash to the challenge stored with the code.
    """
    # fullmatch: ``$`` would also match before a trailing newline.
    if code_verifier is None or not VERIFIER_PATTERN.fullmatch(code_verifier):
        raise InvalidGrant(
            "code_verifier is missing or not 43 to 128 unreserved characters (RFC 7636 section 4.1)",
            check="code_verifier",
        )
    # Constant-time comparison; both sides are ASCII by construction of the patterns.
    if not hmac.compare_digest(_s256(code_verifier).encode("ascii"), code_challenge.encode("utf-8")):
        raise InvalidGrant("code_verifier does not match the code_challenge", check="code_verifier")
