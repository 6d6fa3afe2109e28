"""What the schemathesis run found, pinned as functional tests (Chalice test client, moto): each
answered a server error or an undocumented answer before its fix.

- A receipt link or a receipt revocation form with a non-ASCII token or CSRF token was a 500:
  ``secrets.compare_digest`` refuses ``str`` with non-ASCII characters (TypeError). The consent
  decision compared its CSRF tokens the same way.
- ``GET /static/relay.css`` answered a ``bytes`` body of a non-binary type (a Lambda error in AWS).
  The route is gone since: each page carries its stylesheet in a ``<style>`` element under a CSP
  hash (tests/security/test_browser_pages.py).
- ``POST /portal/notice`` with another media type was answered by Chalice itself (415 with its own
  ``{"Code", "Message"}`` JSON), not with the RFC 9457 problem the document (and the standard) says.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.functional.conftest import Journey

FORM = "application/x-www-form-urlencoded"
FAR_FUTURE = "9999999999"  # a well-formed, unexpired receipt expiry (Unix seconds)
Items = list[dict[str, Any]]


def _stable(item: dict[str, Any]) -> str:
    return json.dumps(item, sort_keys=True, default=bytes.hex)  # audit leaf hashes are binary


@pytest.fixture
def stored(dynamodb_client: Any, resources: dict[str, str]) -> Callable[[], dict[str, Items]]:
    """Every item of every table of the stage, in a stable order."""

    def scan() -> dict[str, Items]:
        return {
            name: sorted(dynamodb_client.scan(TableName=table)["Items"], key=_stable)
            for name, table in resources.items()
            if name.endswith("_TABLE")
        }

    return scan


def assert_error_page(response: Any, status: int, check: str | None) -> None:
    assert response.status_code == status, response.body
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "Location" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["x-fapi-interaction-id"]
    if check is not None:
        assert f"({check})" in response.body.decode()


@pytest.mark.parametrize("path", ["/receipts/some-flow", "/receipts/some-flow/signed"])
def test_a_receipt_link_with_a_non_ascii_token_shows_no_receipt_instead_of_failing(
    client: Any, stored: Callable[[], dict[str, Items]], path: str
) -> None:
    # GIVEN a well-formed, unexpired link whose token is not ASCII
    before = stored()
    # WHEN it is opened
    response = client.http.get(f"{path}?{urlencode({'e': FAR_FUTURE, 't': 'é' * 43})}")
    # THEN it is "no receipt", like any other wrong token, and nothing changed
    assert_error_page(response, 404, None)
    assert stored() == before


def test_a_receipt_revocation_with_a_non_ascii_csrf_token_is_refused_instead_of_failing(
    client: Any, stored: Callable[[], dict[str, Items]]
) -> None:
    # GIVEN a revocation form whose CSRF token and cookie are not ASCII
    before = stored()
    fields = {"e": FAR_FUTURE, "t": "t" * 43, "csrf_token": "é" * 43, "lang": "en"}
    # WHEN it is posted
    response = client.http.post(
        "/receipts/some-flow/revoke",
        body=urlencode(fields),
        headers={"Content-Type": FORM, "Cookie": "relay_receipt_csrf=" + "ü" * 43},
    )
    # THEN it is the CSRF refusal page, and nothing changed
    assert_error_page(response, 403, "csrf_token")
    assert stored() == before


def test_a_consent_decision_with_a_non_ascii_csrf_token_is_refused_and_leaves_the_flow_alone(
    journey: Journey, stored: Callable[[], dict[str, Items]]
) -> None:
    # GIVEN a pushed request whose interstitial was shown
    assert journey.push().status_code == 201
    assert journey.show_consent().status_code == 200
    before = stored()
    # WHEN the decision is posted with a non-ASCII CSRF token and cookie
    response = journey.decide("continue", csrf="é" * 43, cookie="ü" * 43)
    # THEN it is the CSRF refusal page, and the flow is where it was
    assert_error_page(response, 403, "csrf_token")
    assert stored() == before


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_a_completion_notice_of_another_media_type_is_a_415_problem(
    client: Any, stored: Callable[[], dict[str, Items]], content_type: str
) -> None:
    # GIVEN a well-formed notice sent with the wrong media type
    before = stored()
    body = json.dumps(
        {"commonHeader": {"telegramId": "1", "telegramType": "t", "mode": "1", "processId": "p"}}
    )
    # WHEN it is posted
    response = client.http.post("/portal/notice", body=body, headers={"Content-Type": content_type})
    # THEN the answer is an RFC 9457 problem naming the check, and nothing changed
    assert response.status_code == 415
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = json.loads(response.body)
    assert problem == {
        "type": "urn:myna-relay:problem:unsupported-media-type",
        "title": "Unsupported media type",
        "status": 415,
        "detail": "the notice must be application/json",
        "check": "content-type",
        "interaction_id": response.headers["x-fapi-interaction-id"],
    }
    assert stored() == before


def test_a_completion_notice_without_a_media_type_is_still_read_as_json(
    client: Any, portal_env: None
) -> None:
    body = json.dumps(
        {"commonHeader": {"telegramId": "1", "telegramType": "t", "mode": "1", "processId": "p"}}
    )
    response = client.http.post("/portal/notice", body=body)
    assert response.status_code == 200
    assert json.loads(response.body)["commonHeader"]["processId"] == "p"
