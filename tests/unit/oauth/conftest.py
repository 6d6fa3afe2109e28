"""Helpers for the OAuth domain tests: a fixed clock, keys, and tokens built the way an attacker would.

Well-formed tokens are signed by joserfc's own algorithm implementations over a header and payload
we write byte for byte, so a test can put anything in the header (``jku``, ``crit``, duplicate
names…). ``none`` and HMAC tokens, which joserfc refuses to produce, are assembled by hand.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey, RSAKey

from chalicelib.domain.partners import PartnerJwks
from tests.conftest import public_jwk

NOW = datetime(2025, 6, 2, 9, 30, 0, tzinfo=UTC)
NOW_TS = int(NOW.timestamp())

Key = ECKey | RSAKey | OKPKey
Json = dict[str, Any]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _raw(part: Json | bytes) -> bytes:
    return part if isinstance(part, bytes) else json.dumps(part, separators=(",", ":")).encode("utf-8")


def signing_input(header: Json | bytes, payload: Json | bytes) -> str:
    return f"{b64url(_raw(header))}.{b64url(_raw(payload))}"


def sign(header: Json | bytes, payload: Json | bytes, key: Key, alg: str) -> str:
    """A compact JWS signed by joserfc's implementation of ``alg``, with exactly this header."""
    data = signing_input(header, payload)
    signature = jws.JWSRegistry.algorithms[alg].sign(data.encode("ascii"), key)
    return f"{data}.{b64url(signature)}"


def unsigned(header: Json, payload: Json) -> str:
    """RFC 7519 section 6 unsecured JWT: ``alg=none`` and an empty signature."""
    return f"{signing_input(header, payload)}."


def hmac_signed(header: Json, payload: Json, secret: bytes) -> str:
    """HS256 by hand (RFC 7518 section 3.2), as in the key-confusion attack."""
    data = signing_input(header, payload)
    return f"{data}.{b64url(hmac.new(secret, data.encode('ascii'), hashlib.sha256).digest())}"


def public_dict(key: Key) -> Json:
    return dict(key.as_dict(private=False))


def partner_jwks(*signing: tuple[Key, str, str]) -> PartnerJwks:
    """The partner's registered JWKS: the given (key, alg, kid) signing keys plus an encryption key."""
    keys = [{**public_dict(key), "kid": kid, "use": "sig", "alg": alg} for key, alg, kid in signing]
    keys.append(public_jwk("enc", "ECDH-ES+A256KW", "acme-enc-1"))
    return PartnerJwks.model_validate({"keys": keys})


@pytest.fixture(scope="session")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048)


@pytest.fixture
def ec_key() -> ECKey:
    return ECKey.generate_key("P-256")


@pytest.fixture
def ed_key() -> OKPKey:
    return OKPKey.generate_key("Ed25519")
