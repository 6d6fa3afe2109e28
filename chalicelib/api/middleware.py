"""HTTP middleware: Powertools context, the FAPI interaction id, security headers, access log.

The interaction id comes from ``x-fapi-interaction-id`` when the partner sends a valid UUID
(FAPI 2.0 / FAPI 1 Baseline 6.2.1), otherwise it is generated; it is on every log line and echoed
on every response. A malformed one is refused, never reflected (header injection).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from chalice.app import Chalice, ConvertToMiddleware, Request, Response

from chalicelib.api.errors import problem
from chalicelib.telemetry import bind_interaction_id, logger, unbind_interaction_id

INTERACTION_HEADER = "x-fapi-interaction-id"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

# Defaults for every response; a view may set its own (pages set their CSP, the JWKS is cacheable).
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
}


def interaction_id_middleware(request: Request, get_response: Callable[[Request], Response]) -> Response:
    supplied = request.headers.get(INTERACTION_HEADER)
    valid = supplied is not None and _UUID.fullmatch(supplied) is not None
    interaction_id = supplied.lower() if valid and supplied else str(uuid.uuid4())
    bind_interaction_id(interaction_id)
    started = time.perf_counter()
    try:
        if supplied is not None and not valid:
            response = problem(
                400,
                "invalid-interaction-id",
                "Invalid interaction id",
                f"{INTERACTION_HEADER} must be a UUID (RFC 4122)",
                check=INTERACTION_HEADER,
            )
        else:
            response = get_response(request)
        for name, value in SECURITY_HEADERS.items():
            if name not in response.headers:
                response.headers[name] = value
        response.headers[INTERACTION_HEADER] = interaction_id
        logger.info(
            "request",
            extra={
                "method": request.method,
                # The route template, never the concrete path or query: those can carry codes.
                "route": request.context.get("resourcePath"),
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return response
    finally:
        unbind_interaction_id()


def register_middleware(app: Chalice) -> None:
    """Outermost first: Powertools' Lambda context (cold start, request id), then ours."""
    inject_context: Any = logger.inject_lambda_context(clear_state=True)
    app.register_middleware(ConvertToMiddleware(inject_context), "http")
    app.register_middleware(interaction_id_middleware, "http")
