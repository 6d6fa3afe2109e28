"""Partner reconciliation: ``GET /v1/audit`` (a partner's own audit records), and the log's signed
tree heads with consistency proofs (``GET /v1/audit/checkpoints/{seq|latest}[/consistency]``).

Thin by design: the domain (``chalicelib.domain.partner_audit``) authenticates the bearer client
assertion, validates the query and reads the page. Here, token errors become RFC 6750 section 3
answers (401, ``WWW-Authenticate: Bearer error="invalid_token"``, JSON ``error`` /
``error_description``); parameter errors become RFC 9457 problems through ``problem_responses``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chalice.app import Blueprint, Response

from chalicelib.api.errors import problem_responses
from chalicelib.api.forms import query_fields, single_header
from chalicelib.api.middleware import require_credential
from chalicelib.container import get_container
from chalicelib.domain.oauth.errors import InvalidToken
from chalicelib.telemetry import logger

if TYPE_CHECKING:  # imported by _service(): at the first audit request, not at cold start
    from chalicelib.domain.partner_audit import PartnerAuditService

bp = Blueprint(__name__)

AUDIT_PATH = "/v1/audit"
CHECKPOINT_PATH = "/v1/audit/checkpoints/{checkpoint}"
CONSISTENCY_PATH = "/v1/audit/checkpoints/{checkpoint}/consistency"
# RFC 6750 section 3: a request without a credential is a 401 with the challenge, whatever else is wrong.
for _path in (AUDIT_PATH, CHECKPOINT_PATH, CONSISTENCY_PATH):
    require_credential(
        _path,
        'Bearer error="invalid_token"',
        "authorization: a client assertion is required (Authorization: Bearer <assertion>)",
    )


def _service() -> PartnerAuditService:
    from chalicelib.domain.partner_audit import PartnerAuditService

    container = get_container()
    return PartnerAuditService(
        partners=container.partners,
        log=container.audit_log,
        replay=container.state_store,
        clock=container.clock,
        issuer=container.authorization_config.issuer,
        checkpoints=container.checkpoints,
    )


def _answer(read: Callable[[], dict[str, Any]]) -> Response:
    """200 with ``read()``'s JSON; token errors as RFC 6750 section 3 answers."""
    try:
        body = read()
    except InvalidToken as error:
        logger.info("audit request refused", extra={"error": error.error, "check": error.check})
        return Response(
            body=json.dumps({"error": error.error, "error_description": error.description}),
            status_code=401,
            headers={
                "Content-Type": "application/json",
                "Cache-Control": "no-store",
                "WWW-Authenticate": f'Bearer error="{error.error}"',
            },
        )
    return Response(
        body=json.dumps(body, ensure_ascii=False),
        status_code=200,
        headers={"Content-Type": "application/json", "Cache-Control": "no-store"},
    )


def _authorization() -> str | None:
    return single_header(bp.current_request, "authorization", error=InvalidToken)


@bp.route(AUDIT_PATH, methods=["GET"])
@problem_responses
def partner_audit() -> Response:
    request = bp.current_request
    return _answer(
        lambda: _service().page(authorization=_authorization(), params=query_fields(request)).as_json()
    )


@bp.route(CHECKPOINT_PATH, methods=["GET"])
@problem_responses
def partner_checkpoint(checkpoint: str) -> Response:
    request = bp.current_request

    def read() -> dict[str, Any]:
        from chalicelib.api.schemas import SignedTreeHead

        head = _service().checkpoint(
            authorization=_authorization(), checkpoint=checkpoint, params=query_fields(request)
        )
        return SignedTreeHead.model_validate(head.as_json()).model_dump(mode="json")

    return _answer(read)


@bp.route(CONSISTENCY_PATH, methods=["GET"])
@problem_responses
def partner_consistency(checkpoint: str) -> Response:
    request = bp.current_request

    def read() -> dict[str, Any]:
        from chalicelib.api.schemas import ConsistencyAnswer

        proof = _service().consistency(
            authorization=_authorization(), checkpoint=checkpoint, params=query_fields(request)
        )
        return ConsistencyAnswer.model_validate(proof.as_json()).model_dump(mode="json")

    return _answer(read)
