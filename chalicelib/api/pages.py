"""Server-rendered pages (consent interstitial, error pages): Japanese by default, English on
``?lang=en`` or an English ``Accept-Language``. Jinja2 with autoescaping: partner names and
purpose titles are operator-supplied text and are always escaped; no inline script or style,
so the Content-Security-Policy can forbid both. The HTML itself comes from
``chalicelib.page_rendering`` (no Chalice there, so relayctl's consent preview renders the same).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from chalice.app import Request, Response

from chalicelib.page_rendering import (
    TEXT,
    ErrorKind,
    Lang,
    error_context,
    format_duration,
    other_language,
    render_html,
    style_hash_source,
)
from chalicelib.telemetry import current_interaction_id

__all__ = [
    "TEXT",
    "Lang",
    "choose_language",
    "error_page",
    "format_duration",
    "render",
    "respond",
]


def choose_language(request: Request, explicit: str | None) -> Lang:
    if explicit == "ja":
        return "ja"
    if explicit == "en":
        return "en"
    accept = (request.headers.get("accept-language") or "").lower()
    first = accept.split(",")[0].strip()
    return "en" if first.startswith("en") else "ja"


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def page_headers(form_targets: tuple[str, ...] = ()) -> dict[str, str]:
    """CSP for our pages: no script at all; no style but the page's own ``<style>`` element, allowed
    by the hash of its exact content (no 'unsafe-inline', no stylesheet to fetch); a form may submit
    to us and be redirected to the portal or the partner (Chromium applies form-action to
    redirects)."""
    form_action = " ".join(["'self'", *sorted({origin(target) for target in form_targets})])
    return {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": (
            f"default-src 'none'; style-src {style_hash_source()}; img-src 'self'; base-uri 'none'; "
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
    html = render_html(
        template,
        lang,
        switch_url=switch_url(lang, switch_query),
        interaction_id=current_interaction_id() or "",
        **context,
    )
    return respond(html, status=status, form_targets=form_targets, extra_headers=extra_headers)


def respond(
    html: str,
    *,
    status: int = 200,
    form_targets: tuple[str, ...] = (),
    extra_headers: dict[str, str] | None = None,
) -> Response:
    return Response(
        body=html, status_code=status, headers={**page_headers(form_targets), **(extra_headers or {})}
    )


def switch_url(lang: Lang, switch_query: dict[str, str] | None) -> str | None:
    """The link to this page in the other language (None: the page has none)."""
    if switch_query is None:
        return None
    return f"?{urlencode({**switch_query, 'lang': other_language(lang)})}"


def error_page(
    kind: ErrorKind, lang: Lang, status: int, check: str | None, *, back_url: str | None = None
) -> Response:
    return render(
        "error.html", lang, status=status, check=check, **error_context(kind, lang, back_url=back_url)
    )
