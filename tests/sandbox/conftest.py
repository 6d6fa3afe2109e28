"""Fixtures for the sandbox: a deterministic portal, and helpers that walk a resident through it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from sandbox.clock import ManualClock
from sandbox.personas import ALL_PERSONA_DIRS, load_personas
from sandbox.portal import ApiAnswer, ConsentPage, Portal, Redirect, ServiceRegistration, SignInPage, Timing
from sandbox.scenarios import ScenarioBook

RELAY = "http://127.0.0.1:8000"
LOCAL_TAX_SERVICE = ServiceRegistration(
    client_id="SP00000001_AA0001",
    name="myna-relay（所得・個人住民税）",
    redirect_uri=f"{RELAY}/portal/callback",
    notice_url=f"{RELAY}/portal/notice",
    items=("地方税関係情報",),
)
VACCINATION_SERVICE = ServiceRegistration(
    client_id="SP00000001_AA0002",
    name="myna-relay（予防接種）",
    redirect_uri=f"{RELAY}/portal/callback",
    notice_url=f"{RELAY}/portal/notice",
    items=("予防接種関係情報",),
)
ZERO = Timing(result_delay_s=0, slow_result_delay_s=0, notice_delay_s=0, duplicate_notice_gap_s=0, hang_s=0)


@dataclass
class NoticeReceiver:
    """Stands in for the relay's notice endpoint: records notices, answers as told."""

    received: list[dict[str, Any]] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)  # "ok", "500", "wrong-type", "down"

    def __call__(self, url: str, body: dict[str, Any]) -> tuple[int, Any]:
        self.received.append({"url": url, **body})
        how = self.answers.pop(0) if self.answers else "ok"
        if how == "down":
            raise ConnectionRefusedError("relay down")
        if how == "500":
            return 500, None
        header = dict(body["commonHeader"])
        header["telegramType"] = "IFA0302-S01" if how == "ok" else "IFA0302-R01"
        return 200, {"commonHeader": header}


@pytest.fixture
def clock() -> ManualClock:
    # fixed, so that the telegrams below can name its date (Date=20261127, 09:00 in Japan)
    return ManualClock(datetime(2026, 11, 27, 0, 0, tzinfo=UTC))


@pytest.fixture
def receiver() -> NoticeReceiver:
    return NoticeReceiver()


@pytest.fixture
def make_portal(clock: ManualClock, receiver: NoticeReceiver) -> Callable[..., Portal]:
    def build(timing: Timing = ZERO) -> Portal:
        return Portal(
            (LOCAL_TAX_SERVICE, VACCINATION_SERVICE),
            load_personas(*ALL_PERSONA_DIRS),
            clock,
            timing=timing,
            scenarios=ScenarioBook(),
            send_notice=receiver,
        )

    return build


@pytest.fixture
def portal(make_portal: Callable[..., Portal]) -> Portal:
    return make_portal()


def authorize_params(
    service: ServiceRegistration = LOCAL_TAX_SERVICE, **overrides: str
) -> dict[str, list[str]]:
    params = {
        "response_type": "code",
        "client_id": service.client_id,
        "redirect_uri": service.redirect_uri,
        "state": "relay-state-123",
        "login_type": "0",
    }
    params.update(overrides)
    return {name: [value] for name, value in params.items()}


def query_of(outcome: object) -> dict[str, str]:
    assert isinstance(outcome, Redirect), outcome
    return {name: values[0] for name, values in parse_qs(urlsplit(outcome.url).query).items()}


def sign_in_session(portal: Portal, service: ServiceRegistration = LOCAL_TAX_SERVICE) -> str:
    page = portal.authorize(authorize_params(service))
    assert isinstance(page, SignInPage), page
    return page.session_id


def obtain_code(
    portal: Portal, persona: str = "salaried", service: ServiceRegistration = LOCAL_TAX_SERVICE
) -> str:
    session = sign_in_session(portal, service)
    assert isinstance(portal.sign_in(session, persona, "1234"), ConsentPage)
    return query_of(portal.consent(session, agree=True))["code"]


def token_form(
    code: str, service: ServiceRegistration = LOCAL_TAX_SERVICE, **overrides: str
) -> dict[str, list[str]]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": service.redirect_uri,
        "client_id": service.client_id,
    }
    form.update(overrides)
    return {name: [value] for name, value in form.items()}


def obtain_token(
    portal: Portal, persona: str = "salaried", service: ServiceRegistration = LOCAL_TAX_SERVICE
) -> str:
    answer = portal.token(
        token_form(obtain_code(portal, persona, service), service), client_provider=None, tls=False
    )
    assert answer.status == 200, answer
    return str(answer.body["access_token"])


_sequence = iter(range(1, 10_000))


def telegram_id(provider: str = "00000001", stamp: str = "261127090000") -> str:
    return f"TL-{provider}-{stamp}-{next(_sequence):04d}"


def request_body(tid: str, inquiry: str = "Date=20261127", **header: str) -> bytes:
    common = {"telegramId": tid, "telegramType": "IFA0301-R01", "mode": "1", "processId": "", "errorCode": ""}
    common.update(header)
    return json.dumps(
        {"commonHeader": common, "selfProvisionDataReqInfo": {"inquiryCondition": inquiry}}
    ).encode()


def result_body(tid: str, process_id: str, **header: str) -> bytes:
    common = {
        "telegramId": tid,
        "telegramType": "IFA0303-R01",
        "mode": "1",
        "processId": process_id,
        "errorCode": "",
    }
    common.update(header)
    return json.dumps({"commonHeader": common}).encode()


@dataclass
class Retrieval:
    token: str
    telegram_id: str
    process_id: str


def start_retrieval(
    portal: Portal,
    persona: str = "salaried",
    service: ServiceRegistration = LOCAL_TAX_SERVICE,
    inquiry: str = "Date=20261127",
) -> Retrieval:
    token = obtain_token(portal, persona, service)
    tid = telegram_id()
    answer = portal.request(f"Bearer {token}", request_body(tid, inquiry))
    assert answer.status == 200, answer
    return Retrieval(token, tid, answer.body["commonHeader"]["processId"])


def fetch(portal: Portal, retrieval: Retrieval) -> ApiAnswer:
    return portal.result(
        f"Bearer {retrieval.token}", result_body(retrieval.telegram_id, retrieval.process_id)
    )


def decoded(answer: ApiAnswer) -> list[dict[str, Any]]:
    payload = answer.body["selfPersonalDataProvisionInfo"]["selfPersonalData"]
    assert isinstance(payload, str)  # [O] a JSON document encoded as a string
    data = json.loads(payload)
    assert isinstance(data, list)
    return data
