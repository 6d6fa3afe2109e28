"""The resident's browser: the consent interstitial, its decision, and Mynaportal's callback.

Everything a page shows is escaped; every POST carries a CSRF token bound to the pushed request
(hidden field + SameSite=Strict cookie + fingerprint stored on the flow); POST-originated steps
answer 303. A step that cannot continue shows an error page and never redirects: the redirect
target is only trusted once the flow is known.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec

from chalice.app import Blueprint, Response

from chalicelib.api.forms import cookie, form_fields, query_fields
from chalicelib.container import get_container
from chalicelib.domain.errors import CsrfFailure, PageError, RelayError
from chalicelib.domain.oauth.parameters import parameter_name
from chalicelib.settings import SettingsError
from chalicelib.telemetry import current_interaction_id, logger

if TYPE_CHECKING:  # the domain's services load with the first request that needs them, not at import
    from chalicelib.api.pages import Lang
    from chalicelib.domain.authorization import RedirectTo

bp = Blueprint(__name__)
P = ParamSpec("P")
CSRF_COOKIE = "relay_csrf"
AUTHORIZE_PARAMETERS = frozenset({"client_id", "request_uri", "lang"})
PORTAL_COOKIE = "relay_portal"  # binds the portal's callback to the browser that left for it


def _lang(pushed: Lang | None = None) -> Lang:
    """The page language; never raises (it also chooses the language of error pages). An explicit
    ``lang`` (the page's own switch, the decision form's hidden field) wins over the language the
    partner pushed (``ui_locales``), which wins over Accept-Language."""
    request = bp.current_request
    params: dict[str, str] = dict(request.query_params or {})
    form_lang = None
    if request.method == "POST":
        with contextlib.suppress(RelayError):  # a malformed form still gets its error page
            form_lang = form_fields(request).get("lang", [None])[0]
    explicit = params.get("lang") or form_lang
    from chalicelib.api.pages import choose_language  # the pages (Jinja, labels) load with the first page

    return choose_language(request, explicit if explicit in ("ja", "en") else pushed)


def page_responses(view: Callable[P, Response]) -> Callable[P, Response]:
    """Map errors of a browser step to an error page in the resident's language."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        from chalicelib.api.pages import error_page  # loaded with the first page, not at cold start

        try:
            return view(*args, **kwargs)
        except CsrfFailure as error:
            logger.info("page refused", extra={"error_code": error.code, "check": error.check})
            return error_page("csrf", _lang(), 403, error.check)
        except PageError as error:
            logger.info("page refused", extra={"error_code": error.code, "check": error.check})
            return error_page("invalid", _lang(), 400, error.check)
        except RelayError as error:
            logger.warning("page failed", extra={"error_code": error.code, "check": error.check})
            status = 503 if error.category == "unavailable" else 400
            return error_page("unavailable" if status == 503 else "invalid", _lang(), status, error.check)
        except SettingsError:
            logger.exception("service misconfigured")
            return error_page("unavailable", _lang(), 503, None)
        except Exception:  # noqa: BLE001  # logged with traceback, answered opaquely, never hidden
            logger.exception("unhandled error")
            return error_page("unavailable", _lang(), 500, None)

    return wrapper


def see_other(
    redirect: RedirectTo, *, status: int = 303, headers: dict[str, str | list[str]] | None = None
) -> Response:
    return Response(
        body="",
        status_code=status,
        headers={
            "Location": redirect.url,
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            **(headers or {}),
        },
    )


def _one(params: dict[str, list[str]], name: str) -> str:
    values = params.get(name, [])
    if len(values) != 1:
        raise PageError("missing or repeated parameter", check=name)
    return values[0]


@bp.route("/authorize", methods=["GET"])
@page_responses
def authorize() -> Response:
    from chalicelib.api.pages import respond, switch_url
    from chalicelib.page_rendering import render_consent

    params = query_fields(bp.current_request)
    client_id, request_uri = _one(params, "client_id"), _one(params, "request_uri")
    # PAR is required (RFC 9126 section 4): the pushed request is the whole authorization request,
    # so any other parameter is ignored (its name logged, never its value); none may repeat.
    for name, values in params.items():
        if len(values) != 1:
            raise PageError("repeated parameter", check=parameter_name(name))
    ignored = sorted(parameter_name(name) for name in params if name not in AUTHORIZE_PARAMETERS)
    if ignored:
        logger.info(
            "unrecognised parameters ignored", extra={"endpoint": "/authorize", "ignored_parameters": ignored}
        )
    container = get_container()
    # A reload or a language switch in the same browser presents the token it was given, and
    # keeps it: the page is shown (and recorded) once per flow, not once per load.
    view = container.authorization.consent_view(
        client_id, request_uri, csrf_cookie=cookie(bp.current_request, CSRF_COOKIE)
    )
    lang = _lang(view.flow.ui_locale)
    config = container.authorization_config
    secure = config.issuer.startswith("https://")
    cookie_value = (
        f"{CSRF_COOKIE}={view.csrf_token}; Path=/authorize; HttpOnly; SameSite=Strict; "
        f"Max-Age={int(config.request_uri_lifetime.total_seconds())}" + ("; Secure" if secure else "")
    )
    switch_query = {"client_id": client_id, "request_uri": request_uri}
    html = render_consent(
        view.partner,
        view.purpose,
        lang,
        request_uri=view.request_uri,
        csrf_token=view.csrf_token,
        receipt_url=config.issuer + container.receipts.link(view.flow),
        decision_url="/authorize/decision",
        switch_url=switch_url(lang, switch_query),
        interaction_id=current_interaction_id() or "",
    )
    return respond(
        html,
        form_targets=(config.portal_authorize_url, view.flow.redirect_uri),
        extra_headers={"Set-Cookie": cookie_value},
    )


@bp.route("/authorize/decision", methods=["POST"], content_types=["*/*"])
@page_responses
def decide() -> Response:
    request = bp.current_request
    form = form_fields(request)
    action = _one(form, "action")
    if action not in ("continue", "cancel"):
        raise PageError("unknown action", check="action")
    redirect = get_container().authorization.decide(
        _one(form, "request_uri"),
        csrf_form=form.get("csrf_token", [""])[0],
        csrf_cookie=cookie(request, CSRF_COOKIE),
        proceed=action == "continue",
    )
    expire = f"{CSRF_COOKIE}=; Path=/authorize; HttpOnly; SameSite=Strict; Max-Age=0"
    if redirect.browser_binding is None:
        return see_other(redirect, headers={"Set-Cookie": expire})
    # To the portal: bind its callback to this browser (RFC 9700 section 4.7.1). SameSite=Lax, so
    # that the portal's redirect back (a top-level GET from another site) carries it.
    config = get_container().authorization_config
    binding = (
        f"{PORTAL_COOKIE}={redirect.browser_binding}; Path=/portal/callback; HttpOnly; SameSite=Lax; "
        f"Max-Age={int(config.portal_state_lifetime.total_seconds())}"
        + ("; Secure" if config.issuer.startswith("https://") else "")
    )
    return see_other(redirect, headers={"Set-Cookie": [expire, binding]})


@bp.route("/portal/callback", methods=["GET"])
@page_responses
def portal_callback() -> Response:
    """IF001-02: Mynaportal sends the resident back here with code and state (or an error), in
    the browser that left for the portal (its binding cookie)."""
    request = bp.current_request
    redirect = get_container().authorization.portal_callback(
        query_fields(request), browser_binding=cookie(request, PORTAL_COOKIE)
    )
    expire = f"{PORTAL_COOKIE}=; Path=/portal/callback; HttpOnly; SameSite=Lax; Max-Age=0"
    return see_other(redirect, headers={"Set-Cookie": expire})
