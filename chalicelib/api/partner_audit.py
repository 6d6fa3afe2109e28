"""Partner reconciliation: ``GET /v1/audit`` (a partner's own audit records)."""

from __future__ import annotations

from chalice.app import Blueprint

bp = Blueprint(__name__)
