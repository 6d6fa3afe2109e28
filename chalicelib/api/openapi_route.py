"""``GET /openapi.json``: serves the document ``chalicelib.api.openapi`` builds.

The route alone, so that registering it costs nothing at cold start: the document's table, the
pydantic models of every endpoint and pydantic's JSON Schema generator are imported by the first
request for the document (once per container, like the document itself)."""

from __future__ import annotations

from chalice.app import Blueprint, Response

from chalicelib.api.errors import problem_responses
from chalicelib.container import get_container

bp = Blueprint(__name__)

OPENAPI_PATH = "/openapi.json"


@bp.route(OPENAPI_PATH, methods=["GET"])
@problem_responses
def openapi() -> Response:
    from chalicelib.api.openapi import CACHEABLE, JSON, document_json

    body = document_json(get_container().authorization_config.issuer)
    return Response(body=body, status_code=200, headers={"Content-Type": JSON, "Cache-Control": CACHEABLE})
