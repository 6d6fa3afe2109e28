"""``GET /health``: liveness. Cheap and dependency-free (no AWS call), so it answers even when
DynamoDB or KMS is degraded; those failures surface as 503 problems on the routes that need them."""

from __future__ import annotations

from typing import Any

from chalice.app import Blueprint

from chalicelib.api.errors import problem_responses
from chalicelib.container import get_container

bp = Blueprint(__name__)


@bp.route("/health", methods=["GET"])
@problem_responses
def health() -> dict[str, Any]:
    return {"status": "ok", "service": "myna-relay", "stage": get_container().settings.stage}
