"""DPoP (RFC 9449): verify the proof of possession that sender-constrains partner access tokens.

Why this module exists: the FAPI 2.0 Security Profile requires sender-constrained access tokens;
we use DPoP. A stolen access token is useless without the private key whose public half the proof
carries, and a captured proof is useless for another method, URL, moment or token. This module
performs the checks of RFC 9449 section 4.3 and raises ``InvalidDpopProof`` whose ``check`` names
the first that failed.

What it must never do:

- accept a proof whose ``jwk`` is private, symmetric, or does not fit the ``alg``;
- accept ``none``, HMAC or any algorithm outside ``ALLOWED_ALGORITHMS``;
- verify a signature by hand: joserfc does it, with the one algorithm the header names;
- put the proof, the access token or key material in an error ``detail``;
- touch storage: **replay of ``jti`` is not checked here** (RFC 9449 section 11.1). The caller
  records the returned ``jti`` through the ``ReplayStore`` port for at least the acceptance window
  (``issued_at + MAX_AGE``) and refuses a proof whose ``jti`` was already recorded. Refusing more
  than one ``DPoP`` header (section 4.3 point 1) is the caller's job too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey

from chalicelib.domain.oauth.errors import InvalidDpopProof
from chalicelib.domain.oauth.jose_parsing import b64url_decode as _b64url_decode
from chalicelib.domain.oauth.jose_parsing import json_object as _json_object
from chalicelib.domain.oauth.jose_parsing import numeric_date as _numeric_date

DPOP_TYP = "dpop+jwt"
ALLOWED_ALGORITHMS = ("ES256", "PS256", "EdDSA")
MAX_AGE = timedelta(seconds=60)  # reject iat older than 60 s
MAX_FUTURE = timedelta(seconds=10)  # accept iat up to 10 s in the future
MAX_PROOF_LENGTH = 8192  # bytes
MAX_JTI_LENGTH = 256  # characters
MIN_RSA_BITS = 2048

# RFC 7517 section 9.2 / RFC 7518 section 6: members only a private or symmetric key has.
PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
# RFC 7638 section 3.2: the required public members of each key type (all that the thumbprint
# covers, and all that verification needs).
_PUBLIC_MEMBERS = {"EC": ("crv", "x", "y"), "RSA": ("e", "n"), "OKP": ("crv", "x")}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_PERCENT_ENCODED = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


@dataclass(frozen=True)
class DpopProof:
    jkt: str  # RFC 7638 SHA-256 thumbprint of the header jwk, base64url
    jti: str
    issued_at: datetime


class _Registry(jws.JWSRegistry):
    """joserfc's registry with its per-part size limits raised to our overall limit (checked first):
    a header carrying an RSA ``jwk`` exceeds joserfc's default 512-byte header limit. Unknown
    non-critical header parameters are ignored (RFC 7515 section 4)."""

    max_header_length = MAX_PROOF_LENGTH
    max_payload_length = MAX_PROOF_LENGTH
    max_signature_length = MAX_PROOF_LENGTH


def _refuse(detail: str, check: str) -> InvalidDpopProof:
    return InvalidDpopProof(detail, check=check)


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def access_token_hash(access_token: str) -> str:
    """RFC 9449 section 4.2 ``ath``: base64url (no padding) of SHA-256 over the ASCII access token.

    Raises ``UnicodeEncodeError`` (a ``ValueError``) for a token that is not ASCII."""
    return _b64url_encode(hashlib.sha256(access_token.encode("ascii")).digest())


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4."""
    output: list[str] = []
    while path:
        if path.startswith("../"):
            path = path[3:]
        elif path.startswith(("./", "/./")):
            path = path[2:]
        elif path == "/.":
            path = "/"
        elif path.startswith("/../"):
            path = path[3:]
            if output:
                output.pop()
        elif path == "/..":
            path = "/"
            if output:
                output.pop()
        elif path in (".", ".."):
            path = ""
        else:
            start = 1 if path.startswith("/") else 0
            end = path.find("/", start)
            end = len(path) if end == -1 else end
            output.append(path[:end])
            path = path[end:]
    return "".join(output)


def _normalise_percent_encoding(path: str) -> str:
    """RFC 3986 section 6.2.2.1-6.2.2.2: upper-case hex digits, decode unreserved characters."""

    def replace(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    return _PERCENT_ENCODED.sub(replace, path)


def normalise_htu(url: str) -> str:
    """The form of an HTTP URI that ``htu`` is compared in (RFC 9449 section 4.3 point 9).

    Without query and fragment (RFC 9449 section 4.2); scheme and host lower-cased, percent-encoding
    normalised and dot segments removed (RFC 3986 section 6.2.2); default port dropped and an empty
    path made ``/`` (RFC 3986 section 6.2.3). Raises ``ValueError`` unless ``url`` is an absolute
    http(s) URI with a host.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("not an http(s) URI")
    host = parts.hostname  # lower-cased by urlsplit, IPv6 brackets removed
    if not host:
        raise ValueError("no host")
    port = parts.port  # raises ValueError for a malformed or out-of-range port
    userinfo, at, _ = parts.netloc.rpartition("@")
    netloc = (userinfo + at) + (f"[{host}]" if ":" in host else host)
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    path = _remove_dot_segments(_normalise_percent_encoding(parts.path)) or "/"
    return urlunsplit((scheme, netloc, path, "", ""))


def _modulus_bits(n: Any) -> int:
    """Bit length of an RSA modulus given as base64url (RFC 7518 section 6.3.1.1); 0 if malformed."""
    try:
        return int.from_bytes(_b64url_decode(n), "big").bit_length()
    except (ValueError, TypeError, binascii.Error):
        return 0


def _import_jwk(jwk: Any, alg: str) -> ECKey | RSAKey | OKPKey:
    """RFC 9449 section 4.3 points 5 and 7, section 4.2 (``jwk``): a public key fitting ``alg``."""
    if not isinstance(jwk, dict):
        raise _refuse("header jwk is missing or not a JSON object", "dpop.jwk")
    leaked = [member for member in PRIVATE_JWK_MEMBERS if member in jwk]
    if leaked:
        raise _refuse("header jwk must not contain private key members", "dpop.jwk")
    kty = jwk.get("kty")
    if kty == "oct":
        raise _refuse("header jwk must not be a symmetric key", "dpop.jwk")
    if not isinstance(kty, str) or kty not in _PUBLIC_MEMBERS:
        raise _refuse("header jwk kty must be EC, RSA or OKP", "dpop.jwk")
    members = {name: jwk.get(name) for name in _PUBLIC_MEMBERS[kty]}
    if not all(isinstance(value, str) for value in members.values()):
        raise _refuse(f"header jwk lacks the members of a {kty} public key", "dpop.jwk")
    if kty == "RSA" and _modulus_bits(members["n"]) < MIN_RSA_BITS:
        # Refused before import: joserfc would only warn about a short key, and importing costs work.
        raise _refuse(f"header jwk RSA modulus is shorter than {MIN_RSA_BITS} bits", "dpop.jwk")
    # Only the required public members are imported: extras (use, key_ops, alg, kid) are not for
    # the prover to choose how we verify.
    data = {"kty": kty, **members}
    key: ECKey | RSAKey | OKPKey
    try:
        if kty == "EC":
            key = ECKey.import_key(data)  # type: ignore[arg-type]
        elif kty == "RSA":
            key = RSAKey.import_key(data)  # type: ignore[arg-type]
        else:
            key = OKPKey.import_key(data)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError) as exc:
        raise _refuse(
            f"header jwk is not a valid {kty} public key ({type(exc).__name__})", "dpop.jwk"
        ) from None
    fits = (
        (alg == "ES256" and isinstance(key, ECKey) and key.curve_name == "P-256")
        or (alg == "PS256" and isinstance(key, RSAKey) and key.public_key.key_size >= MIN_RSA_BITS)
        or (alg == "EdDSA" and isinstance(key, OKPKey) and key.curve_name == "Ed25519")
    )
    if not fits:
        raise _refuse(
            "header jwk does not fit alg (ES256: EC P-256; PS256: RSA of at least 2048 bits; EdDSA: OKP Ed25519)",
            "dpop.jwk",
        )
    return key


def _verify_signature(proof: str, alg: str, key: ECKey | RSAKey | OKPKey) -> None:
    # RFC 9449 section 4.3 point 6: the signature verifies with the public key in the header,
    # checked by joserfc with exactly the one allowed algorithm the header names.
    try:
        jws.deserialize_compact(
            proof, key, algorithms=[alg], registry=_Registry(algorithms=[alg], strict_check_header=False)
        )
    except BadSignatureError:
        raise _refuse("signature does not verify with the header jwk", "dpop.signature") from None
    except (JoseError, ValueError) as exc:
        raise _refuse(f"signature could not be verified ({type(exc).__name__})", "dpop.signature") from None


def verify_dpop_proof(
    proof: str | None,
    *,
    method: str,
    url: str,
    now: datetime,
    access_token: str | None = None,
    expected_jkt: str | None = None,
) -> DpopProof:
    """Check a DPoP proof per RFC 9449 section 4.3; raise ``InvalidDpopProof`` naming the failed check.

    ``method`` is the request's HTTP method as the caller received it (upper case); ``url`` the
    request URI; ``now`` timezone-aware. ``access_token`` is given on resource requests (the proof
    must then carry its ``ath``); ``expected_jkt`` is the ``cnf.jkt`` the token or code is bound to.
    Does **not** check replay: the caller records ``jti`` with the ``ReplayStore``.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    # RFC 9449 section 4.3 points 1-2: exactly one proof (the caller's), a well-formed JWT.
    if not proof:
        raise _refuse("the DPoP proof is missing", "dpop")
    if len(proof.encode("utf-8")) > MAX_PROOF_LENGTH:
        raise _refuse(f"the DPoP proof is longer than {MAX_PROOF_LENGTH} bytes", "dpop")
    parts = proof.split(".")
    if not proof.isascii() or len(parts) != 3 or not parts[0] or not parts[1]:
        raise _refuse("the DPoP proof is not a compact JWS", "dpop")
    header = _json_object(parts[0])
    claims = _json_object(parts[1])
    if header is None or claims is None:
        raise _refuse("the DPoP proof header or payload is not a JSON object", "dpop")

    # RFC 9449 section 4.3 point 4: typ is exactly dpop+jwt (explicit typing, RFC 8725 section 3.11).
    if header.get("typ") != DPOP_TYP:
        raise _refuse(f"typ must be {DPOP_TYP}", "dpop.typ")

    # RFC 9449 section 4.3 point 5: an asymmetric algorithm we support; never none, never HMAC.
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
        raise _refuse(f"alg must be one of {', '.join(ALLOWED_ALGORITHMS)}", "dpop.alg")

    key = _import_jwk(header.get("jwk"), alg)
    _verify_signature(proof, alg, key)

    # RFC 9449 section 4.2: jti, unique per proof; bounded so the replay store can key on it.
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise _refuse(f"jti is missing, empty or longer than {MAX_JTI_LENGTH} characters", "dpop.jti")

    # RFC 9449 section 4.3 point 8: htm matches the request method.
    if claims.get("htm") != method:
        raise _refuse("htm does not match the request method", "dpop.htm")

    # RFC 9449 section 4.3 point 9: htu matches the request URI, ignoring query and fragment.
    expected_htu = normalise_htu(url)
    htu = claims.get("htu")
    try:
        matches = isinstance(htu, str) and normalise_htu(htu) == expected_htu
    except ValueError:
        matches = False
    if not matches:
        raise _refuse("htu does not match the request URI", "dpop.htu")

    # RFC 9449 section 4.3 point 11 and section 11.1: iat within our acceptance window.
    iat = _numeric_date(claims.get("iat"))
    if iat is None:
        raise _refuse("iat is missing or not a number", "dpop.iat")
    now_seconds = now.timestamp()
    if iat < now_seconds - MAX_AGE.total_seconds():
        raise _refuse(f"iat is more than {int(MAX_AGE.total_seconds())} s old", "dpop.iat")
    if iat > now_seconds + MAX_FUTURE.total_seconds():
        raise _refuse(f"iat is more than {int(MAX_FUTURE.total_seconds())} s in the future", "dpop.iat")

    # RFC 9449 section 4.3 point 12 and section 7.1: on resource requests, ath binds the proof to the token.
    if access_token is not None:
        ath = claims.get("ath")
        try:
            expected_ath = access_token_hash(access_token)
        except UnicodeEncodeError:
            raise _refuse("the access token is not ASCII", "dpop.ath") from None
        if not isinstance(ath, str) or not hmac.compare_digest(
            ath.encode("ascii", "replace"), expected_ath.encode("ascii")
        ):
            raise _refuse("ath is missing or is not the hash of the access token", "dpop.ath")

    # RFC 7638 section 3 (SHA-256); RFC 9449 section 4.3 point 12 and section 6.1: the key the token is bound to.
    jkt = key.thumbprint()
    if expected_jkt is not None and not hmac.compare_digest(
        jkt.encode("ascii"), expected_jkt.encode("utf-8")
    ):
        raise _refuse("the proof key is not the key the token is bound to", "dpop.jkt")

    return DpopProof(jkt=jkt, jti=jti, issued_at=datetime.fromtimestamp(iat, UTC))
