"""Audit records: the service's mirror of the portal's provision history (情報提供等記録).

Who (requester: the partner), from whom (provider: Mynaportal and the providing municipality),
what (the information item, in Japanese and as a code), why (the partner's purpose), when
(requested, provided), the outcome, and our interaction id linking every step of one flow.
Never a data value: counts and names of checks only. (Tamper evidence, pseudonyms and receipts are
built on these records; see docs/data-model.md.)
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.domain.datasets import DATASETS, DatasetId
from chalicelib.domain.flow import Flow, new_secret

PROVIDER = "マイナポータル"


class AuditEvent(StrEnum):
    REQUEST_PUSHED = "request_pushed"
    CONSENT_SHOWN = "consent_shown"
    CONTINUED = "continued"
    CANCELLED = "cancelled"
    PORTAL_AUTHORISED = "portal_authorised"
    PORTAL_FAILED = "portal_failed"
    RETRIEVAL_STARTED = "retrieval_started"
    RESULT_RECEIVED = "result_received"
    INDIVIDUAL_NUMBERS_REMOVED = "individual_numbers_removed"
    SEALED = "sealed"
    PICKED_UP = "picked_up"
    EXPIRED = "expired"
    ABANDONED = "abandoned"  # the resident never continued, or never came back from the portal
    REVOKED = "revoked"
    FAILED = "failed"


# Every outcome an audit record may carry: the resident's receipt explains each one, so a new outcome
# needs its label (chalicelib/page_rendering.py) before anything can record it. An entry ending in
# a dot is a family: the suffix is the portal's own error code, or the check a malformed result failed.
OUTCOMES: frozenset[str] = frozenset(
    {
        "pushed",
        "shown",
        "to_portal",
        "resident.cancelled",
        "authorised",
        "started",
        "received",
        "removed",
        "sealed",
        "provided",
        "expired",
        "resident.revoked",
        "partner.revoked",
        "code.replayed",
        "request_uri.expired",
        "portal_state.expired",
        # the resident's visit to the portal ended badly (PortalRefusal), or what followed it
        "portal.cancelled",
        "portal.certificate_expired",
        "portal.card_locked",
        "portal.other",
        "portal.no_code",
        "portal.unavailable",
        "portal.token_refused",
        "portal.request_rejected",
        "portal.protocol_error",
        "portal.error_code.",
        "partner.disabled",
        "partner.unavailable",
        "kms.unavailable",
        "dynamodb.unavailable",
        "retrieval.deadline",
        "retrieval.state_missing",
        "result.too_large",
        "result.",
    }
)
_FAMILIES = tuple(sorted((outcome for outcome in OUTCOMES if outcome.endswith(".")), key=len, reverse=True))


def outcome_key(outcome: str) -> str:
    """The entry of ``OUTCOMES`` that ``outcome`` is (itself, or its family); ``KeyError`` if none."""
    if outcome in OUTCOMES and not outcome.endswith("."):
        return outcome
    for family in _FAMILIES:
        if outcome.startswith(family) and len(outcome) > len(family):
            return family
    raise KeyError(outcome)


class AuditRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    record_id: str
    occurred_at: datetime
    event: AuditEvent
    interaction_id: str
    requester_id: str  # 情報照会者: the partner
    requester_name: str = ""
    resident_pseudonym: str = ""  # random per flow (flow.new_pseudonym): never the resident's identity
    provider: str = PROVIDER  # 情報提供者
    municipalities: tuple[str, ...] = ()  # the providing municipalities, when known
    dataset: DatasetId
    dataset_code: str  # 特定個人情報の項目 (code)
    dataset_name_ja: str  # 特定個人情報の項目 (name)
    purpose_id: str  # the partner's 事務
    requested_at: datetime  # 提供の求めの日時
    provided_at: datetime | None = None  # 提供の日時
    outcome: str
    counts: dict[str, int] = Field(default_factory=dict)
    # 不開示: 番号法 第23条 provision records carry a flag for records withheld from disclosure
    # (to the resident). Nothing the portal is known to send says so (docs/mynaportal.md: not in
    # the observed IF001 messages); it would come from the portal's provision record for the
    # exchange (the official spec, or a result answer field), and ``audit_record`` would take it
    # from there. Until then it is False on every record. Documents written before the field
    # existed lack it and read as False: a record's leaf is its stored document byte for byte, so
    # old documents are never rewritten and still verify.
    withheld_from_disclosure: bool = False


def audit_record(
    flow: Flow,
    event: AuditEvent,
    *,
    at: datetime,
    outcome: str,
    municipalities: tuple[str, ...] = (),
    provided_at: datetime | None = None,
    counts: dict[str, int] | None = None,
    withheld_from_disclosure: bool = False,
) -> AuditRecord:
    outcome_key(outcome)  # an outcome the receipt cannot explain is a programming error: refused here
    dataset = DATASETS[flow.dataset]
    return AuditRecord(
        record_id=new_secret(12),
        occurred_at=at,
        event=event,
        interaction_id=flow.flow_id,
        requester_id=flow.partner_id,
        requester_name=flow.partner_name,
        resident_pseudonym=flow.resident_pseudonym,
        municipalities=municipalities,
        dataset=flow.dataset,
        dataset_code=dataset.code,
        dataset_name_ja=dataset.name_ja,
        purpose_id=flow.purpose_id,
        requested_at=flow.created_at,
        provided_at=provided_at,
        outcome=outcome,
        counts=counts or {},
        withheld_from_disclosure=withheld_from_disclosure,
    )
