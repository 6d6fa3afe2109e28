"""OAuth endpoints toward partners: discovery (RFC 8414), PAR (RFC 9126), token (RFC 6749 +
RFC 7636 + RFC 9449), revocation (RFC 7009). Parse, call the domain, serialise; nothing else."""

from __future__ import annotations

import json
from typing import Any

from chalice.app import Blueprint, Response

from chalicelib.api.errors import oauth_responses, problem_responses
from chalicelib.api.forms import form_fields, single_header
from chalicelib.container import get_container
from chalicelib.domain.oauth.errors import InvalidDpopProof
from chalicelib.telemetry import logger, record_metric

bp = Blueprint(__name__)

NO_STORE: dict[str, str | list[str]] = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _json(status: int, body: dict[str, Any], headers: dict[str, str | list[str]] | None = None) -> Response:
    return Response(
        body=json.dumps(body),
        status_code=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


@bp.route("/.well-known/oauth-authorization-server", methods=["GET"])
@problem_responses
def metadata() -> Response:
    # Imported here, not at cold start: they bring the domain's JOSE verification with them.
    from chalicelib.domain.authorization import SCOPES
    from chalicelib.domain.oauth.client_assertion import ALLOWED_ALGORITHMS as CLIENT_ASSERTION_ALGORITHMS
    from chalicelib.domain.oauth.dpop import ALLOWED_ALGORITHMS as DPOP_ALGORITHMS
    from chalicelib.domain.oauth.parameters import UI_LOCALES

    config = get_container().authorization_config
    return _json(
        200,
        {
            "issuer": config.issuer,
            "pushed_authorization_request_endpoint": config.par_endpoint,
            "require_pushed_authorization_requests": True,
            "authorization_endpoint": config.authorization_endpoint,
            "token_endpoint": config.token_endpoint,
            "revocation_endpoint": config.revocation_endpoint,
            "jwks_uri": f"{config.issuer}/.well-known/jwks.json",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            # a dataset the relay has no approved portal service for is refused at /par (invalid_scope)
            "scopes_supported": [scope for scope in SCOPES if scope in config.portal_services],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": list(CLIENT_ASSERTION_ALGORITHMS),
            "revocation_endpoint_auth_methods_supported": ["private_key_jwt"],
            "revocation_endpoint_auth_signing_alg_values_supported": list(CLIENT_ASSERTION_ALGORITHMS),
            "code_challenge_methods_supported": ["S256"],
            "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),
            "authorization_response_iss_parameter_supported": True,
            # No request objects (JAR, RFC 9101), by value or by reference: `request` at /par is
            # refused (request_not_supported), and /authorize takes only request_uri values our
            # PAR endpoint issued, which RFC 9126 section 5 says are usable "regardless of"
            # request_uri_parameter_supported (it speaks of JAR's client-hosted request objects;
            # OIDC Discovery's default for it is true, so it is sent, not omitted).
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "ui_locales_supported": list(UI_LOCALES),
        },
        {"Cache-Control": "public, max-age=300"},
    )


def _read_form(endpoint: str, accepted: frozenset[str]) -> dict[str, list[str]]:
    """The form body; the names (never the values) of the parameters the endpoint ignores are
    logged (RFC 6749 section 3.1: unrecognised parameters are ignored, not refused)."""
    from chalicelib.domain.oauth.parameters import ignored_parameters

    form = form_fields(bp.current_request)
    ignored = ignored_parameters(form, accepted)
    if ignored:
        logger.info(
            "unrecognised parameters ignored", extra={"endpoint": endpoint, "ignored_parameters": ignored}
        )
    return form


@bp.route("/par", methods=["POST"], content_types=["*/*"])
@oauth_responses
def pushed_authorization_request() -> Response:
    from chalicelib.domain.authorization import PAR_PARAMETERS, REFUSED_AT_PAR

    # RFC 9449 section 10.1: a DPoP proof at PAR binds the code to its key (exactly one proof, 4.3)
    proof = single_header(bp.current_request, "dpop", error=InvalidDpopProof)
    pushed = get_container().authorization.push(
        _read_form("/par", PAR_PARAMETERS | set(REFUSED_AT_PAR)), dpop_proof=proof
    )
    record_metric("flows_started", 1)
    # RFC 9126 section 2.2: 201 Created
    return _json(201, {"request_uri": pushed.request_uri, "expires_in": pushed.expires_in}, NO_STORE)


@bp.route("/token", methods=["POST"], content_types=["*/*"])
@oauth_responses
def token() -> Response:
    from chalicelib.domain.authorization import TOKEN_PARAMETERS

    proof = single_header(bp.current_request, "dpop", error=InvalidDpopProof)  # RFC 9449 4.3: one proof
    issued = get_container().authorization.redeem(_read_form("/token", TOKEN_PARAMETERS), dpop_proof=proof)
    return _json(
        200,
        {
            "access_token": issued.access_token,
            "token_type": "DPoP",
            "expires_in": issued.expires_in,
            "scope": issued.scope,
            "delivery_id": issued.delivery_id,
        },
        NO_STORE,
    )


@bp.route("/revoke", methods=["POST"], content_types=["*/*"])
@oauth_responses
def revoke() -> Response:
    from chalicelib.domain.authorization import REVOKE_PARAMETERS

    get_container().authorization.revoke(_read_form("/revoke", REVOKE_PARAMETERS))
    return Response(body="", status_code=200, headers=NO_STORE)
