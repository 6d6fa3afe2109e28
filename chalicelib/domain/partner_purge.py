"""Deleting a disabled partner's waiting deliveries (``relayctl partners purge-deliveries``).

A delivery sealed before the partner was disabled waits, ``ready``, until it is picked up or its
data life ends; re-enabling the partner would make it collectable again. The operator may end
them now instead: each ``ready`` flow of the partner moves to ``revoked`` (reason
``partner.disabled``) with its sealed payload deleted and its ``revoked`` audit record appended,
all in one transaction (``DeliveryStore.update(..., delete_delivery=True)``, the write every
revocation makes). No webhook: nothing more reaches a disabled partner. Running it again finds
nothing left to do.

Finding them: the state table holds only live flows (minutes to hours: the longest data life),
and every flow that has not ended is in the sparse ``by_due`` index. So every live flow of every
partner is read once (its key from the index, its item by key), and this partner's ``ready`` ones
are kept: O(live flows), never the audit log.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Protocol

from chalicelib.domain.audit import AuditEvent, audit_record
from chalicelib.domain.delivery import DeliveryStore
from chalicelib.domain.errors import ConcurrentUpdate, ErrorCategory, RelayError
from chalicelib.domain.flow import Flow, FlowStatus
from chalicelib.domain.ports import Clock
from chalicelib.domain.registry import PartnerRegistry

REASON = "partner.disabled"  # an outcome with its receipt label: "The recipient was suspended"
WRITE_ATTEMPTS = 3


class PartnerStillEnabled(RelayError):
    """Waiting deliveries are deleted only for a partner the operator has disabled first."""

    code = "partner-enabled"
    category: ClassVar[ErrorCategory] = "conflict"
    title = "Partner enabled"


class LiveFlows(Protocol):
    def live_flows(self, *, now: datetime) -> Iterator[Flow]:
        """Every flow that has not ended (each one is in the due index), read by key."""
        ...


@dataclass(frozen=True)
class PurgeResult:
    partner_id: str
    revoked: tuple[str, ...]  # flow ids: delivery deleted, flow revoked, audit record written
    examined: int  # live flows read, of every partner
    past_data_life: tuple[str, ...] = ()  # left to the scheduled expiry (recorded ``expired``)
    moved_on: tuple[str, ...] = ()  # ended by someone else between the read and the write
    applied: bool = True  # False: what would be revoked, nothing written


def purge_waiting_deliveries(
    partner_id: str,
    *,
    partners: PartnerRegistry,
    flows: LiveFlows,
    store: DeliveryStore,
    clock: Clock,
    apply: bool = True,
) -> PurgeResult:
    """Revoke every ``ready`` flow of the disabled partner ``partner_id`` (``apply=False``: only
    say which). ``PartnerNotFound`` for an unknown id, ``PartnerStillEnabled`` if it is enabled."""
    partner = partners.get(partner_id).partner
    if partner.enabled:
        raise PartnerStillEnabled(
            f"partner {partner_id} is enabled: disable it first (its deliveries are collectable)",
            check="partner.enabled",
        )
    revoked: list[str] = []
    expired: list[str] = []
    moved_on: list[str] = []
    examined = 0
    for flow in flows.live_flows(now=clock.now()):
        examined += 1
        if flow.partner_id != partner_id or flow.status is not FlowStatus.READY:
            continue
        if flow.delivery_expires_at is not None and flow.delivery_expires_at <= clock.now():
            expired.append(flow.flow_id)  # its data life is over: the scheduled run records it so
            continue
        if not apply or _revoke(flow, store, clock):
            revoked.append(flow.flow_id)
        else:
            moved_on.append(flow.flow_id)
    return PurgeResult(partner_id, tuple(revoked), examined, tuple(expired), tuple(moved_on), applied=apply)


def _revoke(flow: Flow, store: DeliveryStore, clock: Clock) -> bool:
    """One transaction: the flow ``revoked`` (conditional on its version), its sealed payload
    deleted, its audit record appended. False if it is no longer ``ready`` (re-read after a
    concurrent write)."""
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        now = clock.now()
        try:
            store.update(
                flow,
                flow.moved_to(FlowStatus.REVOKED, now=now, failure_reason=REASON, next_due_at=None),
                audits=[audit_record(flow, AuditEvent.REVOKED, at=now, outcome=REASON)],
                delete_delivery=True,
            )
            return True
        except ConcurrentUpdate:
            again = store.get(flow.flow_id, now=now)
            if again is None or again.status is not FlowStatus.READY:
                return False
            if attempt == WRITE_ATTEMPTS:
                raise
            flow = again
    return False
