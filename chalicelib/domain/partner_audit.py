"""Partner reconciliation: a partner reads its own audit records (``GET /v1/audit``).

Why this module exists: a partner bank reconciles what it asked for and received against our
mirror of the portal's provision history (情報提供等記録). It authenticates exactly as at the
token endpoint, with a fresh ``private_key_jwt`` client assertion (RFC 7523 section 3), sent as an
RFC 6750 bearer token: ``Authorization: Bearer <assertion>`` whose ``aud`` is our issuer, as a
string (FAPI 2.0 Security Profile final, 5.3.2.1 item 8: as at every endpoint). The scheme
compares case-insensitively and may be followed by one or more spaces (RFC 9110 11.1, 11.4). The
assertion is single use: its ``jti`` is remembered in the same replay namespace
as at PAR, token and revocation (``ca:<client_id>``), so an assertion spent at one endpoint cannot
be spent again at another. No other credential is accepted (no access token, no DPoP, no query
parameter): this endpoint issues nothing and needs no session.

What it must never do:

- show a partner a record whose ``requester_id`` is not that partner's own id (the store is
  partitioned by partner already; records are filtered here again, defensively);
- remember a ``jti`` before every other check has passed, so a refused request changes nothing;
- put the assertion, a claim value or a data value in an error, or in an answer: audit records
  carry who/what/when/outcome and never the data (see ``chalicelib.domain.audit``).

Pages follow the store's key order; the cursor (``after``) is the base64url of the last sort key
returned, opaque to partners.

The same authentication opens the log's signed tree heads (``GET /v1/audit/checkpoints/{seq|latest}``)
and the RFC 9162 consistency proof from a head the partner kept to a later one
(``.../consistency?from=<seq>``). A partner that keeps the heads it was shown is a witness: a
rolled-back, forked or rewritten log cannot prove itself consistent with them.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from chalicelib.domain.audit import AuditRecord
from chalicelib.domain.checkpoints import CheckpointService, ConsistencyProof, StoredRecord, TreeHead
from chalicelib.domain.errors import InvalidRequest, PartnerDisabled, PartnerNotFound
from chalicelib.domain.flow import fingerprint
from chalicelib.domain.oauth.client_assertion import (
    MAX_ASSERTION_LENGTH,
    parse_unverified_client_id,
    verify_client_assertion,
)
from chalicelib.domain.oauth.credentials import credentials
from chalicelib.domain.oauth.errors import InvalidClient, InvalidToken
from chalicelib.domain.oauth.ports import ReplayStore
from chalicelib.domain.partners import Partner
from chalicelib.domain.ports import Clock
from chalicelib.domain.registry import PartnerRegistry

QUERY_PARAMETERS = frozenset({"month", "after", "limit"})
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_CURSOR_LENGTH = 256  # characters of the base64url cursor
MAX_PARAMETER_LENGTH = 512

_MONTH = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")  # ASCII digits only (``\d`` matches any script's)
_LIMIT = re.compile(r"^[0-9]{1,3}$")
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_SORT_KEY = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII without spaces: what the store's keys are
# The first page starts after a key below every sort key (they are printable ASCII without spaces).
# Not "": DynamoDB refuses an empty string as a key value in a key condition (ValidationException),
# and ``DynamoAuditLog.records_of_partner`` sends ``after`` as such a value.
BEFORE_FIRST_KEY = " "
_SEQ = re.compile(r"^[1-9][0-9]{0,11}$")  # a checkpoint's sequence number, as stored (12 digits at most)
LATEST = "latest"


class AuditRecordReader(Protocol):
    """The audit log, as far as reconciliation reads it (implemented by ``DynamoAuditLog``)."""

    def records_of_partner(
        self, partner_id: str, month: str, *, after: str = "", limit: int = 100
    ) -> Sequence[StoredRecord]:
        """One partner's records of one month (``YYYY-MM``), in key order, after a sort key."""
        ...


@dataclass(frozen=True)
class AuditQuery:
    month: str  # YYYY-MM (UTC)
    after: str  # the decoded sort key, BEFORE_FIRST_KEY for the first page
    limit: int


@dataclass(frozen=True)
class AuditPage:
    records: tuple[AuditRecord, ...]
    next: str | None  # the cursor of the following page; None when this page is the last

    def as_json(self) -> dict[str, object]:
        return {"records": [record.model_dump(mode="json") for record in self.records], "next": self.next}


def encode_cursor(sort_key: str) -> str:
    return base64.urlsafe_b64encode(sort_key.encode("ascii")).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> str:
    """The sort key a cursor names; ``InvalidRequest`` (check ``after``) for anything we did not issue
    in that form: non-base64url, padded, non-canonical, or not a printable ASCII key."""
    refused = InvalidRequest("after must be a cursor returned as next by this endpoint", check="after")
    if len(cursor) > MAX_CURSOR_LENGTH or not _BASE64URL.fullmatch(cursor) or len(cursor) % 4 == 1:
        raise refused
    try:
        sort_key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise refused from None
    if not _SORT_KEY.fullmatch(sort_key) or encode_cursor(sort_key) != cursor:
        raise refused
    return sort_key


def _single_of(params: Mapping[str, Sequence[str]], *, allowed: frozenset[str]) -> dict[str, str]:
    for name, values in params.items():
        if name not in allowed:
            raise InvalidRequest(f"unexpected query parameter {name[:40]!r}", check=name[:40])
        if len(values) != 1:
            raise InvalidRequest(f"{name} is repeated", check=name)
        if len(values[0]) > MAX_PARAMETER_LENGTH:
            raise InvalidRequest(f"{name} is longer than {MAX_PARAMETER_LENGTH} characters", check=name)
    return {name: values[0] for name, values in params.items()}


def _single(params: Mapping[str, Sequence[str]]) -> dict[str, str]:
    return _single_of(params, allowed=QUERY_PARAMETERS)


def parse_seq(text: str, name: str) -> int:
    if not _SEQ.fullmatch(text):
        raise InvalidRequest(f"{name} must be a checkpoint number (1, 2, ...)", check=name)
    return int(text)


class PartnerAuditService:
    def __init__(
        self,
        *,
        partners: PartnerRegistry,
        log: AuditRecordReader,
        replay: ReplayStore,
        clock: Clock,
        issuer: str,
        checkpoints: CheckpointService | None = None,
    ) -> None:
        self._partners = partners
        self._log = log
        self._replay = replay
        self._clock = clock
        self._issuer = issuer
        self._checkpoints = checkpoints

    # -- parameters -------------------------------------------------------------------------------

    def parse_query(self, params: Mapping[str, Sequence[str]]) -> AuditQuery:
        """``month`` (default: the current UTC month), ``after`` (a cursor), ``limit`` (1..100)."""
        single = _single(params)
        month = single.get("month")
        if month is None:
            month = f"{self._clock.now().astimezone(UTC):%Y-%m}"
        elif not _MONTH.fullmatch(month):
            raise InvalidRequest("month must be YYYY-MM (a UTC month)", check="month")
        after = single.get("after")
        sort_key = BEFORE_FIRST_KEY if after is None else decode_cursor(after)
        limit_text = single.get("limit")
        limit = DEFAULT_LIMIT
        if limit_text is not None:
            if not _LIMIT.fullmatch(limit_text) or not 1 <= int(limit_text) <= MAX_LIMIT:
                raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIMIT}", check="limit")
            limit = int(limit_text)
        return AuditQuery(month=month, after=sort_key, limit=limit)

    # -- authentication (RFC 6750 bearer carrying an RFC 7523 client assertion) ------------------

    def _verified(self, authorization: str | None) -> tuple[Partner, str, datetime]:
        """The partner behind the bearer assertion, with its fingerprinted jti and expiry; nothing
        is remembered yet. Every refusal is ``InvalidToken`` naming the failed check."""
        if not authorization:
            raise InvalidToken(
                "a client assertion is required (Authorization: Bearer <assertion>)", check="authorization"
            )
        assertion = credentials(authorization, "Bearer")  # RFC 6750 2.1, RFC 9110 11.1 and 11.4
        if assertion is None:
            raise InvalidToken(
                "must be Bearer <client assertion>: no other scheme or credential", check="authorization"
            )
        if len(assertion) > MAX_ASSERTION_LENGTH:
            raise InvalidToken(f"longer than {MAX_ASSERTION_LENGTH} bytes", check="client_assertion")
        client_id = parse_unverified_client_id(assertion)
        if client_id is None:
            raise InvalidToken("not a compact JWS with an iss claim", check="client_assertion")
        try:
            partner = self._partners.get_enabled(client_id)
        except (PartnerNotFound, PartnerDisabled):
            raise InvalidToken("unknown or disabled client", check="client_id") from None
        try:
            verified = verify_client_assertion(
                assertion,
                client_id=partner.id,
                jwks=partner.jwks,
                issuer=self._issuer,
                now=self._clock.now(),
            )
        except InvalidClient as refused:
            raise InvalidToken(refused.detail, check=refused.check) from None
        return partner, fingerprint(verified.jti), verified.expires_at

    def _remember(self, partner: Partner, jti_fingerprint: str, until: datetime) -> None:
        # RFC 7523 section 3 point 7; the namespace and value are those of AuthorizationService,
        # so one assertion is spent once across PAR, token, revocation and this endpoint.
        if not self._replay.remember(f"ca:{partner.id}", jti_fingerprint, until=until, now=self._clock.now()):
            raise InvalidToken("client assertion jti already used", check="client_assertion.jti")

    # -- the page -----------------------------------------------------------------------------------

    def page(self, *, authorization: str | None, params: Mapping[str, Sequence[str]]) -> AuditPage:
        """One page of the authenticated partner's own records.

        Order of checks: the assertion (401), then the parameters (400), then the jti is spent;
        a refused request changes nothing."""
        partner, jti_fingerprint, until = self._verified(authorization)
        query = self.parse_query(params)
        self._remember(partner, jti_fingerprint, until)
        # One more than asked for tells whether another page follows, without a second query.
        stored = list(
            self._log.records_of_partner(partner.id, query.month, after=query.after, limit=query.limit + 1)
        )
        shown = stored[: query.limit]
        records = tuple(
            record
            for record in (AuditRecord.model_validate_json(item.document) for item in shown)
            if record.requester_id == partner.id  # defensive: the partition key already says so
        )
        # The cursor follows what was read, not what was shown, so a filtered record never stalls paging.
        following = encode_cursor(shown[-1].sort_key) if len(stored) > query.limit else None
        return AuditPage(records=records, next=following)

    # -- signed tree heads and consistency ---------------------------------------------------------

    def _service(self) -> CheckpointService:
        if self._checkpoints is None:  # composition error, never a partner's
            raise RuntimeError("PartnerAuditService built without checkpoints")
        return self._checkpoints

    def checkpoint(
        self, *, authorization: str | None, checkpoint: str, params: Mapping[str, Sequence[str]]
    ) -> TreeHead:
        """A signed tree head: ``latest`` or by sequence number (404 when there is none)."""
        partner, jti_fingerprint, until = self._verified(authorization)
        _single_of(params, allowed=frozenset())
        seq = None if checkpoint == LATEST else parse_seq(checkpoint, "checkpoint")
        self._remember(partner, jti_fingerprint, until)
        return self._service().head(seq)

    def consistency(
        self, *, authorization: str | None, checkpoint: str, params: Mapping[str, Sequence[str]]
    ) -> ConsistencyProof:
        """The RFC 9162 section 2.1.4 proof from checkpoint ``from`` (one the partner kept) to this one."""
        partner, jti_fingerprint, until = self._verified(authorization)
        single = _single_of(params, allowed=frozenset({"from"}))
        if "from" not in single:
            raise InvalidRequest("from (the checkpoint number you kept) is required", check="from")
        first = parse_seq(single["from"], "from")
        second = None if checkpoint == LATEST else parse_seq(checkpoint, "checkpoint")
        self._remember(partner, jti_fingerprint, until)
        return self._service().consistency(first, second)
