"""A scripted relay for unit tests: canned answers per (method, URL), every request recorded, and a
service signing key to seal payloads and sign webhooks with, as the relay would."""

from __future__ import annotations

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
        self.answers: dict[tuple[str, str], deque[requests.Response | Callable[[], requests.Response]]] = {}
        self.sent: list[Sent] = []
        self.script("GET", "/.well-known/oauth-authorization-server", answer(200, METADATA))

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self.service_key.as_dict(private=False), kid=self.service_key.kid)]}

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
