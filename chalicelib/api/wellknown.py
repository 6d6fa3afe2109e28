"""Discovery documents. ``/.well-known/jwks.json``: the public halves of our KMS signing keys
(current first, then those kept published after a rotation), fetched once per container.

``/.well-known/openid-configuration`` is the first URL many client libraries try; the relay is an
OAuth 2.0 authorization server, not an OpenID provider, so it answers a 404 problem pointing to
its RFC 8414 metadata (``chalicelib.api.oauth``) rather than leaving the client with a bare 404."""

from __future__ import annotations

import json

from chalice.app import Blueprint, Response

from chalicelib.api.errors import problem, problem_responses
from chalicelib.container import get_container

bp = Blueprint(__name__)

JWKS_CONTENT_TYPE = "application/jwk-set+json"  # RFC 7517 section 8.5
OPENID_CONFIGURATION_PATH = "/.well-known/openid-configuration"
METADATA_PATH = "/.well-known/oauth-authorization-server"


@bp.route("/.well-known/jwks.json", methods=["GET"])
@problem_responses
def jwks() -> Response:
    return Response(
        body=json.dumps(get_container().jwks()),
        status_code=200,
        headers={"Content-Type": JWKS_CONTENT_TYPE, "Cache-Control": "public, max-age=300"},
    )


@bp.route(OPENID_CONFIGURATION_PATH, methods=["GET"])
@problem_responses
def openid_configuration() -> Response:
    return problem(
        404,
        "not-an-openid-provider",
        "Not an OpenID provider",
        f"this is an OAuth 2.0 authorization server: its metadata is at {METADATA_PATH} (RFC 8414)",
        check="path",
    )
