"""A test partner: keys, a registration document, client assertions, DPoP proofs, PKCE.

Built directly on joserfc so that tests speak the protocol the way any partner library would
(the project's partner kit comes later and gets its own tests).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Pkce:
    verifier: str = field(default_factory=lambda: b64url(secrets.token_bytes(32)))

    @property
    def challenge(self) -> str:
        return b64url(hashlib.sha256(self.verifier.encode()).digest())


@dataclass
class TestPartner:
    client_id: str = "acme-bank"
    redirect_uri: str = "https://bank.example/callback"
    signing_key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256"))
    encryption_key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256"))
    dpop_key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256"))
    kid: str = "acme-sig-1"
    clock: Callable[[], float] = time.time  # tests that move the relay's clock move this one too

    __test__ = False  # not a pytest class

    def document(self, **overrides: Any) -> dict[str, Any]:
        sig = dict(self.signing_key.as_dict(private=False))
        sig.update({"kid": self.kid, "use": "sig", "alg": "ES256"})
        enc = dict(self.encryption_key.as_dict(private=False))
        enc.update({"kid": "acme-enc-1", "use": "enc", "alg": "ECDH-ES+A256KW"})
        document: dict[str, Any] = {
            "id": self.client_id,
            "names": {"ja": "アクメ銀行", "en": "Acme Bank"},
            "redirect_uris": [self.redirect_uri],
            "jwks": {"keys": [sig, enc]},
            "purposes": [
                {
                    "id": "loan-screening",
                    "titles": {"ja": "住宅ローンの審査", "en": "Mortgage loan screening"},
                    "dataset": "local_tax",
                    "fields": ["fiscal_year", "total_income"],
                    "derived_claims": {"annual_income_at_least": 4000000},
                    "data_life": "PT10M",
                },
                {
                    "id": "child-vaccination-record",
                    "titles": {"ja": "予防接種記録", "en": "Vaccination record"},
                    "dataset": "vaccination",
                    "fields": ["vaccine", "date"],
                    "data_life": "PT30M",
                },
            ],
            "enabled": True,
        }
        document.update(overrides)
        return document

    def client_assertion(self, audience: str | list[str], **claims: Any) -> str:
        now = int(self.clock())
        payload: dict[str, Any] = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "iat": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
        }
        payload.update(claims)
        payload = {name: value for name, value in payload.items() if value is not None}
        return jwt.encode({"alg": "ES256", "kid": self.kid}, payload, self.signing_key)

    def authentication(self, audience: str | list[str], **claims: Any) -> dict[str, str]:
        return {
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": self.client_assertion(audience, **claims),
        }

    def dpop(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        key: ECKey | None = None,
        **claims: Any,
    ) -> str:
        signer = key or self.dpop_key
        payload: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "htm": method,
            "htu": url,
            "iat": int(self.clock()),
        }
        if access_token is not None:
            payload["ath"] = b64url(hashlib.sha256(access_token.encode()).digest())
        payload.update(claims)
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": dict(signer.as_dict(private=False))}
        return jwt.encode(header, payload, signer)

    def dpop_thumbprint(self) -> str:
        return self.dpop_key.thumbprint()


def unsigned_jws(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """An ``alg=none`` token, built by hand (JOSE libraries refuse to make one)."""
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}."


def hmac_jws(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 token with ``secret`` as key: the algorithm-confusion attack with a public key."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"
