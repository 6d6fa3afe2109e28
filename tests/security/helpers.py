"""What every attack case of the catalogue checks: the refusal's whole answer, in the format of the
endpoint attacked, and that the tables are as they were.

The OAuth and page assertions are those of the functional refusals (imported, not copied); the
resource-server and problem assertions are added here for pickup, the notice, the partner audit
endpoint and the receipts.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc.jwk import ECKey

from tests.functional.conftest import ISSUER, Journey
from tests.functional.test_authorization_refusals import assert_error_page, assert_oauth_error
from tests.functional.test_delivery import redeemed, run_due
from tests.partner_helpers import b64url

__all__ = [
    "AUDIT_URL",
    "FORM",
    "PAR_URL",
    "REVOKE_URL",
    "SELF_INFO",
    "TOKEN_URL",
    "Tables",
    "assert_error_page",
    "assert_oauth_error",
    "assert_problem",
    "assert_resource_refusal",
    "b64url",
    "deliver_repeated_header",
    "es256_jws",
    "ready_delivery",
    "without",
]

TOKEN_URL = f"{ISSUER}/token"
PAR_URL = f"{ISSUER}/par"
REVOKE_URL = f"{ISSUER}/revoke"
SELF_INFO = f"{ISSUER}/v1/self-info"
AUDIT_URL = f"{ISSUER}/v1/audit"
FORM = "application/x-www-form-urlencoded"
PROBLEM = "application/problem+json"

Tables = dict[str, list[dict[str, Any]]]


def without(tables: Tables, *prefixes: str) -> Tables:
    """The tables without the items whose partition key starts with one of ``prefixes``."""
    return {
        name: [item for item in items if not item["pk"]["S"].startswith(prefixes)]
        for name, items in tables.items()
    }


def assert_problem(response: Any, status: int, code: str, check: str) -> None:
    """RFC 9457 problem details with our stable type, naming the failed check."""
    assert response.status_code == status, response.body
    assert response.headers["Content-Type"] == PROBLEM
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["x-fapi-interaction-id"]
    body = json.loads(response.body)
    assert body["type"] == f"urn:myna-relay:problem:{code}"
    assert body["status"] == status
    assert body["check"] == check, body


def assert_resource_refusal(response: Any, status: int, error: str, check: str) -> None:
    """RFC 6750 section 3 / RFC 9449 section 7.1: the error JSON and a DPoP challenge naming it."""
    assert response.status_code == status, response.body
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["x-fapi-interaction-id"]
    assert response.headers["WWW-Authenticate"] == f'DPoP algs="ES256 PS256 EdDSA", error="{error}"'
    body = json.loads(response.body)
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert body["error_description"].startswith(f"{check}:"), body["error_description"]


def ready_delivery(journey: Journey, persona: str = "salaried") -> tuple[str, str]:
    """A sealed delivery waiting for the partner: (access token, delivery id)."""
    token, delivery_id = redeemed(journey, persona)
    assert run_due() == {"ready": 1}
    return token, delivery_id


def es256_jws(header: dict[str, Any] | str, claims: dict[str, Any] | str, key: ECKey) -> str:
    """A compact ES256 JWS signed by hand over exactly the JSON given (a string is used verbatim):
    for headers a JOSE library will not write (``crit``, ``b64``, repeated members)."""
    header_json = header if isinstance(header, str) else json.dumps(header)
    claims_json = claims if isinstance(claims, str) else json.dumps(claims)
    signing_input = f"{b64url(header_json.encode())}.{b64url(claims_json.encode())}"
    der = key.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))  # type: ignore[union-attr]
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def deliver_repeated_header(
    journey: Journey, monkeypatch: pytest.MonkeyPatch, name: str, values: list[str]
) -> None:
    """Make the test client deliver ``name`` as API Gateway REST APIs deliver a repeated header:
    the last value in ``headers``, every value in ``multiValueHeaders``."""
    converter = journey.client.http._local_gateway.event_converter
    build_event = converter.create_lambda_event

    def rest_api_event(**request: Any) -> dict[str, Any]:
        event: dict[str, Any] = build_event(**request)
        event["multiValueHeaders"] = {key: [value] for key, value in event["headers"].items()}
        event["headers"][name] = values[-1]
        event["multiValueHeaders"][name] = values
        return event

    monkeypatch.setattr(converter, "create_lambda_event", rest_api_event)
