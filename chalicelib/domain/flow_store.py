"""The storage port of the flow: every operation is one conditional write or one transaction, so
single use (request_uri, portal state, code) and concurrent steps resolve to exactly one winner."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from chalicelib.domain.audit import AuditRecord
from chalicelib.domain.flow import Flow
from chalicelib.domain.oauth.replay import ReplayEntry


@dataclass(frozen=True)
class AccessTokenRecord:
    """A DPoP-bound access token for one delivery (the token itself is never stored)."""

    token_hash: str
    flow_id: str
    partner_id: str
    jkt: str
    expires_at: datetime


CodeState = Literal["unused", "used", "expired", "unknown"]


class FlowStore(Protocol):
    def create(
        self,
        flow: Flow,
        *,
        request_uri_hash: str,
        request_uri_expires_at: datetime,
        audits: Sequence[AuditRecord] = (),
        replays: Sequence[ReplayEntry] = (),
    ) -> None:
        """Store a new flow, its pushed-request pointer and its audit records together, and
        remember ``replays`` in the same transaction (a replayed one raises its ``refusal`` and
        nothing is written)."""
        ...

    def get(self, flow_id: str, *, now: datetime) -> Flow | None:
        """The flow, unless unknown or past its ``expires_at``."""
        ...

    def flow_for_request_uri(self, request_uri_hash: str, *, now: datetime) -> Flow | None:
        """The flow of an unused, unexpired pushed request."""
        ...

    def update(
        self, before: Flow, after: Flow, *, audits: Sequence[AuditRecord] = (), delete_delivery: bool = False
    ) -> None:
        """Write ``after`` if the stored flow is still ``before`` (its version); else
        ``ConcurrentUpdate``."""
        ...

    def leave_interstitial(
        self,
        before: Flow,
        after: Flow,
        *,
        request_uri_hash: str,
        now: datetime,
        portal_state_hash: str | None = None,
        portal_state_expires_at: datetime | None = None,
        browser_binding_hash: str | None = None,
        audits: Sequence[AuditRecord] = (),
    ) -> None:
        """Use up the request_uri and move the flow (continue: also store the portal-state pointer,
        bound to the fingerprint of the browser's binding cookie),
        in one transaction; ``ConcurrentUpdate`` if the request_uri was used meanwhile."""
        ...

    def consume_portal_state(
        self, portal_state_hash: str, *, browser_binding_hash: str, now: datetime
    ) -> Flow | None:
        """Use up the portal-state pointer and return its flow; None if unknown, used or expired;
        ``BrowserBindingMismatch`` (nothing changed) if another browser brings a valid state.
        Concurrent callbacks with one state: exactly one gets the flow."""
        ...

    def start_retrieval(
        self,
        before: Flow,
        after: Flow,
        *,
        code_hash: str,
        code_expires_at: datetime,
        process_id: str,
        audits: Sequence[AuditRecord] = (),
    ) -> None:
        """Move the flow to retrieving and store the partner's code and the portal process pointer."""
        ...

    def code_state(self, code_hash: str, *, now: datetime) -> tuple[CodeState, str | None]:
        """What a presented code is, and the flow it belongs to."""
        ...

    def redeem_code(
        self,
        before: Flow,
        after: Flow,
        *,
        code_hash: str,
        token: AccessTokenRecord,
        now: datetime,
        replays: Sequence[ReplayEntry] = (),
    ) -> None:
        """Remember ``replays``, mark the code used, store the token and update the flow, in one
        transaction. Refused, in this order of precedence: the ``refusal`` of the first replayed
        entry; ``CodeAlreadyUsed`` if another redemption won; ``ConcurrentUpdate`` if only the
        flow changed since ``before`` was read (a scheduled run polled or sealed it). A refused
        transaction writes nothing."""
        ...

    def token(self, token_hash: str, *, now: datetime) -> AccessTokenRecord | None: ...

    def delete_token(self, token_hash: str) -> None: ...
