"""The resident's pages as HTML: their labels in both languages, the Jinja environment, and what
the consent interstitial and the receipt say. No HTTP here (``chalicelib/api/pages.py`` wraps these
in responses) and no Chalice, so that the operator's consent preview (``relayctl partners
preview``) renders, from the same templates and code, exactly the page a resident will see.

Labels are read by key only: ``Labels`` has no attributes of its own (``t.items`` in a template is
the label, never ``dict.items``), a missing key raises, and the environment's ``StrictUndefined``
turns anything a template names but is not given into an error instead of an empty string.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from chalicelib.domain.audit import AuditEvent, AuditRecord, outcome_key
from chalicelib.domain.datasets import DATASETS, DERIVED_CLAIMS
from chalicelib.domain.partners import Partner, Purpose

if TYPE_CHECKING:
    from jinja2 import Environment

Lang = Literal["ja", "en"]
LANGS: tuple[Lang, ...] = ("ja", "en")
TEMPLATES = Path(__file__).resolve().parent / "api" / "templates"
STYLESHEET = Path(__file__).resolve().parent / "api" / "static" / "relay.css"
JST = timezone(timedelta(hours=9), "JST")
MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Labels:
    """One language's labels, read by key: ``labels["items"]``; a missing key is a ``KeyError``."""

    __slots__ = ("_text",)

    def __init__(self, text: Mapping[str, str]) -> None:
        self._text = dict(text)

    def __getitem__(self, key: str) -> str:
        return self._text[key]

    def __contains__(self, key: object) -> bool:
        return key in self._text

    def __repr__(self) -> str:
        return f"Labels({len(self._text)} labels)"


def label_keys(labels: Labels) -> frozenset[str]:
    return frozenset(labels._text)  # not an attribute templates could reach by name


_TEXT: dict[Lang, dict[str, str]] = {
    "ja": {
        "title": "情報提供の確認",
        "heading": "マイナポータルからの情報提供の確認",
        "lead": "{partner}が、マイナポータルを通じてあなたの情報を受け取ることを求めています。内容を確認してください。",
        "recipient": "受け取る事業者",
        "purpose": "利用目的",
        "source": "取得する情報（マイナポータル）",
        "items": "提供される項目",
        "kept": "保存期間",
        "kept_value": "受け取りまで最長{life}。受け取り後は myna-relay に残りません。",
        "one_time": "この情報は暗号化され、{partner}に一度だけ渡されます。受け取られなかった場合は{life}後に消去されます。",
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
        "col_withheld": "不開示",
        "withheld_yes": "該当",
        "withheld_no": "なし",
        "receipt_signed": "署名付きの記録（JSON、検証用）をダウンロード",
        "revoke_explain": "まだ受け取られていないため、提供を取り消せます。取り消すと情報は削除され、事業者は受け取れなくなります。",
        "revoke_button": "提供を取り消す",
        "not_revocable": "この提供は取り消せません（受け取り済み、期限切れ、または終了しています）。",
        "revoked_notice": "提供を取り消しました。",
        "error_revoke": "この提供は取り消せません。すでに受け取られたか、期限が切れています。",
        "error_heading_revoke": "取り消しできませんでした",
        "error_next_revoke": "やりとりの記録は受付ページで確認できます。",
        "error_back_receipt": "受付ページに戻る",
        "error_next_csrf": "解決しない場合は、ご利用中のサービスに戻って、最初からやり直してください。",
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
        "time": "{year}年{month}月{day}日 {hh:02d}:{mm:02d}",
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
        "col_withheld": "Withheld from disclosure",
        "withheld_yes": "Yes",
        "withheld_no": "No",
        "receipt_signed": "Download the signed record (JSON, for verification)",
        "revoke_explain": "It has not been picked up yet, so you can revoke it. The data is then deleted and the recipient cannot receive it.",
        "revoke_button": "Revoke",
        "not_revocable": "This delivery can no longer be revoked (picked up, expired, or ended).",
        "revoked_notice": "The delivery has been revoked.",
        "error_revoke": "This delivery can no longer be revoked: it was already picked up or has expired.",
        "error_heading_revoke": "The delivery could not be revoked",
        "error_next_revoke": "The receipt page shows what happened to it.",
        "error_back_receipt": "Back to the receipt page",
        "error_next_csrf": "If that does not help, go back to the service you were using and start again.",
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
        "time": "{day} {month_name} {year}, {hh:02d}:{mm:02d} JST",
    },
}


TEXT: dict[Lang, Labels] = {lang: Labels(text) for lang, text in _TEXT.items()}

# What each kind of record means to the resident (the receipt's 内容 column).
EVENT_LABELS: dict[AuditEvent, tuple[str, str]] = {
    AuditEvent.REQUEST_PUSHED: ("事業者が提供を求めました", "The recipient asked for the data"),
    AuditEvent.CONSENT_SHOWN: ("確認画面を表示しました", "The confirmation page was shown"),
    AuditEvent.CONTINUED: ("マイナポータルへ進みました", "You continued to Mynaportal"),
    AuditEvent.CANCELLED: ("キャンセルしました", "You cancelled"),
    AuditEvent.PORTAL_AUTHORISED: ("マイナポータルで同意しました", "You agreed at Mynaportal"),
    AuditEvent.PORTAL_FAILED: ("マイナポータルで中断しました", "Stopped at Mynaportal"),
    AuditEvent.RETRIEVAL_STARTED: ("情報の取得を開始しました", "Retrieval started"),
    AuditEvent.RESULT_RECEIVED: ("情報を受け取りました", "The data arrived from Mynaportal"),
    AuditEvent.INDIVIDUAL_NUMBERS_REMOVED: ("個人番号を削除しました", "Individual Numbers were removed"),
    AuditEvent.SEALED: ("暗号化して保管しました", "Encrypted for the recipient"),
    AuditEvent.PICKED_UP: ("事業者に提供しました", "Provided to the recipient"),
    AuditEvent.EXPIRED: ("期限切れで削除しました", "Deleted: not picked up in time"),
    AuditEvent.ABANDONED: ("手続きが完了しませんでした", "Not completed: the request lapsed"),
    AuditEvent.REVOKED: ("取り消しました", "Revoked"),
    AuditEvent.FAILED: ("取得できませんでした", "The retrieval failed"),
}

# What each outcome (chalicelib.domain.audit.OUTCOMES) means to the resident (the 結果 column).
OUTCOME_LABELS: dict[str, tuple[str, str]] = {
    "pushed": ("受付", "Request received"),
    "shown": ("表示", "Shown"),
    "to_portal": ("マイナポータルへ", "Sent to Mynaportal"),
    "resident.cancelled": ("あなたがキャンセル", "Cancelled by you"),
    "authorised": ("同意済み", "Agreed"),
    "started": ("開始", "Started"),
    "received": ("受領", "Data received"),
    "removed": ("削除済み", "Removed"),
    "sealed": ("暗号化済み", "Encrypted"),
    "provided": ("提供済み", "Provided"),
    "expired": ("期限切れ（削除済み）", "Expired (deleted)"),
    "resident.revoked": ("あなたが取り消し", "Revoked by you"),
    "partner.revoked": ("事業者が取り消し", "Revoked by the recipient"),
    "code.replayed": ("安全のため取り消し", "Revoked for safety (a one-time code was reused)"),
    "request_uri.expired": ("確認画面で期限切れ", "Timed out at the confirmation page"),
    "portal_state.expired": ("マイナポータルから戻らず期限切れ", "Timed out: no return from Mynaportal"),
    "portal.cancelled": ("マイナポータルでキャンセル", "Cancelled at Mynaportal"),
    "portal.certificate_expired": ("カードの電子証明書が期限切れ", "Your card's certificate has expired"),
    "portal.card_locked": ("カードがロックされています", "Your card is locked"),
    "portal.other": ("マイナポータルで中断", "Stopped at Mynaportal"),
    "portal.no_code": ("マイナポータルの応答に不備", "Mynaportal's answer was incomplete"),
    "portal.unavailable": ("マイナポータルに接続できません", "Mynaportal was unavailable"),
    "portal.token_refused": ("マイナポータルが受け付けませんでした", "Mynaportal refused the request"),
    "portal.request_rejected": ("マイナポータルが受け付けませんでした", "Mynaportal refused the request"),
    "portal.protocol_error": ("マイナポータルの応答に不備", "Mynaportal's answer could not be used"),
    "portal.error_code.": ("マイナポータルがエラーを返しました", "Mynaportal returned an error"),
    "partner.disabled": ("事業者の利用停止", "The recipient was suspended"),
    "partner.unavailable": ("事業者の登録がありません", "The recipient is no longer registered"),
    "kms.unavailable": ("一時的な障害", "A temporary failure"),
    "dynamodb.unavailable": ("一時的な障害", "A temporary failure"),
    "retrieval.deadline": ("時間内に取得できませんでした", "Not retrieved in time"),
    "retrieval.state_missing": ("取得を続けられませんでした", "The retrieval could not continue"),
    "result.too_large": ("情報が大きすぎます", "The data was too large"),
    "result.": ("受け取った情報を確認できませんでした", "The data received could not be checked"),
}


@lru_cache(maxsize=1)
def environment() -> Environment:
    """Built on first use, once per container (jinja2 is imported then: not at cold start)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        auto_reload=False,
    )


@lru_cache(maxsize=1)
def stylesheet() -> str:
    """The pages' only stylesheet, embedded as it is in each page's ``<style>`` element: no request
    for it, and a page stands alone (the consent preview is a file)."""
    text = STYLESHEET.read_text(encoding="utf-8")
    if "</" in text:  # would end the element early (HTML: "</style" in any case)
        raise ValueError(f"{STYLESHEET.name} must not contain '</'")
    return text


@lru_cache(maxsize=1)
def style_hash_source() -> str:
    """The CSP hash-source allowing exactly that ``<style>`` element's content (CSP Level 3)."""
    digest = hashlib.sha256(stylesheet().encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def other_language(lang: Lang) -> Lang:
    return "en" if lang == "ja" else "ja"


def render_html(
    template: str,
    lang: Lang,
    *,
    switch_url: str | None = None,
    interaction_id: str = "",
    **context: Any,
) -> str:
    labels = TEXT[lang]
    title_key = {"error.html": "error_title", "receipt.html": "receipt_heading"}.get(template, "title")
    return (
        environment()
        .get_template(template)
        .render(
            lang=lang,
            t=labels,
            title=labels[title_key],
            stylesheet=stylesheet(),
            switch_url=switch_url,
            switch_lang=other_language(lang),
            switch_label=labels["switch"],
            interaction_id=interaction_id,
            **context,
        )
    )


ErrorKind = Literal["invalid", "csrf", "unavailable", "revoke"]
ERROR_KINDS: tuple[ErrorKind, ...] = ("invalid", "csrf", "unavailable", "revoke")


def error_context(kind: ErrorKind, lang: Lang, *, back_url: str | None = None) -> dict[str, Any]:
    """What error.html shows for ``kind``: what went wrong, the heading and the next step (the
    generic ones unless the kind has its own), and where to go back to, if anywhere."""
    labels = TEXT[lang]
    keys = label_keys(labels)
    heading = f"error_heading_{kind}" if f"error_heading_{kind}" in keys else "error_heading"
    next_step = f"error_next_{kind}" if f"error_next_{kind}" in keys else "error_next"
    return {
        "message": labels[f"error_{kind}"],
        "heading": labels[heading],
        "next_step": labels[next_step],
        "back_url": back_url,
    }


def format_duration(value: timedelta, lang: Lang) -> str:
    minutes = int(value.total_seconds() // 60)
    if minutes % 60 == 0 and minutes >= 60:
        return TEXT[lang]["hours"].format(n=minutes // 60)
    return TEXT[lang]["minutes"].format(n=minutes)


def resident_time(moment: datetime, lang: Lang) -> str:
    """A record's time as a resident in Japan reads it: JST, to the minute."""
    local = moment.astimezone(JST)
    return TEXT[lang]["time"].format(
        year=local.year,
        month=local.month,
        month_name=MONTHS_EN[local.month - 1],
        day=local.day,
        hh=local.hour,
        mm=local.minute,
    )


def event_label(event: AuditEvent, lang: Lang) -> str:
    ja, en = EVENT_LABELS[event]
    return ja if lang == "ja" else en


def outcome_label(outcome: str, lang: Lang) -> str:
    ja, en = OUTCOME_LABELS[outcome_key(outcome)]
    return ja if lang == "ja" else en


def receipt_row(record: AuditRecord, lang: Lang) -> dict[str, str]:
    dataset = DATASETS[record.dataset]
    return {
        "time": resident_time(record.occurred_at, lang),
        "event": event_label(record.event, lang),
        "partner": record.requester_name or record.requester_id,
        "item": dataset.name_ja if lang == "ja" else dataset.name_en,
        "outcome": outcome_label(record.outcome, lang),
        # 不開示 (番号法 第23条): the flag every provision record carries
        "withheld": TEXT[lang]["withheld_yes" if record.withheld_from_disclosure else "withheld_no"],
    }


def consent_items(purpose: Purpose, lang: Lang) -> list[str]:
    """What the partner receives, as the resident reads it: each field, then each derived answer."""
    dataset = DATASETS[purpose.dataset]
    labels = {field.name: (field.label_ja if lang == "ja" else field.label_en) for field in dataset.fields}
    items = [labels[name] for name in purpose.fields]
    for claim in purpose.derived_claims:
        info = DERIVED_CLAIMS[claim]
        description = info.description_ja if lang == "ja" else info.description_en
        items.append(TEXT[lang]["derived"].format(description=description))
    return items


def render_consent(
    partner: Partner,
    purpose: Purpose,
    lang: Lang,
    *,
    request_uri: str,
    csrf_token: str,
    receipt_url: str,
    decision_url: str,
    switch_url: str | None,
    interaction_id: str = "",
) -> str:
    """The consent interstitial of ``partner``'s ``purpose``: the live page and its preview."""
    dataset = DATASETS[purpose.dataset]
    return render_html(
        "consent.html",
        lang,
        switch_url=switch_url,
        interaction_id=interaction_id,
        partner_name=partner.names.ja if lang == "ja" else partner.names.en,
        purpose_title=purpose.titles.ja if lang == "ja" else purpose.titles.en,
        dataset_name=dataset.name_ja if lang == "ja" else dataset.name_en,
        items=consent_items(purpose, lang),
        data_life=format_duration(purpose.data_life, lang),
        decision_url=decision_url,
        request_uri=request_uri,
        csrf_token=csrf_token,
        receipt_url=receipt_url,
    )
