"""A scripted relay for unit tests: canned answers per (method, URL), every request recorded, and a
service signing key to seal payloads, sign webhooks and sign tree heads with, as the relay would."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from joserfc import jwe, jwt
from joserfc.jwk import ECKey

from tests.partner_kit import rfc6962

ISSUER = "http://relay.test"
METADATA = {
    "issuer": ISSUER,
    "pushed_authorization_request_endpoint": f"{ISSUER}/par",
    "authorization_endpoint": f"{ISSUER}/authorize",
    "token_endpoint": f"{ISSUER}/token",
    "revocation_endpoint": f"{ISSUER}/revoke",
    "jwks_uri": f"{ISSUER}/.well-known/jwks.json",
}


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    if isinstance(body, str):
        response._content = body.encode()
    elif body is None:
        response._content = b""
    else:
        response._content = json.dumps(body).encode()
        response.headers["Content-Type"] = "application/json"
    response.headers.update(headers or {})
    response.encoding = "utf-8"
    return response


@dataclass
class Sent:
    method: str
    url: str
    data: dict[str, str] | None
    headers: dict[str, str]


class FakeRelay(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.service_key = ECKey.generate_key("P-256", parameters={"kid": "relay-1"})
        # Webhook events are signed by an hourly event key, published beside the KMS key.
        self.event_key = ECKey.generate_key("P-256", parameters={"kid": "event-20261103T00-0123456789abcdef"})
        self.answers: dict[tuple[str, str], deque[requests.Response | Callable[[], requests.Response]]] = {}
        self.sent: list[Sent] = []
        self.script("GET", "/.well-known/oauth-authorization-server", answer(200, METADATA))

    def jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                dict(key.as_dict(private=False), kid=key.kid, use="sig", alg="ES256")
                for key in (self.service_key, self.event_key)
            ]
        }

    def script(
        self, method: str, path: str, *responses: requests.Response | Callable[[], requests.Response]
    ) -> None:
        self.answers.setdefault((method, f"{ISSUER}{path}"), deque()).extend(responses)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        method, url = str(method), str(url)
        self.sent.append(Sent(method, url, kwargs.get("data"), dict(kwargs.get("headers") or {})))
        if url == METADATA["jwks_uri"] and (method, url) not in self.answers:
            return answer(200, self.jwks())
        queue = self.answers.get((method, url))
        if not queue:
            raise AssertionError(f"unexpected {method} {url}")
        scripted = queue.popleft() if len(queue) > 1 else queue[0]
        return scripted() if callable(scripted) else scripted

    def to(self, path: str) -> list[Sent]:
        return [sent for sent in self.sent if sent.url == f"{ISSUER}{path}"]


@dataclass
class Sealer:
    """Seals payloads as docs/delivery.md describes."""

    service_key: ECKey
    partner_encryption_key: ECKey
    claims: dict[str, Any] = field(default_factory=dict)

    def inner(self, **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": "demo-bank",
            "iat": now,
            "exp": now + 600,
            "jti": str(uuid.uuid4()),
            "purpose": "loan-screening",
            "interaction_id": "d-1",
            "schema": "myna-relay/self-info/1",
            "data": {
                "dataset": "local_tax",
                "records": [{"fiscal_year": 2026, "total_income": 3680000}],
                "derived": {"annual_income_at_least": False},
            },
        }
        claims.update(overrides)
        header = {"alg": "ES256", "kid": self.service_key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self.service_key)

    def seal(self, inner: str | None = None, *, to: ECKey | None = None, **overrides: Any) -> str:
        recipient = to or self.partner_encryption_key
        header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": recipient.kid, "cty": "JWT"}
        return jwe.encrypt_compact(header, inner or self.inner(**overrides), recipient)


CHECKPOINT_TYP = "myna-relay-checkpoint+jwt"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_head(key: ECKey, claims: dict[str, Any], *, typ: str = CHECKPOINT_TYP) -> str:
    """A signed tree head as docs/partner-audit.md describes it (ES256, the relay's kid)."""
    return jwt.encode({"alg": "ES256", "kid": key.kid, "typ": typ}, claims, key)


@dataclass
class FakeLog:
    """The relay's audit log as a partner sees it: entries in an RFC 6962 tree (built with the test's
    own reference, tests/partner_kit/rfc6962.py), signed heads and consistency proofs between them.
    Two logs that share a key and diverge are what a forking relay shows two partners."""

    service_key: ECKey
    entries: list[bytes] = field(default_factory=list)
    heads: list[dict[str, Any]] = field(default_factory=list)  # as served, heads[seq - 1]

    def append(self, count: int, *, tag: bytes = b"record") -> None:
        start = len(self.entries)
        self.entries.extend(tag + b"-" + str(index).encode() for index in range(start, start + count))

    def sign(self, **overrides: Any) -> dict[str, Any]:
        """A new checkpoint over every entry so far; ``overrides`` replace signed claims."""
        previous = self.heads[-1]["signed_tree_head"] if self.heads else ""
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "seq": len(self.heads) + 1,
            "tree_size": len(self.entries),
            "root": b64url(rfc6962.mth(self.entries)),
            "through": f"2026-11-27T09:41:0{len(self.heads)}Z#00#r{len(self.entries)}",
            "previous": b64url(hashlib.sha256(previous.encode()).digest()) if previous else "",
            "iat": int(time.time()),
        }
        claims.update(overrides)
        head = {
            "seq": claims["seq"],
            "tree_size": claims["tree_size"],
            "root": claims["root"],
            "signed_tree_head": signed_head(self.service_key, claims),
        }
        self.heads.append(head)
        return head

    def head(self, seq: int) -> dict[str, Any]:
        return dict(self.heads[seq - 1])

    def consistency(self, first: int, second: int) -> dict[str, Any]:
        """The answer of ``GET /v1/audit/checkpoints/{second}/consistency?from={first}``."""
        old, new = self.head(first), self.head(second)
        path = rfc6962.proof(old["tree_size"], self.entries[: new["tree_size"]])
        return {"first": old, "second": new, "consistency_path": [b64url(node) for node in path]}
