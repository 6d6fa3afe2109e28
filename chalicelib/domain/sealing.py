"""Sealing: the only form in which a resident's records ever leave the service.

A JWT signed by the service's KMS key (ES256; the private key never leaves KMS), nested in a JWE
(``ECDH-ES+A256KW`` / ``A256GCM``, ``cty=JWT``) encrypted to the partner's registered encryption
key (standards.md, JOSE). Only the partner can open it; anyone can verify who sealed it with the
public JWKS. The plaintext exists only in memory, inside this function; it is never logged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from joserfc import jwe
from joserfc.util import urlsafe_b64encode

from chalicelib.domain.flow import new_secret
from chalicelib.domain.partners import PublicJwk
from chalicelib.domain.ports import Signer

SCHEMA_VERSION = "myna-relay/self-info/1"
JWE_ALGORITHM = "ECDH-ES+A256KW"
JWE_ENCRYPTION = "A256GCM"


@dataclass(frozen=True)
class SealedPayload:
    compact: str  # the JWE compact serialisation, the only thing stored
    jti: str
    encryption_kid: str

    def __repr__(self) -> str:
        return f"SealedPayload(jti={self.jti!r}, encryption_kid={self.encryption_kid!r}, size={len(self.compact)})"


def seal(
    data: dict[str, Any],
    *,
    signer: Signer,
    issuer: str,
    audience: str,
    encryption_key: PublicJwk,
    purpose: str,
    interaction_id: str,
    issued_at: datetime,
    expires_at: datetime,
) -> SealedPayload:
    """Sign ``data`` with the service key and encrypt it to ``encryption_key``."""
    if encryption_key.use != "enc" or encryption_key.alg != JWE_ALGORITHM:
        raise ValueError("the partner key is not an ECDH-ES+A256KW encryption key")
    jti = new_secret(16)
    claims = {
        "iss": issuer,
        "aud": audience,
        "iat": int(issued_at.timestamp()),
        "exp": int(expires_at.timestamp()),
        "jti": jti,
        "purpose": purpose,
        "interaction_id": interaction_id,
        "schema": SCHEMA_VERSION,
        "data": data,
    }
    signed = sign_jwt(claims, signer=signer, typ="JWT").encode()
    protected = {"alg": JWE_ALGORITHM, "enc": JWE_ENCRYPTION, "kid": encryption_key.kid, "cty": "JWT"}
    compact = jwe.encrypt_compact(protected, signed, encryption_key.to_joserfc())
    return SealedPayload(compact=compact, jti=jti, encryption_kid=encryption_key.kid)


def sign_jwt(claims: dict[str, Any], *, signer: Signer, typ: str) -> str:
    """A compact JWS (ES256) over ``claims``, signed by the KMS key; ``kid`` as served in the JWKS."""
    header = {"alg": "ES256", "kid": str(signer.public_jwk()["kid"]), "typ": typ}
    signing_input = (
        urlsafe_b64encode(json.dumps(header, separators=(",", ":")).encode())
        + b"."
        + urlsafe_b64encode(json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode())
    )
    return (signing_input + b"." + urlsafe_b64encode(signer.sign(signing_input))).decode()
