"""Two demo partners on the kit, one Flask app factory: ``create_demo_app("bank" | "health", ...)``.

A bank importing the resident's income for loan screening (``demo-bank``) and a mother-and-child
health app importing vaccinations (``demo-health``). Server-rendered, escaped HTML, no JavaScript,
Japanese with English below. ``make run`` starts both (``scripts/dev.py``).

Routes: ``GET /`` (the button), ``POST /start`` (PAR, then 303 to the relay), ``GET /callback``
(finish, pick up, open, show), ``POST /webhook`` (verified events, 204), ``GET /style.css``.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import requests
from flask import Flask, Response, make_response, redirect, render_template_string, request, session

from partner_kit.client import PendingAuthorization, RelayClient
from partner_kit.errors import (
    AuthorizationError,
    CallbackMismatch,
    DeliveryGone,
    DeliveryTimeout,
    RelayError,
)
from partner_kit.keys import PartnerKeys

logger = logging.getLogger("partner_kit.demo")

DemoKind = Literal["bank", "health"]
SESSION_KEY = "pending_authorization"
PICKUP_WAIT_S = 60.0


@dataclass(frozen=True)
class DemoProfile:
    title_ja: str
    title_en: str
    button_id: str
    button_ja: str
    button_en: str
    purpose: str
    scope: str


PROFILES: dict[str, DemoProfile] = {
    "bank": DemoProfile(
        title_ja="デモ銀行 住宅ローン事前審査",
        title_en="Demo Bank: mortgage pre-screening",
        button_id="import-income",
        button_ja="マイナポータルから所得情報を取り込む",
        button_en="Import your income from Mynaportal",
        purpose="loan-screening",
        scope="local_tax",
    ),
    "health": DemoProfile(
        title_ja="デモ母子手帳アプリ",
        title_en="Demo mother-and-child health app",
        button_id="import-vaccinations",
        button_ja="マイナポータルから予防接種記録を取り込む",
        button_en="Import vaccination records from Mynaportal",
        purpose="child-vaccination-record",
        scope="vaccination",
    ),
}

# The field vocabulary partners register against (docs/operations.md): Japanese and English labels.
LOCAL_TAX_LABELS: dict[str, tuple[str, str]] = {
    "fiscal_year": ("課税年度", "Fiscal year"),
    "municipality": ("課税市区町村", "Levying municipality"),
    "taxation_status": ("課税区分", "Taxation status"),
    "salary_revenue": ("給与収入額", "Salary revenue"),
    "salary_income": ("給与所得額", "Salary income"),
    "public_pension_revenue": ("公的年金等収入額", "Public pension revenue"),
    "business_income": ("事業所得", "Business income"),
    "total_income": ("合計所得金額", "Total income"),
    "total_income_etc": ("総所得金額等", "Total income etc."),
    "social_insurance_deduction": ("社会保険料控除額", "Social insurance deduction"),
    "spouse_deduction": ("配偶者控除額", "Spouse deduction"),
    "dependant_deduction": ("扶養控除額", "Dependant deduction"),
    "basic_deduction": ("基礎控除額", "Basic deduction"),
    "total_deductions": ("所得控除合計額", "Total deductions"),
    "taxable_base": ("課税標準額", "Taxable base"),
    "dependants": ("扶養親族数", "Number of dependants"),
    "municipal_income_levy": ("市町村民税所得割額", "Municipal income levy"),
    "municipal_per_capita_levy": ("市町村民税均等割額", "Municipal per-capita levy"),
    "prefectural_income_levy": ("道府県民税所得割額", "Prefectural income levy"),
    "prefectural_per_capita_levy": ("道府県民税均等割額", "Prefectural per-capita levy"),
    "annual_tax": ("年税額", "Annual tax"),
}
NOT_YEN = frozenset({"fiscal_year", "municipality", "taxation_status", "dependants"})
TAXATION_STATUS = {
    "taxable": "課税",
    "non_taxable": "非課税",
    "per_capita_only": "均等割のみ課税",
    "undeclared": "未申告",
}
VACCINATION_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("vaccine", "予防接種の種類", "Vaccine"),
    ("dose", "接種回数・期", "Dose"),
    ("date", "接種日", "Date"),
    ("municipality", "実施市区町村", "Municipality"),
)
INCOME_THRESHOLD_LABEL = ("年収400万円以上", "Annual income of ¥4,000,000 or more")  # demo-bank's purpose

MESSAGES: dict[str, tuple[str, str]] = {
    "access_denied": ("お客様が手続きをキャンセルしました。", "You cancelled the request."),
    "temporarily_unavailable": (
        "マイナポータルが現在利用できません。しばらくしてからお試しください。",
        "Mynaportal is not available at the moment. Please try again later.",
    ),
    "failed": ("情報を取得できませんでした。", "We could not obtain your information."),
    "timeout": ("情報の準備ができませんでした。", "Your information was not ready in time."),
    "mismatch": ("不正な応答のため中止しました。", "We stopped because the response was not valid."),
}

STYLE = """
body { font-family: sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; } .en { color: #666; font-size: 0.9em; display: block; }
button { font-size: 1.1rem; padding: 0.6rem 1.2rem; }
table { border-collapse: collapse; margin: 1rem 0; } th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; }
#error { border-left: 4px solid #c00; padding-left: 1rem; } .note { color: #444; font-size: 0.9em; }
"""

PAGE = """<!doctype html>
<html lang="ja">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ profile.title_ja }}</title>
<link rel="stylesheet" href="/style.css">
</head>
<body>
<h1>{{ profile.title_ja }}<span class="en" lang="en">{{ profile.title_en }}</span></h1>
{% if page == "home" %}
<p>マイナンバーカードで本人確認し、マイナポータルの情報を一度だけ受け取ります。<span class="en" lang="en">Confirm with your My Number Card; we receive your Mynaportal records once.</span></p>
<form method="post" action="/start">
<button type="submit" id="{{ profile.button_id }}">{{ profile.button_ja }}</button>
<span class="en" lang="en">{{ profile.button_en }}</span>
</form>
{% elif page == "result" %}
<section id="result">
<h2>取り込んだ情報<span class="en" lang="en">Imported information</span></h2>
{% if kind == "bank" %}
{% for rows in records %}
<table>
{% for label_ja, label_en, value in rows %}
<tr><th>{{ label_ja }}<span class="en" lang="en">{{ label_en }}</span></th><td>{{ value }}</td></tr>
{% endfor %}
</table>
{% else %}
<p>所得情報はありませんでした。<span class="en" lang="en">No income records were released.</span></p>
{% endfor %}
{% for text_ja, text_en in derived %}
<p class="derived">{{ text_ja }}<span class="en" lang="en">{{ text_en }}</span></p>
{% endfor %}
{% else %}
<table>
<tr>{% for _, label_ja, label_en in columns %}<th>{{ label_ja }}<span class="en" lang="en">{{ label_en }}</span></th>{% endfor %}</tr>
{% for row in records %}
<tr>{% for value in row %}<td>{{ value }}</td>{% endfor %}</tr>
{% else %}
<tr><td colspan="{{ columns|length }}">予防接種記録はありませんでした。<span class="en" lang="en">No vaccination records were released.</span></td></tr>
{% endfor %}
</table>
{% endif %}
<p class="note">受付の控え（やりとりの記録と取り消し）のリンクは、myna-relay の確認画面に表示されています。当社には届きません。<span class="en" lang="en">Your receipt link (the record of this exchange, and revocation) is on myna-relay's confirmation page; it is never sent to us.</span></p>
</section>
{% else %}
<section id="error">
<p>{{ message_ja }}<span class="en" lang="en">{{ message_en }}</span></p>
{% if detail %}<p class="note">{{ detail }}</p>{% endif %}
</section>
{% endif %}
<p><a href="/">最初に戻る<span class="en" lang="en">Back to the start</span></a></p>
</body>
</html>
"""

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def create_demo_app(
    kind: DemoKind,
    *,
    issuer: str,
    client_id: str,
    keys: PartnerKeys,
    base_url: str,
    secret_key: str | bytes,
    http: requests.Session | None = None,
    pickup_wait_s: float = PICKUP_WAIT_S,
) -> Flask:
    """The demo ``kind`` partner as a Flask app, acting as ``client_id`` towards ``issuer``.

    ``base_url`` is where the app is served (its redirect URI is ``<base_url>/callback``, which must
    be registered); ``secret_key`` signs the session cookie that holds the pending authorization.
    """
    if kind not in PROFILES:
        raise ValueError(f"unknown demo kind {kind!r}")
    profile = PROFILES[kind]
    client = RelayClient(issuer, client_id, keys, session=http)
    redirect_uri = f"{base_url.rstrip('/')}/callback"
    seen_events: deque[str] = deque(maxlen=1000)

    app = Flask(f"partner_kit.demo.{kind}")
    app.config.update(
        SECRET_KEY=secret_key,
        SESSION_COOKIE_NAME=f"demo-{kind}-session",  # both demos live on 127.0.0.1: cookies ignore ports
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",  # sent on the relay's top-level redirect back
        SESSION_COOKIE_SECURE=base_url.startswith("https://"),
    )
    app.extensions["partner_kit"] = client

    def page(name: str, **context: Any) -> str:
        return render_template_string(PAGE, page=name, profile=profile, kind=kind, **context)

    def error_page(reason: str, detail: str | None = None) -> str:
        message_ja, message_en = MESSAGES[reason]
        return page("error", message_ja=message_ja, message_en=message_en, detail=detail)

    @app.after_request
    def secure(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.get("/style.css")
    def style() -> Response:
        response = make_response(STYLE)
        response.headers["Content-Type"] = "text/css; charset=utf-8"
        response.headers["Cache-Control"] = "public, max-age=300"
        return response

    @app.get("/")
    def home() -> str:
        return page("home")

    @app.post("/start")
    def start() -> Any:
        try:
            pending = client.start(redirect_uri, profile.purpose, profile.scope)
        except RelayError as exc:
            logger.warning("PAR failed: %s", exc)
            return error_page("failed")
        session[SESSION_KEY] = pending.to_dict()
        return redirect(pending.authorize_url, code=303)

    @app.get("/callback")
    def callback() -> str:
        stored = session.pop(SESSION_KEY, None)
        if not isinstance(stored, dict):
            return error_page("mismatch")
        try:
            pending = PendingAuthorization.from_dict(stored)
            delivery = client.finish(pending, request.args.to_dict())
            sealed = client.pick_up(delivery, wait_s=pickup_wait_s)
            claims = client.open(sealed)
        except (CallbackMismatch, ValueError) as exc:
            logger.warning("callback refused: %s", exc)
            return error_page("mismatch")
        except AuthorizationError as exc:
            reason = exc.error if exc.error in ("access_denied", "temporarily_unavailable") else "failed"
            return error_page(str(reason), exc.description if exc.error == "access_denied" else None)
        except DeliveryTimeout:
            return error_page("timeout")
        except DeliveryGone as exc:
            logger.warning("delivery gone: %s", exc.check)
            return error_page("failed")
        except RelayError as exc:
            logger.warning("delivery failed: %s", exc)
            return error_page("failed")
        data = claims["data"]
        records = [record for record in data.get("records", []) if isinstance(record, dict)]
        if kind == "bank":
            return page(
                "result", records=[income_rows(record) for record in records], derived=derived_lines(data)
            )
        return page(
            "result", records=[vaccination_row(record) for record in records], columns=VACCINATION_COLUMNS
        )

    @app.post("/webhook")
    def webhook() -> Response:
        try:
            event = client.verify_webhook(request.get_data(as_text=True))
        except RelayError as exc:
            logger.warning("webhook refused: %s", exc)
            return Response("invalid webhook\n", status=400, mimetype="text/plain")
        if event.get("id") not in seen_events:  # retries carry the same id: act once
            seen_events.append(str(event.get("id")))
            logger.info("webhook %s for delivery %s", event["type"], event.get("delivery_id"))
        return Response(status=204)

    return app


def yen(value: int) -> str:
    """``3680000`` → ``3,680,000円``."""
    return f"{value:,}円"


def income_rows(record: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    for name, value in record.items():
        label_ja, label_en = LOCAL_TAX_LABELS.get(name, (name, name))
        rows.append((label_ja, label_en, income_value(name, value)))
    return rows


def income_value(name: str, value: Any) -> str:
    if value is None:
        return "—"
    if name == "fiscal_year":
        return f"{value}年度"
    if name == "taxation_status":
        return TAXATION_STATUS.get(str(value), str(value))
    if name == "dependants":
        return f"{value}人"
    if name not in NOT_YEN and isinstance(value, int) and not isinstance(value, bool):
        return yen(value)
    return str(value)


def derived_lines(data: dict[str, Any]) -> list[tuple[str, str]]:
    derived = data.get("derived")
    if not isinstance(derived, dict) or "annual_income_at_least" not in derived:
        return []
    answer = derived["annual_income_at_least"] is True
    label_ja, label_en = INCOME_THRESHOLD_LABEL
    return [(f"{label_ja}: {'はい' if answer else 'いいえ'}", f"{label_en}: {'yes' if answer else 'no'}")]


def vaccination_row(record: dict[str, Any]) -> list[str]:
    return ["—" if record.get(name) is None else str(record[name]) for name, _, _ in VACCINATION_COLUMNS]
