"""HTTP middleware: Powertools context, the FAPI interaction id, security headers, access log.

The interaction id comes from ``x-fapi-interaction-id`` when the partner sends a valid UUID
(FAPI 2.0 / FAPI 1 Baseline 6.2.1), otherwise it is generated; it is on every log line and echoed
on every response. A malformed one is refused, never reflected (header injection).

Every answer is the service's own: Chalice's own error bodies (``{"Code", "Message"}``: a method
the route does not have, a media type it does not take) become RFC 9457 problems, and
``answer_unmatched`` gives the local server (``scripts/chalice_local.py``) the 404 problem for a
path no route has, as API Gateway's gateway responses do in AWS (``infra/template.py``).
A route that needs a credential (``require_credential``) answers its absence with 401 and its
challenge before anything else is checked, the interaction id included.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chalice.app import Chalice, ConvertToMiddleware, Request, Response

from chalicelib.api.errors import problem
from chalicelib.telemetry import bind_interaction_id, logger, unbind_interaction_id

INTERACTION_HEADER = "x-fapi-interaction-id"
INTERACTION_ID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID = re.compile(INTERACTION_ID_PATTERN)

# Defaults for every response; a view may set its own (pages set their CSP, the JWKS is cacheable).
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
}


@dataclass(frozen=True)
class CredentialRequirement:
    """What a protected route answers, before any other check, when no Authorization is sent."""

    challenge: str  # the WWW-Authenticate value (RFC 6750 section 3, RFC 9449 section 7.1)
    description: str  # the error_description, naming the failed check


CREDENTIAL_REQUIREMENTS: dict[str, CredentialRequirement] = {}


def require_credential(route: str, challenge: str, description: str) -> None:
    """Declare that ``route`` (a resource path) needs ``Authorization``: without one it is a 401."""
    CREDENTIAL_REQUIREMENTS[route] = CredentialRequirement(challenge, description)


def _missing_credential(route: str | None, authorization: str | None) -> Response | None:
    requirement = CREDENTIAL_REQUIREMENTS.get(route or "")
    if requirement is None or authorization:
        return None
    return Response(
        body=json.dumps({"error": "invalid_token", "error_description": requirement.description}),
        status_code=401,
        headers={"Content-Type": "application/json", "WWW-Authenticate": requirement.challenge},
    )


# Chalice's own error bodies, answered before or around a view: as problems, with their headers.
CHALICE_ERRORS: Mapping[str, tuple[str, str, str]] = {
    "MethodNotAllowedError": ("method-not-allowed", "Method not allowed", "method"),
    "UnsupportedMediaType": ("unsupported-media-type", "Unsupported media type", "content-type"),
    "BadRequest": ("invalid-request", "Invalid request", "accept"),
    "InternalServerError": ("internal-error", "Internal error", ""),
}


def _as_problem(response: Response) -> Response:
    body = response.body
    if not isinstance(body, dict) or set(body) != {"Code", "Message"} or body["Code"] not in CHALICE_ERRORS:
        return response
    code, title, check = CHALICE_ERRORS[body["Code"]]
    detail = "an unexpected error occurred" if code == "internal-error" else str(body["Message"])
    kept = {name: str(value) for name, value in response.headers.items() if name.lower() == "allow"}
    return problem(response.status_code, code, title, detail, check=check or None, headers=kept)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def answer(
    headers: Mapping[str, str],
    method: str,
    route: str | None,
    produce: Callable[[], Response],
    *,
    gateway_request_id: str | None = None,
) -> Response:
    """The service's answer to one request: credential first, then the interaction id, then
    ``produce()``; security headers, the interaction id and an access log line on every answer.

    Without a partner's own interaction id, the request's is API Gateway's request id (a UUID):
    the gateway's access log, which can read no response header, then names it as ``requestId``."""
    supplied = _header(headers, INTERACTION_HEADER)
    valid = supplied is not None and _UUID.fullmatch(supplied) is not None
    if valid and supplied:
        interaction_id = supplied.lower()
    elif gateway_request_id and _UUID.fullmatch(gateway_request_id):
        interaction_id = gateway_request_id.lower()
    else:
        interaction_id = str(uuid.uuid4())
    bind_interaction_id(interaction_id)
    started = time.perf_counter()
    try:
        response = _missing_credential(route, _header(headers, "authorization"))
        if response is None and supplied is not None and not valid:
            response = problem(
                400,
                "invalid-interaction-id",
                "Invalid interaction id",
                f"{INTERACTION_HEADER} must be a UUID (RFC 4122)",
                check=INTERACTION_HEADER,
            )
        if response is None:
            response = _as_problem(produce())
        for name, value in SECURITY_HEADERS.items():
            if name not in response.headers:
                response.headers[name] = value
        response.headers[INTERACTION_HEADER] = interaction_id
        logger.info(
            "request",
            extra={
                "method": method,
                # The route template, never the concrete path or query: those can carry codes.
                "route": route,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return response
    finally:
        unbind_interaction_id()


def interaction_id_middleware(request: Request, get_response: Callable[[Request], Response]) -> Response:
    return answer(
        request.headers,
        request.method,
        request.context.get("resourcePath"),
        lambda: get_response(request),
        gateway_request_id=request.context.get("requestId"),
    )


def answer_unmatched(headers: Mapping[str, str], method: str) -> Response:
    """A path no route has: 404 problem, as every other answer of the service (never a gateway's)."""
    return answer(
        headers,
        method,
        None,
        lambda: problem(404, "not-found", "Not found", "no such resource", check="path"),
    )


def register_middleware(app: Chalice) -> None:
    """Outermost first: Powertools' Lambda context (cold start, request id), then ours."""
    inject_context: Any = logger.inject_lambda_context(clear_state=True)
    app.register_middleware(ConvertToMiddleware(inject_context), "http")
    app.register_middleware(interaction_id_middleware, "http")
