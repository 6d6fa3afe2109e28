"""The flow: one resident, one partner, one purpose, one delivery; an explicit state machine.

Every state change goes through ``Flow.moved_to``, which refuses a transition the table below does
not allow; the store then writes it conditionally on the version read, so two concurrent requests
can never both move a flow (docs/flow.md draws this machine).

    created ──continue──▶ at_portal ──callback ok──▶ retrieving ──sealed──▶ ready ──pickup──▶ picked_up
       │  │                   │  │                       │                    │
       │  └─cancel─▶ cancelled│  └─portal error─▶ failed ◀┘ deadline/error     ├─data life over─▶ expired
       │                      │                          └──── revoke ──────▶ revoked ◀──────┘   ▲
       └──────────────────────┴─── abandoned (window closed, scheduled run) ─────────────────────┘
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from chalicelib.domain.datasets import DatasetId
from chalicelib.domain.errors import ConcurrentUpdate, ErrorCategory, RelayError


class FlowStatus(StrEnum):
    CREATED = "created"  # pushed by the partner (PAR); the resident has not decided yet
    AT_PORTAL = "at_portal"  # the resident continued to Mynaportal
    RETRIEVING = "retrieving"  # the portal authorised; retrieval started (IF001-04)
    READY = "ready"  # sealed delivery waiting for pickup
    PICKED_UP = "picked_up"
    CANCELLED = "cancelled"  # the resident cancelled at the interstitial
    FAILED = "failed"  # portal refusal, error, or no result before the deadline
    EXPIRED = "expired"  # the delivery's data life ended before pickup
    # the resident or the partner revoked it, a code was replayed, or the operator revoked a
    # disabled partner's waiting delivery
    REVOKED = "revoked"


TRANSITIONS: dict[FlowStatus, frozenset[FlowStatus]] = {
    FlowStatus.CREATED: frozenset({FlowStatus.AT_PORTAL, FlowStatus.CANCELLED, FlowStatus.EXPIRED}),
    FlowStatus.AT_PORTAL: frozenset({FlowStatus.RETRIEVING, FlowStatus.FAILED, FlowStatus.EXPIRED}),
    FlowStatus.RETRIEVING: frozenset({FlowStatus.READY, FlowStatus.FAILED, FlowStatus.REVOKED}),
    FlowStatus.READY: frozenset({FlowStatus.PICKED_UP, FlowStatus.EXPIRED, FlowStatus.REVOKED}),
    FlowStatus.PICKED_UP: frozenset(),
    FlowStatus.CANCELLED: frozenset(),
    FlowStatus.FAILED: frozenset(),
    FlowStatus.EXPIRED: frozenset(),
    FlowStatus.REVOKED: frozenset(),
}
TERMINAL: frozenset[FlowStatus] = frozenset(status for status, nexts in TRANSITIONS.items() if not nexts)


class IllegalTransition(RelayError):
    """A state change the flow's machine does not allow (a replayed or out-of-order step)."""

    code = "illegal-transition"
    category: ClassVar[ErrorCategory] = "conflict"
    title = "The flow is not in a state that allows this step"


class PortalProcessRef(BaseModel):
    """What the portal needs to find a retrieval again (IF001-04 answer, IF001-06 request)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    telegram_id: str
    process_id: str
    mode: str


class Flow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    flow_id: str
    partner_id: str
    partner_name: str = ""  # 情報照会者, as shown to the resident (Japanese name)
    resident_pseudonym: str = ""  # random per flow (new_pseudonym): stable within it, unlinkable across flows
    purpose_id: str
    dataset: DatasetId
    scope: str
    redirect_uri: str
    partner_state: str
    code_challenge: str
    status: FlowStatus
    version: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime  # the state record may be collected after this
    portal_client_id: str
    portal_process: PortalProcessRef | None = None
    portal_token_ciphertext: str | None = None  # KMS ciphertext, base64; never the token itself
    # Every secret handed out for this flow carries the flow's id (``<flow id>.<random>``, see
    # ``flow_secret``) and is checked against its fingerprint here, so each step reads this one
    # item. A secret's fingerprint is dropped once the flow has moved past the step that uses it
    # (the status then says it is spent), which keeps the item small.
    request_uri_hash: str | None = None
    request_uri_expires_at: datetime | None = None
    csrf_hash: str | None = None
    # the portal state, and the browser that must bring it back (RFC 9700 section 4.7.1); the
    # store keeps these three as attributes of their own: the callback spends the state with one
    # conditional update on them
    portal_state_hash: str | None = None
    portal_state_expires_at: datetime | None = None
    browser_binding_hash: str | None = None
    code_hash: str | None = None  # kept after redemption: a replayed code must be recognised
    code_expires_at: datetime | None = None
    code_redeemed: bool = False
    access_token_hash: str | None = None  # None once revoked
    token_expires_at: datetime | None = None
    dpop_jkt: str | None = None
    # the consent interstitial's language chosen from the pushed ui_locales (None: the page's default)
    ui_locale: Literal["ja", "en"] | None = None
    retrieval_deadline: datetime | None = None
    failure_reason: str | None = None
    # when the scheduled run must look: the poller (retrieving), the delivery's expiry (ready), or
    # the end of the resident's window (created, at_portal: swept as abandoned)
    next_due_at: datetime | None = None
    poll_attempts: int = 0
    ready_at: datetime | None = None
    delivery_expires_at: datetime | None = None

    def moved_to(self, status: FlowStatus, *, now: datetime, **changes: object) -> Flow:
        """This flow in ``status`` (next version), or ``IllegalTransition``. A flow that ends keeps
        no portal token, whichever step ends it (a revocation mid-retrieval included): what would
        let anyone fetch the resident's data again dies with the flow, not at the item's TTL. Nor
        is it due for the scheduled run any more."""
        if status not in TRANSITIONS[self.status]:
            raise IllegalTransition(
                f"a {self.status.value} flow cannot become {status.value}", check="flow.status"
            )
        spent: dict[str, object] = {}
        if self.status is FlowStatus.CREATED:  # the request_uri and the page's CSRF token are spent
            spent.update(request_uri_hash=None, request_uri_expires_at=None, csrf_hash=None)
        if self.status is FlowStatus.AT_PORTAL:  # so is the portal state
            spent.update(portal_state_hash=None, portal_state_expires_at=None, browser_binding_hash=None)
        if status is FlowStatus.REVOKED:  # what the code issued dies with the revocation
            spent["access_token_hash"] = None
        if status in TERMINAL:
            spent["portal_token_ciphertext"] = None
            spent["next_due_at"] = None
        return self.model_copy(
            update={**changes, **spent, "status": status, "version": self.version + 1, "updated_at": now}
        )

    def updated(self, *, now: datetime, **changes: object) -> Flow:
        """Same status, new attributes, next version (the write stays conditional on the old one)."""
        if "status" in changes:
            raise ValueError("use moved_to() to change the status")
        return self.model_copy(update={**changes, "version": self.version + 1, "updated_at": now})

    def holds_token(self, access_token: str, *, now: datetime) -> bool:
        """Whether ``access_token`` is this flow's live token (not revoked, not expired)."""
        return (
            self.access_token_hash is not None
            and self.token_expires_at is not None
            and now < self.token_expires_at
            and secrets.compare_digest(fingerprint(access_token), self.access_token_hash)
        )

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


class CodeAlreadyUsed(ConcurrentUpdate):
    """The authorization code was redeemed before (RFC 6749 section 4.1.2: revoke what it issued)."""

    code = "code-already-used"


class BrowserBindingMismatch(RelayError):
    """A valid portal state came back in a browser without the binding cookie of the one that
    left for the portal (RFC 9700 section 4.7.1: CSRF on the redirect URI)."""

    code = "browser-binding"
    category = "forbidden"


def new_secret(nbytes: int = 32) -> str:
    """A random URL-safe secret (state, code, token, request_uri): 256 bits by default."""
    return secrets.token_urlsafe(nbytes)


FLOW_ID_BYTES = 16
_FLOW_SECRET = re.compile(r"([A-Za-z0-9_-]{22})\.[A-Za-z0-9_-]{43}")


def new_flow_id() -> str:
    return new_secret(FLOW_ID_BYTES)


def flow_secret(flow_id: str) -> str:
    """A single-use secret of one flow (request_uri, portal state, code, access token):
    ``<flow id>.<256 random bits>``. The id lets a step read the flow directly; only the random
    part's fingerprint, stored in the flow, makes the secret valid. The id alone grants nothing:
    the partner is told it (the delivery id), and the receipt link needs its own MAC."""
    return f"{flow_id}.{new_secret()}"


def flow_id_of(secret: str) -> str | None:
    """The flow a secret names, or None if it is not shaped like ``flow_secret``'s (such a
    secret is unknown: nothing is read for it)."""
    match = _FLOW_SECRET.fullmatch(secret)
    return match.group(1) if match else None


def new_pseudonym() -> str:
    """The resident's pseudonym for one flow: 256 random bits, base64url (43 characters, the shape
    of the KMS HMAC it replaces). Only stable within the flow and unlinkable across flows; nothing
    recomputes it, so no key is needed. Not a credential: it is written to the audit log, so it is
    drawn with ``token_bytes`` rather than ``new_secret`` (whose values the leak scan treats as
    secrets that must never be stored)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def fingerprint(secret: str) -> str:
    """How secrets are kept at rest: SHA-256 (base64url, 43 characters: the flow item stays
    small), so a table dump yields nothing usable."""
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()).rstrip(b"=").decode()
