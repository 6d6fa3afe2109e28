"""The demo partner apps against a scripted relay: the UI contract (ids, texts), the result pages,
every error page, the webhook, and the page headers."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt

from partner_kit import PartnerKeys, generate_partner_keys
from partner_kit.demo import create_demo_app
from tests.conftest import REPO_ROOT
from tests.partner_kit.fake_relay import ISSUER, FakeRelay, Sealer, answer

BASE_URL = "http://127.0.0.1:8030"


@pytest.fixture
def relay() -> FakeRelay:
    return FakeRelay()


def make_app(kind: str, relay: FakeRelay, keys: PartnerKeys, **options: Any) -> Flask:
    client_id = "demo-bank" if kind == "bank" else "demo-health"
    return create_demo_app(
        kind,  # type: ignore[arg-type]
        issuer=ISSUER,
        client_id=client_id,
        keys=keys,
        base_url=BASE_URL,
        secret_key="test-secret",
        http=relay,
        **options,
    )


def started(browser: FlaskClient, relay: FakeRelay) -> str:
    relay.script(
        "POST", "/par", answer(201, {"request_uri": "urn:ietf:params:oauth:request_uri:r1", "expires_in": 90})
    )
    response = browser.post("/start")
    assert response.status_code == 303
    return str(relay.to("/par")[-1].data["state"])  # type: ignore[index]


def back(browser: FlaskClient, **query: str) -> str:
    response = browser.get("/callback", query_string={"iss": ISSUER, **query})
    assert response.status_code == 200
    return response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("kind", "heading", "button_id", "button_text"),
    [
        ("bank", "デモ銀行", "import-income", "マイナポータルから所得情報を取り込む"),
        ("health", "デモ母子手帳アプリ", "import-vaccinations", "マイナポータルから予防接種記録を取り込む"),
    ],
)
def test_the_home_page_has_the_heading_and_the_import_button(
    relay: FakeRelay, kind: str, heading: str, button_id: str, button_text: str
) -> None:
    page = make_app(kind, relay, generate_partner_keys("x")).test_client().get("/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert re.search(r"<h1>[^<]*" + heading, html)
    form = re.search(r'<form method="post" action="/start">(.*?)</form>', html, re.S)
    assert form is not None
    assert f'<button type="submit" id="{button_id}">{button_text}</button>' in form.group(1)
    assert "<script" not in html
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    css = make_app(kind, relay, generate_partner_keys("x")).test_client().get("/style.css")
    assert css.status_code == 200
    assert css.mimetype == "text/css"


@pytest.mark.parametrize(
    ("kind", "purpose", "scope"),
    [("bank", "loan-screening", "local_tax"), ("health", "child-vaccination-record", "vaccination")],
)
def test_start_pushes_the_request_and_sends_the_browser_to_the_relay(
    relay: FakeRelay, kind: str, purpose: str, scope: str
) -> None:
    browser = make_app(kind, relay, generate_partner_keys("x")).test_client()
    relay.script(
        "POST", "/par", answer(201, {"request_uri": "urn:ietf:params:oauth:request_uri:r1", "expires_in": 90})
    )
    response = browser.post("/start")
    assert response.status_code == 303
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{ISSUER}/authorize"
    assert parse_qs(location.query)["request_uri"] == ["urn:ietf:params:oauth:request_uri:r1"]
    form = relay.to("/par")[0].data
    assert form is not None
    assert (form["purpose"], form["scope"], form["redirect_uri"]) == (purpose, scope, f"{BASE_URL}/callback")
    assert f"demo-{kind}-session=" in response.headers["Set-Cookie"]
    assert "HttpOnly" in response.headers["Set-Cookie"]


def deliver(relay: FakeRelay, sealed: str) -> None:
    relay.script(
        "POST",
        "/token",
        answer(200, {"access_token": "at", "token_type": "DPoP", "expires_in": 300, "delivery_id": "d"}),
    )
    relay.script("GET", "/v1/self-info", answer(200, sealed, {"Content-Type": "application/jose"}))


def test_the_bank_shows_the_released_income_and_the_derived_claim(relay: FakeRelay) -> None:
    keys = generate_partner_keys("demo-bank")
    browser = make_app("bank", relay, keys).test_client()
    state = started(browser, relay)
    record = {
        "fiscal_year": 2026,
        "municipality": "<b>千代田区</b>",
        "taxation_status": "taxable",
        "salary_revenue": 5000000,
        "total_income": 3680000,
    }
    data = {"dataset": "local_tax", "records": [record], "derived": {"annual_income_at_least": False}}
    deliver(relay, Sealer(relay.service_key, keys.encryption_key).seal(data=data))
    html = back(browser, code="c", state=state)
    assert 'id="result"' in html
    assert 'id="error"' not in html
    assert re.search(r"<th>課税年度.*?</th><td>2026年度</td>", html)
    assert re.search(r"<th>合計所得金額.*?</th><td>3,680,000円</td>", html)
    assert re.search(r"<th>給与収入額.*?</th><td>5,000,000円</td>", html)
    assert re.search(r"<th>課税区分.*?</th><td>課税</td>", html)
    assert "&lt;b&gt;千代田区&lt;/b&gt;" in html  # escaped
    assert "年収400万円以上: いいえ" in html
    assert "確認画面" in html  # where the resident's receipt link is
    # the pending authorization is used up: the same redirect again is refused
    assert "不正な応答のため中止しました。" in back(browser, code="c", state=state)


def test_the_health_app_shows_the_vaccinations(relay: FakeRelay) -> None:
    keys = generate_partner_keys("demo-health")
    browser = make_app("health", relay, keys).test_client()
    state = started(browser, relay)
    records = [
        {"vaccine": "四種混合", "dose": "第1期初回1回目", "date": "2025-06-02", "municipality": "横浜市"},
        {"vaccine": "MR", "dose": "第1期", "date": "2026-01-15", "municipality": "横浜市"},
    ]
    sealed = Sealer(relay.service_key, keys.encryption_key).seal(
        aud="demo-health", data={"dataset": "vaccination", "records": records, "derived": {}}
    )
    deliver(relay, sealed)
    html = back(browser, code="c", state=state)
    assert 'id="result"' in html
    assert "<td>四種混合</td><td>第1期初回1回目</td><td>2025-06-02</td>" in html
    assert "<td>MR</td><td>第1期</td><td>2026-01-15</td>" in html


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ("access_denied", "お客様が手続きをキャンセルしました。"),
        ("temporarily_unavailable", "マイナポータルが現在利用できません。しばらくしてからお試しください。"),
        ("server_error", "情報を取得できませんでした。"),
        ("invalid_request", "情報を取得できませんでした。"),
    ],
)
def test_an_error_redirect_renders_its_message(relay: FakeRelay, error: str, message: str) -> None:
    browser = make_app("bank", relay, generate_partner_keys("demo-bank")).test_client()
    state = started(browser, relay)
    html = back(browser, error=error, state=state)
    assert 'id="error"' in html
    assert message in html
    assert 'id="result"' not in html


def test_a_redirect_of_another_state_or_issuer_or_without_a_session_is_refused(relay: FakeRelay) -> None:
    app = make_app("bank", relay, generate_partner_keys("demo-bank"))
    assert "不正な応答のため中止しました。" in back(app.test_client(), code="c", state="s")
    browser = app.test_client()
    started(browser, relay)
    assert "不正な応答のため中止しました。" in back(browser, code="c", state="forged")
    browser = app.test_client()
    state = started(browser, relay)
    html = browser.get(
        "/callback", query_string={"iss": "http://evil.test", "code": "c", "state": state}
    ).get_data(as_text=True)
    assert "不正な応答のため中止しました。" in html
    assert relay.to("/token") == []


def test_a_delivery_that_never_comes_or_fails(relay: FakeRelay) -> None:
    app = make_app("bank", relay, generate_partner_keys("demo-bank"), pickup_wait_s=0)
    browser = app.test_client()
    state = started(browser, relay)
    relay.script(
        "POST", "/token", answer(200, {"access_token": "at", "token_type": "DPoP", "expires_in": 300})
    )
    relay.script("GET", "/v1/self-info", answer(202, {"status": "pending"}, {"Retry-After": "5"}))
    assert "情報の準備ができませんでした。" in back(browser, code="c", state=state)
    relay.answers[("GET", f"{ISSUER}/v1/self-info")].clear()
    relay.script(
        "GET",
        "/v1/self-info",
        answer(410, {"type": "urn:myna-relay:problem:gone", "check": "delivery.failed"}),
    )
    browser = app.test_client()
    state = started(browser, relay)
    assert "情報を取得できませんでした。" in back(browser, code="c", state=state)


def test_the_webhook_answers_204_when_it_verifies_and_400_otherwise(relay: FakeRelay) -> None:
    browser = make_app("bank", relay, generate_partner_keys("demo-bank")).test_client()
    event = {
        "id": "ev-1",
        "type": "delivery.ready",
        "delivery_id": "d",
        "occurred_at": "2026-11-03T00:00:00Z",
    }
    claims = {"iss": ISSUER, "aud": "demo-bank", "iat": int(time.time()), "jti": "ev-1", "event": event}
    body = jwt.encode(
        {"alg": "ES256", "kid": relay.event_key.kid, "typ": "myna-relay-event+jwt"}, claims, relay.event_key
    )
    headers = {"Content-Type": "application/jwt", "Webhook-Id": "ev-1"}
    assert browser.post("/webhook", data=body, headers=headers).status_code == 204
    assert browser.post("/webhook", data=body, headers=headers).status_code == 204  # a retry
    assert browser.post("/webhook", data=body[:-4] + "AAAA", headers=headers).status_code == 400
    assert browser.post("/webhook", data="nonsense", headers=headers).status_code == 400


def test_the_kit_loads_nothing_of_the_relay() -> None:
    # the AST check is tests/unit/test_layering.py; this one imports the kit and the demo for real
    probe = (
        "import sys, partner_kit, partner_kit.demo; "
        "bad = sorted(m for m in sys.modules if m in ('app', 'chalicelib') or m.startswith('chalicelib.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
