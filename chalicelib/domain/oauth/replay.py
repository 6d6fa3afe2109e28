"""Single-use ``jti`` values (client assertions, DPoP proofs) and how a step spends them.

A step that ends in a transaction hands its ``ReplayEntry`` values to the store's method for that
step (``create``, ``redeem_code``, ``pick_up``): the store writes each as one more item of the
step's own transaction, conditional on the value being unseen, so the step makes one write
instead of two, and a replay cancels the whole transaction (a refused request writes nothing).
Where no transaction follows (a pickup that is not ready yet, a revocation, the partner's audit
reads) or a refusal must still spend a value the step had accepted, ``spend`` writes them through
the ``ReplayStore`` port, one conditional put each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from chalicelib.domain.errors import RelayError
from chalicelib.domain.oauth.ports import ReplayStore


@dataclass(frozen=True)
class ReplayEntry:
    """One value to remember: ``value`` (already fingerprinted) in ``namespace`` until ``until``,
    as seen at ``at``; ``refusal`` is what the request is answered if the value was seen before."""

    namespace: str
    value: str
    until: datetime
    at: datetime
    refusal: RelayError


def spend(replay: ReplayStore, entries: Iterable[ReplayEntry]) -> None:
    """Remember each entry on its own, in order; the first one already seen raises its refusal."""
    for entry in entries:
        if not replay.remember(entry.namespace, entry.value, until=entry.until, now=entry.at):
            raise entry.refusal
