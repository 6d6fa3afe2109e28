"""Structured JSON logging (Powertools Logger) and the interaction id of the current request.

Every log line carries the interaction id. Nothing logged here or anywhere else may contain
personal data, tokens, codes or key material: log identifiers, outcomes and named checks only.
"""

from __future__ import annotations

from contextvars import ContextVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric

SERVICE_NAME = "myna-relay"

logger = Logger(service=SERVICE_NAME)
METRICS_NAMESPACE = "MynaRelay"

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


def record_metric(name: str, value: float, *, unit: str = "Count", **dimensions: str) -> None:
    """One CloudWatch EMF metric line (Powertools), written now. Every metric carries the service
    and the stage (``RELAY_STAGE``), so two stages in one account never feed each other's alarms;
    further dimensions are low-cardinality names (a failure reason), never identifiers or data.
    One dimension set per metric: CloudWatch bills each distinct combination as a metric."""
    from chalicelib.settings import get_settings

    stage = get_settings().stage
    with single_metric(name=name, unit=MetricUnit(unit), value=value, namespace=METRICS_NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE_NAME)
        metric.add_dimension(name="stage", value=stage)
        for key, dimension in dimensions.items():
            metric.add_dimension(name=key, value=dimension)
