"""The delivery's HTTP side: Mynaportal's completion notice (IF001-05) and the partner's pickup.

The notice carries no authentication, so it is only a hint: we answer the echo the portal expects
and at most make the poll the scheduled run would make, at once (``DeliveryService.notice``); an
unknown processId gets the same answer as a known one, and so does a notice whose poll failed.
Pickup answers 202 while retrieving, the sealed payload once (200 application/jose), then 410.
"""

from __future__ import annotations

import json
from typing import Any

from chalice.app import Blueprint, Response
from pydantic import ValidationError

from chalicelib.api.errors import problem, problem_responses
from chalicelib.api.forms import query_fields, single_header
from chalicelib.api.middleware import require_credential
from chalicelib.container import get_container
from chalicelib.domain.oauth.errors import InvalidDpopProof, OAuthError
from chalicelib.domain.oauth.jose_parsing import no_duplicates
from chalicelib.telemetry import logger

bp = Blueprint(__name__)

# chalicelib.api.schemas (every endpoint's pydantic models) and chalicelib.domain.delivery are
# imported by the views that use them, at their first request, not at cold start.


@bp.route("/portal/notice", methods=["POST"], content_types=["*/*"])
@problem_responses
def completion_notice() -> Response:
    """IF001-05. Every media type reaches the view, so that a wrong one is refused with a problem
    document (415) rather than Chalice's own body; none at all is taken as JSON, as Chalice would."""
    from chalicelib.adapters.mynaportal_inferred import NOTICE_ANSWER_TELEGRAM
    from chalicelib.api.schemas import MAX_NOTICE_BYTES, Notice

    content_type = bp.current_request.headers.get("content-type") or "application/json"
    if content_type.split(";")[0].strip().lower() != "application/json":
        return problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            "the notice must be application/json",
            check="content-type",
        )
    body = bp.current_request.raw_body or b""
    if len(body) > MAX_NOTICE_BYTES:
        return problem(413, "notice-too-large", "Notice too large", "the notice exceeds 8 KiB", check="body")
    try:
        notice = Notice.model_validate_json(body)
        # RFC 7493 (I-JSON) section 2.3: no duplicate member names. pydantic keeps the last of
        # them, another reader the first: one notice must not say two things.
        json.loads(body, object_pairs_hook=no_duplicates)
    except (ValidationError, ValueError, RecursionError):
        return problem(
            400, "invalid-notice", "Invalid notice", "the body is not a commonHeader telegram", check="body"
        )
    header = notice.commonHeader
    outcomes = get_container().delivery.notice(header.processId)
    if any(outcome.endswith(".dependency-unavailable") for outcome in outcomes):
        logger.warning(
            "completion notice: a dependency failed; left for the scheduled run", extra={"outcomes": outcomes}
        )
    else:
        logger.info("completion notice", extra={"outcomes": outcomes})
    answer: dict[str, Any] = {
        "commonHeader": {
            "telegramId": header.telegramId,
            "telegramType": NOTICE_ANSWER_TELEGRAM,
            "mode": header.mode,
            "processId": header.processId,
            "errorCode": "",
        }
    }
    return Response(body=json.dumps(answer), status_code=200, headers={"Content-Type": "application/json"})


PICKUP_PATH = "/v1/self-info"
PICKUP_CHALLENGE = 'DPoP algs="ES256 PS256 EdDSA"'
# RFC 6750 section 3: a request without a credential is a 401 with the challenge, whatever else is wrong.
require_credential(
    PICKUP_PATH,
    f'{PICKUP_CHALLENGE}, error="invalid_token"',
    "authorization: a DPoP-bound access token is required (Authorization: DPoP <token>)",
)


@bp.route(PICKUP_PATH, methods=["GET"])
@problem_responses
def self_info() -> Response:
    from chalicelib.domain.delivery import Pending

    request = bp.current_request
    params = query_fields(request)
    unexpected = sorted(set(params) - {"delivery_id"})
    if unexpected:
        return problem(
            400, "invalid-request", "Invalid request", "unexpected parameter", check=unexpected[0][:40]
        )
    delivery_ids = params.get("delivery_id")
    if delivery_ids is not None and (len(delivery_ids) != 1 or not 0 < len(delivery_ids[0]) <= 64):
        return problem(
            400,
            "invalid-request",
            "Invalid request",
            "one delivery_id of 1-64 characters",
            check="delivery_id",
        )
    try:
        outcome = get_container().delivery.pick_up(
            authorization=single_header(request, "authorization"),
            dpop_proof=single_header(request, "dpop", error=InvalidDpopProof),
            delivery_id=delivery_ids[0] if delivery_ids else None,
        )
    except OAuthError as error:
        # RFC 6750 section 3 / RFC 9449 section 7.1: token and proof errors are 401 with a challenge.
        logger.info("pickup refused", extra={"error": error.error, "check": error.check})
        status = 400 if error.error == "invalid_request" else 401
        challenge = f'{PICKUP_CHALLENGE}, error="{error.error}"'
        return Response(
            body=json.dumps({"error": error.error, "error_description": error.description}),
            status_code=status,
            headers={"Content-Type": "application/json", "WWW-Authenticate": challenge},
        )
    if isinstance(outcome, Pending):
        return Response(
            body=json.dumps({"status": "pending"}),
            status_code=202,
            headers={"Content-Type": "application/json", "Retry-After": str(outcome.retry_after_s)},
        )
    return Response(body=outcome.jwe, status_code=200, headers={"Content-Type": "application/jose"})
