"""The storage port of the flow: every operation is one conditional write or one transaction, so
single use (request_uri, portal state, code) and concurrent steps resolve to exactly one winner.

The flow is one item: the fingerprints of its secrets live in it (``Flow``), and every secret
names its flow (``flow_secret``), so a step reads one item and writes it once, conditional on the
version it read; using a secret is moving the flow past the step that accepts it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from chalicelib.domain.audit import AuditRecord
from chalicelib.domain.flow import Flow
from chalicelib.domain.oauth.replay import ReplayEntry


class FlowStore(Protocol):
    def create(
        self,
        flow: Flow,
        *,
        audits: Sequence[AuditRecord] = (),
        replays: Sequence[ReplayEntry] = (),
    ) -> None:
        """Store a new flow (its request_uri's fingerprint inside) and its audit records together,
        and remember ``replays`` in the same transaction (a replayed one raises its ``refusal``
        and nothing is written)."""
        ...

    def get(self, flow_id: str, *, now: datetime) -> Flow | None:
        """The flow, unless unknown or past its ``expires_at``."""
        ...

    def update(
        self,
        before: Flow,
        after: Flow,
        *,
        audits: Sequence[AuditRecord] = (),
        delete_delivery: bool = False,
        unspent_portal_state: bool = False,
    ) -> None:
        """Write ``after`` if the stored flow is still ``before`` (its version) and, with
        ``unspent_portal_state``, no callback is using its portal state; else ``ConcurrentUpdate``."""
        ...

    def consume_portal_state(
        self, flow_id: str, *, portal_state_hash: str, browser_binding_hash: str, now: datetime
    ) -> Flow | None:
        """Spend the portal state of a flow at the portal (one conditional update of the flow's
        item, its version unchanged) and return the flow; None if the flow is unknown, not at the
        portal, or the state is not its state, used or expired; ``BrowserBindingMismatch``
        (nothing changed) if another browser brings the valid state. Concurrent callbacks with
        one state: exactly one gets the flow."""
        ...

    def start_retrieval(
        self, before: Flow, after: Flow, *, process_id: str, audits: Sequence[AuditRecord] = ()
    ) -> None:
        """Move the flow to retrieving (the partner's code's fingerprint inside) and store the
        portal's processId pointer, with the audit records, in one transaction."""
        ...

    def redeem_code(self, before: Flow, after: Flow, *, replays: Sequence[ReplayEntry] = ()) -> None:
        """Remember ``replays`` and write ``after`` (the code redeemed, the token's fingerprint
        stored) conditional on ``before``'s version, in one transaction. Refused, in this order of
        precedence: the ``refusal`` of the first replayed entry; ``ConcurrentUpdate`` if the flow
        changed since ``before`` was read (another redemption won, or a scheduled run polled or
        sealed it: the caller reads it again and tells them apart). A refused transaction writes
        nothing."""
        ...
