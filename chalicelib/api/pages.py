"""Server-rendered pages (consent interstitial, error pages): Japanese by default, English on
``?lang=en`` or an English ``Accept-Language``. Jinja2 with autoescaping: partner names and
purpose titles are operator-supplied text and are always escaped; no inline script or style,
so the Content-Security-Policy can forbid both.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode, urlsplit

from chalice.app import Request, Response

from chalicelib.telemetry import current_interaction_id

if TYPE_CHECKING:
    from jinja2 import Environment

Lang = Literal["ja", "en"]
TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC_PATH = "/static/relay.css"

TEXT: dict[Lang, dict[str, str]] = {
    "ja": {
        "title": "情報提供の確認",
        "heading": "マイナポータルからの情報提供の確認",
        "lead": "{partner} が、マイナポータルを通じてあなたの情報を受け取ることを求めています。内容を確認してください。",
        "recipient": "受け取る事業者",
        "purpose": "利用目的",
        "source": "取得する情報（マイナポータル）",
        "items": "提供される項目",
        "kept": "保存期間",
        "kept_value": "受け取りまで最長 {life}。受け取り後は myna-relay に残りません。",
        "one_time": "この情報は暗号化され、{partner} に一度だけ渡されます。受け取られなかった場合は {life} 後に消去されます。",
        "revoke": "受け取られる前であれば、下の受付ページからいつでも取り消せます。",
        "receipt_link_intro": "この手続きの受付ページです。ブックマークしてください（事業者には送られません）。",
        "receipt_link_text": "受付ページを開く（やりとりの記録・取り消し）",
        "receipt_heading": "受付ページ（やりとりの記録）",
        "receipt_lead": "この手続きで行われたやりとりの記録です。情報の内容は記録されていません。",
        "receipt_number": "受付番号",
        "receipt_caption": "やりとり履歴",
        "col_time": "日時",
        "col_event": "内容",
        "col_partner": "事業者",
        "col_item": "情報",
        "col_outcome": "結果",
        "receipt_signed": "署名付きの記録（JSON、検証用）をダウンロード",
        "revoke_explain": "まだ受け取られていないため、提供を取り消せます。取り消すと情報は削除され、事業者は受け取れなくなります。",
        "revoke_button": "提供を取り消す",
        "not_revocable": "この提供は取り消せません（受け取り済み、期限切れ、または終了しています）。",
        "revoked_notice": "提供を取り消しました。",
        "error_revoke": "この提供は取り消せません。すでに受け取られたか、期限が切れています。",
        "next": "「マイナポータルへ進む」を押すと、マイナポータルでマイナンバーカードによるログインと同意を行います。",
        "continue": "マイナポータルへ進む",
        "cancel": "キャンセル（情報を提供しない）",
        "switch": "English",
        "error_title": "エラー",
        "error_heading": "この画面は表示できません",
        "error_next": "お手数ですが、ご利用中のサービスに戻って、最初からやり直してください。",
        "error_reference": "お問い合わせ番号",
        "error_invalid": "このリンクは使用できません。期限切れ、使用済み、または正しくない要求です。",
        "error_csrf": "フォームを確認できませんでした。ページを再読み込みしてからもう一度お試しください。",
        "error_unavailable": "現在ご利用いただけません。しばらくしてからもう一度お試しください。",
        "derived": "{description}（判定結果のみ。金額は提供されません）",
        "minutes": "{n}分",
        "hours": "{n}時間",
    },
    "en": {
        "title": "Confirm data sharing",
        "heading": "Confirm sharing your Mynaportal data",
        "lead": "{partner} is asking to receive your data through Mynaportal. Please review what will be shared.",
        "recipient": "Recipient",
        "purpose": "Purpose",
        "source": "Data requested from Mynaportal",
        "items": "Items shared",
        "kept": "Kept for",
        "kept_value": "At most {life} until it is picked up; nothing stays with myna-relay after that.",
        "one_time": "The data is encrypted and handed to {partner} once. If it is not picked up, it is erased after {life}.",
        "revoke": "Until it is picked up, you can revoke it at any time from the receipt page below.",
        "receipt_link_intro": "Your receipt page for this request. Bookmark it (it is never sent to the recipient).",
        "receipt_link_text": "Open the receipt page (records, revocation)",
        "receipt_heading": "Receipt (exchange records)",
        "receipt_lead": "The records of this exchange. They never contain your data itself.",
        "receipt_number": "Receipt number",
        "receipt_caption": "Exchange history",
        "col_time": "Time",
        "col_event": "Event",
        "col_partner": "Recipient",
        "col_item": "Data",
        "col_outcome": "Outcome",
        "receipt_signed": "Download the signed record (JSON, for verification)",
        "revoke_explain": "It has not been picked up yet, so you can revoke it. The data is then deleted and the recipient cannot receive it.",
        "revoke_button": "Revoke",
        "not_revocable": "This delivery can no longer be revoked (picked up, expired, or ended).",
        "revoked_notice": "The delivery has been revoked.",
        "error_revoke": "This delivery can no longer be revoked: it was already picked up or has expired.",
        "next": "Continue takes you to Mynaportal, where you sign in with your My Number Card and agree.",
        "continue": "Continue to Mynaportal",
        "cancel": "Cancel (do not share)",
        "switch": "日本語",
        "error_title": "Error",
        "error_heading": "This page cannot be shown",
        "error_next": "Please go back to the service you were using and start again.",
        "error_reference": "Reference",
        "error_invalid": "This link cannot be used: it has expired, was already used, or is not a valid request.",
        "error_csrf": "The form could not be verified. Please reload the page and try again.",
        "error_unavailable": "The service is unavailable at the moment. Please try again later.",
        "derived": "{description} (the result only; no amount is shared)",
        "minutes": "{n} minutes",
        "hours": "{n} hours",
    },
}


@lru_cache(maxsize=1)
def environment() -> Environment:
    """Built on first use, once per container (jinja2 is imported then: not at cold start)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        auto_reload=False,
    )


def choose_language(request: Request, explicit: str | None) -> Lang:
    if explicit == "ja":
        return "ja"
    if explicit == "en":
        return "en"
    accept = (request.headers.get("accept-language") or "").lower()
    first = accept.split(",")[0].strip()
    return "en" if first.startswith("en") else "ja"


def format_duration(value: timedelta, lang: Lang) -> str:
    minutes = int(value.total_seconds() // 60)
    if minutes % 60 == 0 and minutes >= 60:
        return TEXT[lang]["hours"].format(n=minutes // 60)
    return TEXT[lang]["minutes"].format(n=minutes)


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def page_headers(form_targets: tuple[str, ...] = ()) -> dict[str, str]:
    """CSP for our pages: no script at all, styles from us only; a form may submit to us and
    be redirected to the portal or the partner (Chromium applies form-action to redirects)."""
    form_action = " ".join(["'self'", *sorted({origin(target) for target in form_targets})])
    return {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": (
            "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
            f"form-action {form_action}; frame-ancestors 'none'"
        ),
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }


def render(
    template: str,
    lang: Lang,
    *,
    status: int = 200,
    switch_query: dict[str, str] | None = None,
    form_targets: tuple[str, ...] = (),
    extra_headers: dict[str, str] | None = None,
    **context: Any,
) -> Response:
    other: Lang = "en" if lang == "ja" else "ja"
    html = (
        environment()
        .get_template(template)
        .render(
            lang=lang,
            t=TEXT[lang],
            title=TEXT[lang][
                {"error.html": "error_title", "receipt.html": "receipt_heading"}.get(template, "title")
            ],
            static_url=STATIC_PATH,
            switch_url=f"?{urlencode({**switch_query, 'lang': other})}" if switch_query is not None else None,
            switch_lang=other,
            switch_label=TEXT[lang]["switch"],
            interaction_id=current_interaction_id() or "",
            **context,
        )
    )
    return Response(
        body=html, status_code=status, headers={**page_headers(form_targets), **(extra_headers or {})}
    )


def error_page(
    kind: Literal["invalid", "csrf", "unavailable", "revoke"], lang: Lang, status: int, check: str | None
) -> Response:
    return render("error.html", lang, status=status, message=TEXT[lang][f"error_{kind}"], check=check)
