"""Structured JSON logging (Powertools Logger) and the interaction id of the current request.

Every log line carries the interaction id. Nothing logged here or anywhere else may contain
personal data, tokens, codes or key material: log identifiers, outcomes and named checks only.
"""

from __future__ import annotations

from contextvars import ContextVar

from aws_lambda_powertools import Logger

SERVICE_NAME = "myna-relay"

logger = Logger(service=SERVICE_NAME)

_interaction_id: ContextVar[str | None] = ContextVar("interaction_id", default=None)


def current_interaction_id() -> str | None:
    return _interaction_id.get()


def bind_interaction_id(value: str) -> None:
    """Bind the id to this request's context and to every following log line."""
    _interaction_id.set(value)
    logger.append_keys(interaction_id=value)


def unbind_interaction_id() -> None:
    _interaction_id.set(None)
    logger.remove_keys(["interaction_id"])
