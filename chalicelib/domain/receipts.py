"""The resident's receipt: a capability link to one flow's records, a signed copy of them with
inclusion proofs, and revocation of a delivery not yet picked up.

The link is ``/receipts/<interaction id>?e=<expiry>&t=<HMAC>``, the HMAC (SHA-256) computed under
the stage's receipt key of the month the link was made in (a keyring working key, wrapped by KMS;
the month is the expiry minus ``RECEIPT_LIFETIME``, so the link names its key without saying so),
so nothing needs storing and nobody without the key can forge one. Links made before the keyring
existed carry a KMS HMAC under the pseudonym key, checked there (``legacy``) until they expire.
It is shown only on our interstitial (never sent to the partner). A wrong, expired or other flow's
link shows nothing at all: every failure is the same ``ReceiptNotFound``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol

from chalicelib.domain.audit import AuditEvent, AuditRecord, audit_record
from chalicelib.domain.checkpoints import CheckpointService, StoredRecord
from chalicelib.domain.delivery import DeliveryStore, WebhookEvent, webhook_url_of
from chalicelib.domain.errors import ConcurrentUpdate, ErrorCategory, RelayError
from chalicelib.domain.flow import TRANSITIONS, Flow, FlowStatus, new_secret
from chalicelib.domain.ports import Clock, LinkMac, Pseudonymizer, Signer
from chalicelib.domain.registry import PartnerRegistry
from chalicelib.domain.sealing import sign_jwt

RECEIPT_LIFETIME = timedelta(days=30)
RECEIPT_TYP = "myna-relay-receipt+jwt"


def _link_message(interaction_id: str, expires: int) -> bytes:
    return f"receipt-link:{interaction_id}:{expires}".encode()


def _issued_at(expires: int) -> datetime:
    """When a link was made: its expiry, less the lifetime every link gets."""
    return datetime.fromtimestamp(expires - int(RECEIPT_LIFETIME.total_seconds()), tz=UTC)


class ReceiptNotFound(RelayError):
    """Wrong, expired, or another flow's link: nothing is revealed about any flow."""

    code = "receipt-not-found"
    category: ClassVar[ErrorCategory] = "not_found"
    title = "No receipt here"


class RevocationRefused(RelayError):
    """The delivery can no longer be revoked (picked up, expired, failed, already revoked)."""

    code = "revocation-refused"
    category: ClassVar[ErrorCategory] = "conflict"
    title = "This delivery can no longer be revoked"


class AuditReader(Protocol):
    def records_of_flow(self, interaction_id: str) -> list[StoredRecord]: ...

    def flow_trail(self, interaction_id: str) -> tuple[list[StoredRecord], dict[str, int]]:
        """The flow's records, and the leaf index of each one a checkpoint covered (one read)."""
        ...


@dataclass(frozen=True)
class ReceiptView:
    interaction_id: str
    records: tuple[AuditRecord, ...]
    status: FlowStatus | None  # None once the flow's short-lived state is gone
    revocable: bool


class ReceiptService:
    def __init__(
        self,
        *,
        links: LinkMac,
        audit: AuditReader,
        flows: DeliveryStore,
        partners: PartnerRegistry,
        checkpoints: CheckpointService,
        signer: Signer,
        clock: Clock,
        issuer: str,
        legacy: Pseudonymizer | None = None,
    ) -> None:
        """``legacy``: the KMS HMAC key that made the links issued before the keyring."""
        self._links = links
        self._legacy = legacy
        self._audit = audit
        self._flows = flows
        self._partners = partners
        self._checkpoints = checkpoints
        self._signer = signer
        self._clock = clock
        self._issuer = issuer

    def link(self, flow: Flow) -> str:
        """The capability path for this flow's receipt (relative to the issuer)."""
        expires = int((self._clock.now() + RECEIPT_LIFETIME).timestamp())
        tag = self._links.mac(_link_message(flow.flow_id, expires), issued_at=_issued_at(expires))
        return f"/receipts/{flow.flow_id}?e={expires}&t={tag}"

    def _check(self, interaction_id: str, expires: str, token: str) -> None:
        # ASCII digits only, and few of them: str.isdigit() also accepts "²" (int() refuses it) and
        # int() refuses more than 4300 digits; either would be a 500 instead of "no receipt".
        well_formed_expiry = expires.isascii() and expires.isdigit() and len(expires) <= 12
        if not (
            interaction_id and len(interaction_id) <= 64 and well_formed_expiry and 0 < len(token) <= 128
        ):
            raise ReceiptNotFound("no receipt", check="receipt")
        now = int(self._clock.now().timestamp())
        # A link expires; one claiming to have been made in the future was never made.
        if not now < int(expires) <= now + int(RECEIPT_LIFETIME.total_seconds()):
            raise ReceiptNotFound("no receipt", check="receipt")
        issued_at = _issued_at(int(expires))
        verified = self._links.verify(_link_message(interaction_id, int(expires)), token, issued_at=issued_at)
        if verified is None and self._legacy is not None:
            legacy = self._legacy.pseudonym(f"receipt:{interaction_id}:{int(expires)}")
            # As bytes: compare_digest refuses str with non-ASCII characters (TypeError, a 500).
            verified = secrets.compare_digest(token.encode("utf-8", "replace"), legacy.encode())
        if not verified:
            raise ReceiptNotFound("no receipt", check="receipt")

    def view(self, interaction_id: str, *, expires: str, token: str) -> ReceiptView:
        self._check(interaction_id, expires, token)
        records = tuple(
            AuditRecord.model_validate_json(r.document) for r in self._audit.records_of_flow(interaction_id)
        )
        if not records:
            raise ReceiptNotFound("no receipt", check="receipt")
        flow = self._flows.get(interaction_id, now=self._clock.now())
        status = flow.status if flow else None
        revocable = flow is not None and FlowStatus.REVOKED in TRANSITIONS[flow.status]
        return ReceiptView(interaction_id, records, status, revocable)

    def signed(self, interaction_id: str, *, expires: str, token: str) -> str:
        """A JWS (ES256, the service key) over the flow's records, with an RFC 6962 inclusion
        proof for each record already covered by a signed checkpoint."""
        self._check(interaction_id, expires, token)
        stored, leaf_indexes = self._audit.flow_trail(interaction_id)
        if not stored:
            raise ReceiptNotFound("no receipt", check="receipt")
        # One head, and each tile on the proofs' paths read once for all the flow's records.
        proofs = self._checkpoints.inclusion_proofs(leaf_indexes)
        entries: list[dict[str, Any]] = []
        for record in stored:
            proof = proofs.get(record.key)
            entries.append(
                {
                    "key": record.key,
                    "record": json.loads(record.document),
                    "document": record.document,  # the exact leaf data, for recomputing the leaf hash
                    "inclusion": proof.as_json() if proof else None,
                }
            )
        now = self._clock.now()
        return sign_jwt(
            {"iss": self._issuer, "sub": interaction_id, "iat": int(now.timestamp()), "records": entries},
            signer=self._signer,
            typ=RECEIPT_TYP,
        )

    def revoke(self, interaction_id: str, *, expires: str, token: str) -> None:
        """Revoke a delivery not yet picked up: delivery and token deleted, partner told, recorded."""
        self._check(interaction_id, expires, token)
        now = self._clock.now()
        flow = self._flows.get(interaction_id, now=now)
        if flow is None or FlowStatus.REVOKED not in TRANSITIONS[flow.status]:
            state = flow.status.value if flow else "gone"
            raise RevocationRefused(f"the delivery is {state}", check=f"delivery.{state}")
        try:
            webhook_url = webhook_url_of(self._partners.get(flow.partner_id).partner)
        except RelayError:
            webhook_url = None
        after = flow.moved_to(
            FlowStatus.REVOKED, now=now, failure_reason="resident.revoked", next_due_at=None
        )
        webhook = (
            WebhookEvent(
                event_id=new_secret(16),
                partner_id=flow.partner_id,
                url=webhook_url,
                type="consent.revoked",
                delivery_id=flow.flow_id,
                occurred_at=now,
                next_due_at=now,
            )
            if webhook_url
            else None
        )
        try:
            self._flows.finish(
                flow,
                after,
                audits=[audit_record(flow, AuditEvent.REVOKED, at=now, outcome="resident.revoked")],
                delete_delivery=flow.status is FlowStatus.READY,
                webhook=webhook,
            )
        except ConcurrentUpdate:
            raise RevocationRefused(
                "the delivery changed meanwhile; reload the page", check="delivery"
            ) from None
