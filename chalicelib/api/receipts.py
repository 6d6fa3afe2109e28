"""The resident's receipt: the flow's records, a signed receipt with its inclusion proof, revocation."""

from __future__ import annotations

from chalice.app import Blueprint

bp = Blueprint(__name__)
