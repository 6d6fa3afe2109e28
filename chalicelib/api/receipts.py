"""The resident's receipt: the flow's records (やりとり履歴 style), a signed copy with inclusion
proofs, and revocation of a delivery not yet picked up. Reached only through the capability link
shown on the interstitial; anything else shows nothing."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from chalice.app import Blueprint, Response

from chalicelib.api.consent import page_responses, see_other
from chalicelib.api.forms import cookie, form_fields
from chalicelib.container import get_container
from chalicelib.domain.errors import CsrfFailure
from chalicelib.telemetry import logger

if TYPE_CHECKING:
    from chalicelib.api.pages import Lang

# The domain's services (chalicelib.domain.receipts, .authorization) are imported by the views
# that use them: at the first such request, not at cold start.

bp = Blueprint(__name__)
CSRF_COOKIE = "relay_receipt_csrf"
__all__ = ["bp"]


def _lang(explicit: str | None = None) -> Lang:
    request = bp.current_request
    params: dict[str, str] = dict(request.query_params or {})
    from chalicelib.api.pages import choose_language  # the pages load with the first page, not at cold start

    return choose_language(request, explicit or params.get("lang"))


def _receipt_page(
    interaction_id: str, expires: str, token: str, lang: Lang, notice: str | None = None
) -> Response:
    from chalicelib.api.pages import render
    from chalicelib.page_rendering import receipt_row

    view = get_container().receipts.view(interaction_id, expires=expires, token=token)
    csrf_token = secrets.token_urlsafe(32)
    query = urlencode({"e": expires, "t": token})
    secure = get_container().authorization_config.issuer.startswith("https://")
    csrf = f"{CSRF_COOKIE}={csrf_token}; Path=/receipts; HttpOnly; SameSite=Strict" + (
        "; Secure" if secure else ""
    )
    return render(
        "receipt.html",
        lang,
        switch_query={"e": expires, "t": token},
        extra_headers={"Set-Cookie": csrf},
        notice=notice,
        receipt_number=interaction_id,
        rows=[receipt_row(record, lang) for record in view.records],
        revocable=view.revocable,
        signed_url=f"/receipts/{interaction_id}/signed?{query}",
        revoke_url=f"/receipts/{interaction_id}/revoke",
        expires=expires,
        token=token,
        csrf_token=csrf_token,
    )


def _not_found(lang: Lang) -> Response:
    from chalicelib.api.pages import error_page

    return error_page("invalid", lang, 404, None)


@bp.route("/receipts/{interaction_id}", methods=["GET"])
@page_responses
def receipt(interaction_id: str) -> Response:
    from chalicelib.api.pages import TEXT
    from chalicelib.domain.receipts import ReceiptNotFound

    params: dict[str, str] = dict(bp.current_request.query_params or {})
    lang = _lang()
    try:
        notice = TEXT[lang]["revoked_notice"] if params.get("revoked") == "1" else None
        return _receipt_page(interaction_id, params.get("e", ""), params.get("t", ""), lang, notice)
    except ReceiptNotFound:
        return _not_found(lang)


@bp.route("/receipts/{interaction_id}/signed", methods=["GET"])
@page_responses
def signed_receipt(interaction_id: str) -> Response:
    from chalicelib.domain.receipts import ReceiptNotFound

    params: dict[str, str] = dict(bp.current_request.query_params or {})
    try:
        jws = get_container().receipts.signed(
            interaction_id, expires=params.get("e", ""), token=params.get("t", "")
        )
    except ReceiptNotFound:
        return _not_found(_lang())
    return Response(
        body=jws,
        status_code=200,
        headers={
            "Content-Type": "application/jose",
            "Content-Disposition": f'attachment; filename="myna-relay-receipt-{interaction_id[:12]}.jws"',
            "Cache-Control": "no-store",
        },
    )


@bp.route("/receipts/{interaction_id}/revoke", methods=["POST"], content_types=["*/*"])
@page_responses
def revoke(interaction_id: str) -> Response:
    from chalicelib.api.pages import error_page
    from chalicelib.domain.authorization import RedirectTo
    from chalicelib.domain.receipts import ReceiptNotFound, RevocationRefused

    request = bp.current_request
    form = form_fields(request)

    def one(name: str) -> str:
        values: list[Any] = form.get(name, [])
        return str(values[0]) if len(values) == 1 else ""

    lang = _lang(one("lang") or None)
    expires, token, csrf = one("e"), one("t"), one("csrf_token")
    presented = cookie(request, CSRF_COOKIE)
    # As bytes: compare_digest refuses str with non-ASCII characters (TypeError, a 500).
    if not csrf or not presented or not secrets.compare_digest(csrf.encode(), presented.encode()):
        raise CsrfFailure("the form's CSRF token does not match; reload the page", check="csrf_token")
    try:
        get_container().receipts.revoke(interaction_id, expires=expires, token=token)
    except ReceiptNotFound:
        return _not_found(lang)
    except RevocationRefused as error:
        logger.info("revocation refused", extra={"check": error.check})
        back = f"/receipts/{interaction_id}?{urlencode({'e': expires, 't': token, 'lang': lang})}"
        return error_page("revoke", lang, 409, error.check, back_url=back)
    query = urlencode({"e": expires, "t": token, "revoked": "1", "lang": lang})
    return see_other(RedirectTo(f"/receipts/{interaction_id}?{query}"))
