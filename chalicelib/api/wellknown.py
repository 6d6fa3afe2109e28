"""Discovery documents. ``/.well-known/jwks.json``: the public halves of our KMS signing keys
(current first, then those kept published after a rotation), fetched once per container."""

from __future__ import annotations

import json

from chalice.app import Blueprint, Response

from chalicelib.api.errors import problem_responses
from chalicelib.container import get_container

bp = Blueprint(__name__)

JWKS_CONTENT_TYPE = "application/jwk-set+json"  # RFC 7517 section 8.5


@bp.route("/.well-known/jwks.json", methods=["GET"])
@problem_responses
def jwks() -> Response:
    return Response(
        body=json.dumps(get_container().jwks()),
        status_code=200,
        headers={"Content-Type": JWKS_CONTENT_TYPE, "Cache-Control": "public, max-age=300"},
    )
