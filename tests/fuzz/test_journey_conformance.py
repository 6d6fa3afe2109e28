"""The answers fuzzing cannot reach (they need a registered partner's keys, a resident at the portal
and a sealed delivery) are checked against the document too: two whole journeys through the relay
(Chalice test client, moto, the sandbox portal), every answer held to its operation's documented
status, media type, body schema and required headers."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import pytest
from jsonschema import Draft202012Validator

from chalicelib import container
from chalicelib.api.openapi import build_document
from tests.fakes import ShiftedClock
from tests.functional.conftest import ISSUER, Journey, location_query

FORM = "application/x-www-form-urlencoded"
JSON_MEDIA = re.compile(r"^application/([a-z-]+\+)?json$")


class Contract:
    """One operation's documented answers, and a check of a real answer against them."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def _resolved(self, node: Mapping[str, Any]) -> Any:
        if "$ref" not in node:
            return node
        target: Any = self.document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return target

    def _valid(self, instance: Any, schema: Mapping[str, Any]) -> list[str]:
        # The schema is validated in the document, so that its $refs to #/components resolve.
        root = {**self.document, **schema}
        return [error.message for error in Draft202012Validator(root).iter_errors(instance)]

    def check(self, method: str, path: str, response: Any) -> None:
        operation = self.document["paths"][path][method.lower()]
        status = str(response.status_code)
        assert status in operation["responses"], f"{method} {path}: {status} is not documented"
        answer = operation["responses"][status]
        headers = {name.lower(): value for name, value in response.headers.items()}
        for name, reference in answer["headers"].items():
            header = self._resolved(reference)
            if name.lower() not in headers:
                assert not header["required"], f"{method} {path} {status}: no {name} header"
                continue
            # Chalice's client gives a header sent several times (Set-Cookie) as a list: each one
            # is a header of its own on the wire (API Gateway's multiValueHeaders)
            value = headers[name.lower()]
            for one in value if isinstance(value, list) else [value]:
                assert self._valid(one, header["schema"]) == [], f"{method} {path} {name}"
        content = answer.get("content")
        if content is None:
            assert response.body in (b"", ""), f"{method} {path} {status}: a body nobody documented"
            return
        # A view that returns a dict sets no Content-Type; API Gateway and chalice local send JSON.
        media = headers.get("content-type", "application/json").split(";")[0].strip()
        assert media in content, f"{method} {path} {status}: {media} is not documented"
        body = response.body.decode()
        instance = json.loads(body) if JSON_MEDIA.match(media) else body
        assert self._valid(instance, content[media]["schema"]) == [], (
            f"{method} {path} {status}: {body[:200]}"
        )


@pytest.fixture
def contract() -> Contract:
    return Contract(build_document(ISSUER))


@pytest.fixture
def clock(journey: Journey, monkeypatch: pytest.MonkeyPatch) -> ShiftedClock:
    """The relay's clock on the container, shared with the partner's signatures."""
    shifted = ShiftedClock()
    container.reset()
    monkeypatch.setattr(container, "_container", container.Container(clock=shifted))
    journey.partner.clock = shifted.timestamp
    return shifted


def until_token(journey: Journey, contract: Contract) -> tuple[str, str]:
    """PAR, the interstitial, the decision, the portal and its callback, the token; each answer
    checked. Returns the access token and the receipt link shown on the interstitial."""
    contract.check("POST", "/par", journey.push())
    consent = journey.show_consent()
    contract.check("GET", "/authorize", consent)
    receipt_link = html.unescape(re.search(r'href="([^"]*/receipts/[^"]+)"', consent.body.decode()).group(1))  # type: ignore[union-attr]
    contract.check("POST", "/authorize/decision", journey.decide())
    journey.at_portal()
    callback = journey.callback()
    contract.check("GET", "/portal/callback", callback)
    issued = journey.redeem(location_query(callback)["code"])
    contract.check("POST", "/token", issued)
    return json.loads(issued.body)["access_token"], receipt_link


def pick_up(journey: Journey, token: str) -> Any:
    proof = journey.partner.dpop("GET", f"{ISSUER}/v1/self-info", access_token=token)
    return journey.client.http.get("/v1/self-info", headers={"Authorization": f"DPoP {token}", "DPoP": proof})


def test_a_delivery_picked_up_then_reconciled_answers_as_documented(
    journey: Journey, clock: ShiftedClock, contract: Contract
) -> None:
    # GIVEN a partner holding a token for a flow the portal is still retrieving
    token, _ = until_token(journey, contract)
    pending = pick_up(journey, token)
    contract.check("GET", "/v1/self-info", pending)
    assert pending.status_code == 202
    # WHEN the delivery is sealed and picked up, twice
    assert container.get_container().delivery.process_due() == {"ready": 1}
    sealed, gone = pick_up(journey, token), pick_up(journey, token)
    # THEN the sealed payload, the 410 after it, the partner's audit page and the token's revocation
    # are all answered as the document says
    assert (sealed.status_code, gone.status_code) == (200, 410)
    contract.check("GET", "/v1/self-info", sealed)
    contract.check("GET", "/v1/self-info", gone)
    assertion = journey.partner.client_assertion(ISSUER)
    audit = journey.client.http.get("/v1/audit", headers={"Authorization": f"Bearer {assertion}"})
    assert audit.status_code == 200
    assert json.loads(audit.body)["records"]
    contract.check("GET", "/v1/audit", audit)
    revocation = journey.client.http.post(
        "/revoke",
        **journey.form(
            {"token": token, "token_type_hint": "access_token", **journey.partner.authentication(ISSUER)}
        ),
    )
    assert revocation.status_code == 200
    contract.check("POST", "/revoke", revocation)


def test_a_delivery_revoked_by_the_resident_answers_as_documented(
    journey: Journey, clock: ShiftedClock, contract: Contract
) -> None:
    # GIVEN a flow whose token was issued, and the receipt link the resident was shown
    token, receipt_link = until_token(journey, contract)
    receipt_path = urlsplit(receipt_link).path + "?" + urlsplit(receipt_link).query
    # WHEN the resident opens the receipt, downloads the signed copy and revokes the delivery
    page = journey.client.http.get(receipt_path)
    assert page.status_code == 200
    contract.check("GET", "/receipts/{interaction_id}", page)
    signed = journey.client.http.get(urlsplit(receipt_link).path + "/signed?" + urlsplit(receipt_link).query)
    assert signed.status_code == 200
    contract.check("GET", "/receipts/{interaction_id}/signed", signed)
    fields = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', page.body.decode()))
    cookie = page.headers["Set-Cookie"].split(";")[0]
    revoked = journey.client.http.post(
        urlsplit(receipt_link).path + "/revoke",
        **{**journey.form(fields), "headers": {"Content-Type": FORM, "Cookie": cookie}},
    )
    # THEN each answer is documented, and the partner's pickup is gone
    assert revoked.status_code == 303, revoked.body
    contract.check("POST", "/receipts/{interaction_id}/revoke", revoked)
    gone = pick_up(journey, token)
    assert gone.status_code in (401, 410)
    contract.check("GET", "/v1/self-info", gone)


def test_the_public_documents_and_the_notice_answer_as_documented(
    journey: Journey, contract: Contract
) -> None:
    for path in (
        "/health",
        "/openapi.json",
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
    ):
        response = journey.client.http.get(path)
        assert response.status_code == 200
        contract.check("GET", path, response)
    notice = {"commonHeader": {"telegramId": "T1", "telegramType": "IFA0302", "mode": "1", "processId": "P1"}}
    answer = journey.client.http.post(
        "/portal/notice", body=json.dumps(notice), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 200
    contract.check("POST", "/portal/notice", answer)
