"""``private_key_jwt`` client authentication: verify a partner's client assertion.

Why this module exists: partners authenticate to the token and PAR endpoints only with a JWT signed
by a key in their registered JWKS (RFC 7523 sections 2.2 and 3, the FAPI 2.0 Security Profile,
RFC 9700 section 2.5). Every check a partner's penetration test will try (``alg=none``, HMAC keyed
with the public key, a key smuggled in through ``jwk``/``jku``/``x5u``/``x5c``, an audience other
than our issuer (an array or an endpoint URL included), a long-lived or future-dated assertion)
is refused here, each with an ``InvalidClient`` whose ``check`` names the failed check.

What it must never do:

- take a verification key from anywhere but the partner's registered JWKS (never from the token);
- accept an algorithm outside ``ALLOWED_ALGORITHMS`` or one other than the selected key's ``alg``;
- verify a signature by hand: joserfc does it, restricted to the one expected algorithm;
- put the assertion, a claim value sent by the caller or key material in an error ``detail``;
- touch storage: **replay is not checked here**. The caller must record the returned ``jti``
  through the ``ReplayStore`` port (``until=expires_at``) and refuse the assertion when it was
  already recorded (RFC 7523 section 3 point 7).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey

from chalicelib.domain.oauth.errors import InvalidClient
from chalicelib.domain.oauth.jose_parsing import json_object as _json_object
from chalicelib.domain.oauth.jose_parsing import numeric_date as _numeric_date
from chalicelib.domain.partners import PartnerJwks, PublicJwk

ALLOWED_ALGORITHMS = ("ES256", "PS256", "EdDSA")
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = timedelta(minutes=2)  # exp at most 2 minutes after iat
CLOCK_SKEW = timedelta(seconds=10)  # iat (and nbf) may be at most 10 s in the future
MAX_ASSERTION_LENGTH = 8192  # bytes
MAX_JTI_LENGTH = 256  # characters

# RFC 7515 sections 4.1.2-4.1.6: header parameters that point at or carry a key or certificate.
# Keys come only from the registered JWKS (RFC 9700 section 2.5, FAPI 2.0), so their mere
# presence is refused. ``crit`` (4.1.11) would oblige us to understand extensions we do not implement.
FORBIDDEN_HEADER_PARAMETERS = ("jku", "jwk", "x5u", "x5c", "crit")

_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class ClientAssertion:
    """What a verified assertion established; ``jti`` and ``expires_at`` feed the replay store."""

    client_id: str
    jti: str
    expires_at: datetime  # from exp, UTC
    kid: str  # the registered key that verified the signature


class _Registry(jws.JWSRegistry):
    """joserfc's registry, with its per-part size limits raised to our own overall limit (which is
    checked first) and no refusal of unknown non-critical header parameters (RFC 7515 section 4:
    parameters that are not understood are ignored unless listed in ``crit``, which we refuse)."""

    max_header_length = MAX_ASSERTION_LENGTH
    max_payload_length = MAX_ASSERTION_LENGTH
    max_signature_length = MAX_ASSERTION_LENGTH


def _refuse(detail: str, check: str) -> InvalidClient:
    return InvalidClient(detail, check=check)


def _decode(assertion: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Header and claims of a compact JWS (RFC 7515 section 7.1), unverified; None if malformed."""
    if not assertion.isascii() or len(assertion) > MAX_ASSERTION_LENGTH:
        return None
    parts = assertion.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        return None
    header = _json_object(parts[0])
    claims = _json_object(parts[1])
    if header is None or claims is None:
        return None
    return header, claims


def parse_unverified_client_id(assertion: str) -> str | None:
    """The ``iss`` of an assertion, **without verifying anything**.

    Only for finding which partner's JWKS to verify with when the form carries no ``client_id``
    (RFC 7521 section 4.2 makes it optional); the result must then go through
    ``verify_client_assertion`` as ``client_id``. None on any decoding problem.
    """
    decoded = _decode(assertion)
    if decoded is None:
        return None
    issuer = decoded[1].get("iss")
    return issuer if isinstance(issuer, str) and issuer else None


def _select_key(header: dict[str, Any], alg: str, jwks: PartnerJwks) -> PublicJwk:
    """RFC 7515 section 4.1.4 / RFC 7517 section 4.5: the registered signing key to verify with."""
    signing_keys = jwks.signing_keys()
    if "kid" in header:
        kid = header["kid"]
        if not isinstance(kid, str):
            raise _refuse("kid must be a string", "client_assertion.kid")
        for key in signing_keys:
            if key.kid == kid:
                return key
        raise _refuse("kid does not name a registered signing key of this client", "client_assertion.kid")
    candidates = [key for key in signing_keys if key.alg == alg]
    if len(candidates) != 1:
        raise _refuse(
            f"no kid in the header and {len(candidates)} registered signing keys use {alg}; "
            "send the kid of the signing key",
            "client_assertion.kid",
        )
    return candidates[0]


def _verify_signature(assertion: str, alg: str, key: ECKey | RSAKey | OKPKey) -> None:
    # RFC 7515 section 5.2, done by joserfc with exactly one permitted algorithm: the one the
    # registered key is bound to. Never a key or an algorithm chosen by the token alone.
    try:
        jws.deserialize_compact(
            assertion, key, algorithms=[alg], registry=_Registry(algorithms=[alg], strict_check_header=False)
        )
    except BadSignatureError:
        raise _refuse(
            "signature does not verify with the registered key", "client_assertion.signature"
        ) from None
    except (JoseError, ValueError) as exc:
        raise _refuse(
            f"signature could not be verified ({type(exc).__name__})", "client_assertion.signature"
        ) from None


def _check_audience(aud: Any, issuer: str) -> None:
    # FAPI 2.0 Security Profile (final) section 5.3.2.1 item 8 and draft-ietf-oauth-rfc7523bis:
    # the audience is our issuer identifier, as a single string, and nothing else. RFC 7523
    # section 3 point 3 allowed the token endpoint URL and RFC 7519 an array; both opened the
    # audience-injection attacks disclosed in 2025 (an assertion made for one server or endpoint
    # accepted by another), so an array, an endpoint URL or any other value is refused.
    # Simple string comparison (RFC 3986 section 6.2.1).
    if not isinstance(aud, str):
        raise _refuse(
            "aud must be a single string: the issuer identifier, not an array", "client_assertion.aud"
        )
    if aud != issuer:
        raise _refuse("aud must be exactly the issuer identifier of this server", "client_assertion.aud")


def verify_client_assertion(
    assertion: str,
    *,
    client_id: str,
    jwks: PartnerJwks,
    issuer: str,
    now: datetime,
) -> ClientAssertion:
    """Verify a ``private_key_jwt`` assertion of ``client_id`` against its registered ``jwks``.

    ``issuer`` is this server's issuer identifier, the only audience accepted, at every endpoint;
    ``now`` must be timezone-aware. Raises ``InvalidClient``
    with ``check`` naming the first failed check. Does **not** check replay: the caller records
    ``jti`` until ``expires_at`` with the ``ReplayStore``.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    # RFC 7515 section 7.1 (compact serialisation); a size limit before any parsing.
    if len(assertion.encode("utf-8")) > MAX_ASSERTION_LENGTH:
        raise _refuse(f"longer than {MAX_ASSERTION_LENGTH} bytes", "client_assertion")
    decoded = _decode(assertion)
    if decoded is None:
        raise _refuse("not a compact JWS with a JSON object header and payload", "client_assertion")
    header, claims = decoded

    # RFC 9700 section 2.5 / FAPI 2.0 (PS256, ES256, EdDSA): asymmetric algorithms only; never none, never HMAC.
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
        raise _refuse(f"alg must be one of {', '.join(ALLOWED_ALGORITHMS)}", "client_assertion.alg")

    present = [name for name in FORBIDDEN_HEADER_PARAMETERS if name in header]
    if present:
        raise _refuse(
            f"header must not carry {', '.join(present)}: keys come only from the registered JWKS",
            "client_assertion.header",
        )
    # RFC 7519 section 5.1: typ, when present, is JWT (media types compare case-insensitively).
    if "typ" in header and (not isinstance(header["typ"], str) or header["typ"].upper() != "JWT"):
        raise _refuse("typ, when present, must be JWT", "client_assertion.header")
    # RFC 7797 sections 3 and 6: an unencoded payload (b64=false) is not a JWT and would need crit.
    if "b64" in header and header["b64"] is not True:
        raise _refuse("b64=false (unencoded payload) is not allowed", "client_assertion.header")

    key = _select_key(header, alg, jwks)
    # RFC 7517 section 4.4: the registered key is bound to one algorithm; no other may be used with it.
    if key.alg != alg:
        raise _refuse(
            f"the selected registered key is for {key.alg}, not the header's alg", "client_assertion.alg"
        )

    _verify_signature(assertion, alg, key.to_joserfc())

    # RFC 7523 section 3 points 1 and 2: iss and sub are both the client_id (OIDC Core section 9).
    if claims.get("iss") != client_id:
        raise _refuse("iss must be the client_id", "client_assertion.iss")
    if claims.get("sub") != client_id:
        raise _refuse("sub must be the client_id", "client_assertion.sub")

    _check_audience(claims.get("aud"), issuer)

    now_seconds = now.timestamp()
    # RFC 7523 section 3 point 4: exp is required and in the future.
    exp = _numeric_date(claims.get("exp"))
    if exp is None:
        raise _refuse("exp is missing or not a number", "client_assertion.exp")
    if exp <= now_seconds:
        raise _refuse("the assertion has expired", "client_assertion.exp")

    # RFC 7519 section 4.1.6; required here because the lifetime is bounded from it.
    iat = _numeric_date(claims.get("iat"))
    if iat is None:
        raise _refuse("iat is missing or not a number", "client_assertion.iat")
    if iat > now_seconds + CLOCK_SKEW.total_seconds():
        raise _refuse(
            f"iat is more than {int(CLOCK_SKEW.total_seconds())} s in the future", "client_assertion.iat"
        )

    # RFC 7523 section 3 point 4 lets the server limit how far exp may be; FAPI 2.0 / our standards: 2 min.
    if exp - iat > MAX_ASSERTION_LIFETIME.total_seconds():
        raise _refuse(
            f"exp is more than {int(MAX_ASSERTION_LIFETIME.total_seconds())} s after iat",
            "client_assertion.lifetime",
        )

    # RFC 7523 section 3 point 5: nbf, when present, must have passed.
    if "nbf" in claims:
        nbf = _numeric_date(claims["nbf"])
        if nbf is None:
            raise _refuse("nbf is not a number", "client_assertion.nbf")
        if nbf > now_seconds + CLOCK_SKEW.total_seconds():
            raise _refuse("the assertion is not valid yet (nbf)", "client_assertion.nbf")

    # RFC 7523 section 3 point 7: a jti the replay store can key on.
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise _refuse(
            f"jti is missing, empty or longer than {MAX_JTI_LENGTH} characters", "client_assertion.jti"
        )

    return ClientAssertion(
        client_id=client_id,
        jti=jti,
        expires_at=datetime.fromtimestamp(exp, UTC),
        kid=key.kid,
    )
