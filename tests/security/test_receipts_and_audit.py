"""Attacks on the resident's receipt links and the partner audit endpoint: guessing and forging a
capability link, path traversal through its id, inputs that a lax parser turns into a server
error, and a partner reaching into another partner's audit records (OWASP API1:2023 BOLA,
OWASP WSTG-ATHZ-01/-04, CWE-20).

A wrong receipt link shows nothing at all (404, naming neither the partner nor the data) and a
refused request leaves the state and audit tables as they were.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from chalicelib import container
from tests.fakes import ShiftedClock
from tests.functional.conftest import ISSUER, Journey
from tests.functional.test_delivery import pick_up
from tests.functional.test_receipts import through_token
from tests.partner_helpers import Pkce, TestPartner
from tests.security.helpers import (
    FORM,
    Tables,
    assert_problem,
    deliver_repeated_header,
    ready_delivery,
)

Snapshot = Callable[[], Tables]
REVEALING = ("アクメ銀行", "Acme Bank", "地方税関係情報", "住宅ローン")


def assert_shows_nothing(response: Any) -> None:
    """A receipt that is not there: 404, an HTML page that names no partner and no data."""
    assert response.status_code == 404, response.body
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Cache-Control"] == "no-store"
    assert "Location" not in response.headers
    text = response.body.decode()
    for word in REVEALING:
        assert word not in text


@pytest.mark.attack(
    source="OWASP API1:2023 / WSTG-ATHZ-04",
    threat="a partner that knows the delivery id forges the resident's receipt link to read or revoke it",
)
def test_a_partner_knowing_the_delivery_id_cannot_open_or_revoke_the_receipt(
    journey: Journey, clock: ShiftedClock, tables: Snapshot
) -> None:
    # GIVEN a partner holding the delivery id (it is in the token response and the webhook)
    token, delivery_id = ready_delivery(journey)
    before = tables()
    far = str(int(clock.timestamp()) + 86400)
    forged = urlencode({"e": far, "t": secrets.token_urlsafe(32)})
    # WHEN it guesses the capability for the receipt, its signed copy and its revocation
    assert_shows_nothing(journey.client.http.get(f"/receipts/{delivery_id}?{forged}"))
    assert_shows_nothing(journey.client.http.get(f"/receipts/{delivery_id}/signed?{forged}"))
    pair = secrets.token_urlsafe(16)
    revoked = journey.client.http.post(
        f"/receipts/{delivery_id}/revoke",
        body=f"{forged}&csrf_token={pair}",
        headers={"Content-Type": FORM, "Cookie": f"relay_receipt_csrf={pair}"},
    )
    # THEN nothing is shown, nothing changes, and the delivery still goes to the partner
    assert_shows_nothing(revoked)
    assert tables() == before
    assert pick_up(journey, token).status_code == 200


@pytest.mark.attack(
    source="OWASP WSTG-ATHZ-01 / CWE-22",
    threat="path traversal through the receipt id toward other routes",
)
def test_a_traversing_receipt_id_shows_nothing(
    journey: Journey, clock: ShiftedClock, tables: Snapshot
) -> None:
    _, receipt = through_token(journey)
    query = urlsplit(receipt).query  # a genuine capability for another id
    before = tables()
    for path in (
        "/receipts/..%2F..%2Fv1%2Faudit",
        "/receipts/%2e%2e%2f%2e%2e%2f.well-known%2fjwks.json",
        "/receipts/..%5C..%5Cstatic%5Crelay.css",
    ):
        assert_shows_nothing(journey.client.http.get(f"{path}?{query}"))
    assert tables() == before


@pytest.mark.parametrize(
    "expiry",
    [
        pytest.param(
            "\u00b2",
            id="superscript-digit-expiry",
            marks=pytest.mark.attack(
                source="CWE-20 / CWE-1286",
                threat="receipt expiry of a Unicode digit that str.isdigit accepts and int refuses",
            ),
        ),
        pytest.param(
            "9" * 5000,
            id="5000-digit-expiry",
            marks=pytest.mark.attack(
                source="CWE-400 / CVE-2020-10735",
                threat="receipt expiry of 5000 digits (int conversion limit)",
            ),
        ),
    ],
)
def test_a_malformed_receipt_expiry_shows_nothing_rather_than_failing(
    journey: Journey, clock: ShiftedClock, tables: Snapshot, expiry: str
) -> None:
    _, receipt = through_token(journey)
    path, query = urlsplit(receipt).path, parse_qs(urlsplit(receipt).query)
    before = tables()
    tampered = urlencode({"e": expiry, "t": query["t"][0]})
    assert_shows_nothing(journey.client.http.get(f"{path}?{tampered}"))
    assert_shows_nothing(journey.client.http.get(f"{path}/signed?{tampered}"))
    assert tables() == before


@pytest.mark.attack(
    source="CWE-400 / OWASP API4:2023",
    threat="forged receipt links dated where no receipt key exists, to make the relay create keys or call KMS per request",
)
def test_a_forged_link_from_a_month_without_a_key_creates_nothing_and_asks_kms_nothing(
    journey: Journey, clock: ShiftedClock, tables: Snapshot
) -> None:
    # GIVEN a flow, and a stage whose receipt keys have since existed for longer than a link lives
    # (used every ten days: each month's key made, chained to the one before)
    _, receipt = through_token(journey)
    path = urlsplit(receipt).path
    for _ in range(4):
        clock.advance(days=10)
        container.get_container().keyring.current("receipt")
    kms_calls: list[str] = []
    container.get_container().aws.kms.meta.events.register(
        "before-call.kms.*", lambda model, **_: kms_calls.append(model.name)
    )
    before = tables()
    now = int(clock.timestamp())
    # WHEN links claim an issue time 29 days ago (last month's key, or this one's), in the
    # future (beyond the link lifetime: next month, no key yet) or a year ahead
    for expiry in (now + 86400, now + 31 * 86400, now + 400 * 86400):
        forged = urlencode({"e": str(expiry), "t": secrets.token_urlsafe(32)})
        assert_shows_nothing(journey.client.http.get(f"{path}?{forged}"))
    # THEN nothing was shown, no key item was made, and KMS was not asked (the check of links made
    # before the keyring, by the KMS pseudonym key, runs only for a link dated before the first
    # receipt key, and no live link is that old)
    assert tables() == before
    assert kms_calls == []


def _audit(journey: Journey, partner: TestPartner, **params: str) -> Any:
    assertion = partner.client_assertion(ISSUER)
    return journey.client.http.get(
        f"/v1/audit?{urlencode(params)}", headers={"Authorization": f"Bearer {assertion}"}
    )


@pytest.mark.attack(
    source="OWASP API1:2023",
    threat="a partner pages through the audit log with a cursor lifted from another partner",
)
def test_another_partners_cursor_shows_only_ones_own_records(
    journey: Journey, other_partner: TestPartner, tables: Snapshot
) -> None:
    # GIVEN two partners with records, and a cursor from the first one's page
    for state in ("a-1", "a-2", "a-3"):
        assert (
            Journey(journey.client, journey.partner, journey.sandbox, Pkce(), state=state).push().status_code
            == 201
        )
    other = Journey(journey.client, other_partner, journey.sandbox, Pkce(), state="b-1")
    assert other.push().status_code == 201
    first_page = json.loads(_audit(journey, journey.partner, limit="1").body)
    assert first_page["next"]
    # WHEN the other partner presents that cursor
    lifted = _audit(journey, other_partner, after=first_page["next"], limit="100")
    # THEN it reads its own records only
    assert lifted.status_code == 200, lifted.body
    records = json.loads(lifted.body)["records"]
    assert {record["requester_id"] for record in records} <= {other_partner.client_id}
    assert journey.partner.client_id not in lifted.body.decode()


@pytest.mark.attack(
    source="OWASP API1:2023 / WSTG-INPV-05",
    threat="key injection: a month carrying another partner's partition key",
)
def test_a_month_that_injects_a_partition_key_is_refused(
    journey: Journey, other_partner: TestPartner, tables: Snapshot
) -> None:
    assert journey.push().status_code == 201
    before = tables()
    response = _audit(journey, other_partner, month=f"2026-11#{journey.partner.client_id}#2026-11")
    assert_problem(response, 400, "invalid-request", "month")
    assert tables() == before


@pytest.mark.attack(
    source="RFC 6750 §2.1 / RFC 9110 §5.3",
    threat="request smuggling: two Authorization headers at the audit endpoint",
)
def test_two_authorization_headers_at_the_audit_endpoint_are_refused(
    journey: Journey, other_partner: TestPartner, tables: Snapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert journey.push().status_code == 201
    before = tables()
    values = [
        f"Bearer {other_partner.client_assertion(ISSUER)}",
        f"Bearer {journey.partner.client_assertion(ISSUER)}",
    ]
    deliver_repeated_header(journey, monkeypatch, "authorization", values)
    response = journey.client.http.get("/v1/audit", headers={"Authorization": values[-1]})
    assert response.status_code == 401, response.body
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert json.loads(response.body)["error_description"].startswith("authorization:")
    assert tables() == before
