"""Domain errors to HTTP, in one place.

Chalice never hands a view's exception to middleware (it turns it into its own 500 body), so the
mapping is a decorator on every view: ``RelayError`` → RFC 9457 ``application/problem+json`` with a
stable ``type``, a ``detail`` naming the failed check, and the interaction id. Anything unexpected
is logged with its traceback and answered as a bare 500 that reveals nothing.
OAuth endpoints will answer RFC 6749 error JSON through their own mapping.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec

from chalice.app import Response

from chalicelib.domain.errors import ErrorCategory, RelayError
from chalicelib.domain.oauth.errors import OAuthError
from chalicelib.settings import SettingsError
from chalicelib.telemetry import current_interaction_id, logger

PROBLEM_TYPE_PREFIX = "urn:myna-relay:problem:"
PROBLEM_CONTENT_TYPE = "application/problem+json"

STATUS_BY_CATEGORY: Mapping[ErrorCategory, int] = {
    "invalid_input": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "gone": 410,
    "unavailable": 503,
}

P = ParamSpec("P")


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    check: str | None = None,
    errors: tuple[str, ...] = (),
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + code,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if check:
        body["check"] = check
    if errors:
        body["errors"] = list(errors)
    interaction_id = current_interaction_id()
    if interaction_id:
        body["interaction_id"] = interaction_id
    return Response(
        body=json.dumps(body, ensure_ascii=False),
        status_code=status,
        headers={"Content-Type": PROBLEM_CONTENT_TYPE, **(headers or {})},
    )


def problem_from_error(error: RelayError) -> Response:
    status = STATUS_BY_CATEGORY[error.category]
    headers = {"Retry-After": "5"} if status == 503 else None
    return problem(
        status, error.code, error.title, error.detail, check=error.check, errors=error.errors, headers=headers
    )


def problem_responses(view: Callable[P, Any]) -> Callable[P, Any]:
    """Map every error a view raises to a problem response."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        try:
            return view(*args, **kwargs)
        except RelayError as error:
            logger.info("request refused", extra={"error_code": error.code, "check": error.check})
            return problem_from_error(error)
        except SettingsError:
            logger.exception("service misconfigured")
            return problem(503, "misconfigured", "Service misconfigured", "the service is not configured")
        except Exception:  # noqa: BLE001  # logged with traceback, answered as an opaque 500, never hidden
            logger.exception("unhandled error")
            return problem(500, "internal-error", "Internal error", "an unexpected error occurred")

    return wrapper


def oauth_error(
    status: int, error: str, description: str, headers: Mapping[str, str] | None = None
) -> Response:
    """RFC 6749 section 5.2 error JSON."""
    return Response(
        body=json.dumps({"error": error, "error_description": description}),
        status_code=status,
        headers={"Content-Type": "application/json", "Cache-Control": "no-store", **(headers or {})},
    )


def oauth_responses(view: Callable[P, Any]) -> Callable[P, Any]:
    """Map errors of an OAuth endpoint (PAR, token, revocation) to RFC 6749 error JSON."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        try:
            return view(*args, **kwargs)
        except OAuthError as error:
            logger.info("oauth request refused", extra={"error": error.error, "check": error.check})
            # RFC 9449 section 5 / RFC 6749 section 5.2: the error is in the body. A WWW-Authenticate
            # challenge belongs to resource servers (RFC 9449 section 7.1); on a 400 from /token
            # openid-client reads it as a challenge instead of the token error it is.
            return oauth_error(error.status, error.error, error.description)
        except RelayError as error:
            logger.warning("oauth request failed", extra={"error_code": error.code, "check": error.check})
            if error.category == "unavailable":
                return oauth_error(503, "temporarily_unavailable", error.detail, {"Retry-After": "5"})
            return oauth_error(STATUS_BY_CATEGORY[error.category], "invalid_request", error.detail)
        except SettingsError:
            logger.exception("service misconfigured")
            return oauth_error(503, "temporarily_unavailable", "the service is not configured")
        except Exception:  # noqa: BLE001  # logged with traceback, answered opaquely, never hidden
            logger.exception("unhandled error")
            return oauth_error(500, "server_error", "an unexpected error occurred")

    return wrapper
