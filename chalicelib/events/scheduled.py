"""Scheduled work: poll the portal for flows whose notice has not come, expire deliveries past
their data life, and send due webhooks. One handler, every minute; each item is guarded by a
conditional write, so overlapping runs (or a run racing a notice) never double-apply.
Under ``make run`` the launcher invokes it periodically: ``chalice local`` runs no schedules."""

from __future__ import annotations

from typing import Any

from chalice.app import Blueprint, Rate

from chalicelib.container import get_container
from chalicelib.domain.errors import DependencyUnavailable
from chalicelib.telemetry import logger

bp = Blueprint(__name__)


@bp.schedule(Rate(1, unit=Rate.MINUTES), name="process_due")
def process_due(event: Any) -> dict[str, int]:
    try:
        # This hour's and the next hour's webhook event keys exist from the first run of the hour:
        # each key is in the JWKS about an hour before it signs (cached per container: no AWS
        # call on the other runs of the hour).
        get_container().event_signers.current()
    except DependencyUnavailable:
        logger.warning("the event keys could not be prepared; the first event of the hour will")
    outcomes = get_container().delivery.process_due()
    failed = {outcome: n for outcome, n in outcomes.items() if outcome.endswith(".dependency-unavailable")}
    if failed:
        logger.warning("due items left for the next run: a dependency failed", extra={"outcomes": outcomes})
    elif outcomes:
        logger.info("due work done", extra={"outcomes": outcomes})
    return outcomes


@bp.schedule(Rate(10, unit=Rate.MINUTES), name="audit_checkpoint")
def audit_checkpoint(event: Any) -> dict[str, int]:
    """Sign a tree head over the audit records written since the last checkpoint."""
    checkpoint = get_container().checkpoints.checkpoint()
    if checkpoint is None:
        return {"records": 0}
    records = checkpoint.tree_size - checkpoint.first_index
    logger.info(
        "audit checkpoint",
        extra={"seq": checkpoint.seq, "records": records, "tree_size": checkpoint.tree_size},
    )
    return {"seq": checkpoint.seq, "records": records, "tree_size": checkpoint.tree_size}
