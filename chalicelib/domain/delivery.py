"""From a started retrieval to a delivery picked up once: polling the portal (IF001-05/06), sealing,
pickup, expiry, and the webhooks that tell partners when to come.

Invariants: a delivery exists only for a ``ready`` flow, stored together with its audit record and
its webhook in one transaction; it is deleted at pickup (with the "provided" record, one
transaction) or at the end of its data life, whichever comes first, and expiry is enforced on
every read (DynamoDB TTL is only a lazy backstop). A portal fault of any kind ends in ``failed``
with a named reason; nothing is half-written.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import ClassVar, Final, Literal, NamedTuple, Protocol

from chalicelib.domain.audit import AuditEvent, AuditRecord, audit_record
from chalicelib.domain.errors import (
    ConcurrentUpdate,
    ErrorCategory,
    PartnerDisabled,
    PartnerNotFound,
    RelayError,
)
from chalicelib.domain.flow import Flow, FlowStatus, fingerprint, flow_id_of, new_secret
from chalicelib.domain.minimise import release
from chalicelib.domain.normalise import MalformedResult, UnreadableResult, normalise
from chalicelib.domain.oauth.credentials import credentials
from chalicelib.domain.oauth.dpop import MAX_AGE, MAX_FUTURE, verify_dpop_proof
from chalicelib.domain.oauth.errors import InvalidDpopProof, InvalidToken
from chalicelib.domain.oauth.ports import ReplayStore
from chalicelib.domain.oauth.replay import ReplayEntry, spend
from chalicelib.domain.partners import Partner
from chalicelib.domain.portal import (
    PortalError,
    PortalGateway,
    PortalProcess,
    PortalRejected,
    PortalUnavailable,
    ResultPending,
)
from chalicelib.domain.portal_mapping import PortalMapping
from chalicelib.domain.ports import Clock, Envelope, MetricsSink, Signer, SignerSource
from chalicelib.domain.registry import PartnerRegistry
from chalicelib.domain.sealing import seal, sign_jwt

WebhookType = Literal["delivery.ready", "delivery.failed", "delivery.expired", "consent.revoked"]
# The failures a partner is told by name (the webhook's ``reason``, the pickup's 410 ``check``), by
# failure_reason: "the relay could not read what the portal sent" is not "the portal has no data"
# (a success with no records) and must not look like a portal outage either.
PARTNER_FAILURE_REASONS: Final[dict[str, str]] = {"result.unreadable": "unreadable_result"}
MAX_DELIVERY_BYTES = 350_000  # DynamoDB items stop at 400 KB; a sealed payload never comes close
DUE_SHARDS = 8


class Unread:
    """The partner has not been read in this request (``_fail``'s default)."""


UNREAD: Final = Unread()


def webhook_url_of(partner: Partner | None) -> str | None:
    """Where a partner's events go: nowhere once it is disabled (nothing more reaches an operator-
    stopped partner, its key perhaps leaked), or when it is gone or registered no webhook."""
    if partner is None or not partner.enabled:
        return None
    return partner.webhook_url


@dataclass(frozen=True)
class StoredDelivery:
    flow_id: str
    partner_id: str
    jwe: str
    expires_at: datetime

    def __repr__(self) -> str:
        return f"StoredDelivery(flow_id={self.flow_id!r}, expires_at={self.expires_at.isoformat()})"


@dataclass(frozen=True)
class WebhookEvent:
    event_id: str
    partner_id: str
    url: str
    type: WebhookType
    delivery_id: str
    occurred_at: datetime
    next_due_at: datetime
    attempts: int = 0
    # why a delivery failed, for the reasons a partner is told (PARTNER_FAILURE_REASONS); else None
    reason: str | None = None


class DueItem(NamedTuple):
    """One entry of the due index: a flow to poll or expire, or an outbox webhook, and since when
    it has been due (the index keeps whole seconds)."""

    kind: Literal["flow", "webhook"]
    key: str
    due_at: datetime


class NoticedFlow(NamedTuple):
    """The flow a portal processId names, and when a completion notice last made the relay poll
    it (None: never)."""

    flow: Flow
    noticed_at: datetime | None


class DeliveryStore(Protocol):
    def flow_for_process(self, process_id: str, *, now: datetime) -> NoticedFlow | None: ...

    def mark_noticed(self, process_id: str, *, at: datetime) -> None:
        """Record on the processId's pointer that a notice made the relay poll its flow at ``at``."""
        ...

    def get(self, flow_id: str, *, now: datetime) -> Flow | None: ...

    def update(
        self, before: Flow, after: Flow, *, audits: Sequence[AuditRecord] = (), delete_delivery: bool = False
    ) -> None: ...

    def due(self, *, now: datetime, limit: int) -> list[DueItem]:
        """Flows (retrieving: poll; ready: expiry) and webhooks whose ``due_at`` has come."""
        ...

    def finish(
        self,
        before: Flow,
        after: Flow,
        *,
        audits: list[AuditRecord],
        delivery: StoredDelivery | None = None,
        delete_delivery: bool = False,
        webhook: WebhookEvent | None = None,
    ) -> None:
        """One transaction: the flow (conditional on its version), its audit records, the delivery
        put (new) or deleted, and the webhook outbox entry. ``ConcurrentUpdate`` if another
        request moved the flow first."""
        ...

    def flow_for_pickup(self, flow_id: str, *, now: datetime) -> tuple[Flow | None, str | None]:
        """The flow (None if unknown or past its life) and its sealed payload (None if none or
        past its data life), read together."""
        ...

    def pick_up(
        self,
        before: Flow,
        after: Flow,
        *,
        audit: AuditRecord,
        now: datetime,
        replays: Sequence[ReplayEntry] = (),
    ) -> None:
        """Remember ``replays``, delete the (unexpired) delivery, move the flow and append the
        "provided" record in one transaction. A replayed entry raises its ``refusal`` (before
        anything else); exactly one of concurrent callers succeeds, the others get
        ``ConcurrentUpdate``. A refused transaction writes nothing."""
        ...

    def webhook(self, event_id: str) -> WebhookEvent | None: ...

    def webhook_attempted(
        self, event: WebhookEvent, *, delivered: bool, next_due_at: datetime | None
    ) -> None: ...


class WebhookSender(Protocol):
    def send(self, url: str, body: str, *, event_id: str) -> bool:
        """POST the signed event; True on a 2xx answer. Never raises for the partner's failures."""
        ...


def due_shard(flow_id: str) -> str:
    """Spread due items over a few GSI partitions so the poller's index never has one hot key."""
    return f"DUE#{int(hashlib.sha256(flow_id.encode()).hexdigest(), 16) % DUE_SHARDS}"


@dataclass(frozen=True)
class DeliveryConfig:
    issuer: str
    self_info_url: str
    poll_backoff_base: timedelta = timedelta(seconds=10)
    poll_backoff_max: timedelta = timedelta(seconds=60)
    webhook_backoff_base: timedelta = timedelta(seconds=30)
    webhook_max_attempts: int = 5
    retry_after_s: int = 5
    max_result_bytes: int = 2_000_000
    mapping: PortalMapping | None = None  # None: the shipped portal mapping


class DeliveryGone(RelayError):
    """410: picked up, expired, revoked or failed; the ``check`` says which."""

    code = "delivery-gone"
    category: ClassVar[ErrorCategory] = "gone"
    title = "The delivery is no longer available"


class DeliveryForbidden(RelayError):
    """403: the token does not belong to this delivery, or its partner is disabled."""

    code = "delivery-forbidden"
    category: ClassVar[ErrorCategory] = "forbidden"
    title = "This token cannot pick up this delivery"


@dataclass(frozen=True)
class Pending:
    retry_after_s: int


@dataclass(frozen=True)
class Picked:
    jwe: str

    def __repr__(self) -> str:
        return "Picked(<sealed>)"


class DeliveryService:
    def __init__(
        self,
        *,
        config: DeliveryConfig,
        store: DeliveryStore,
        partners: PartnerRegistry,
        portal: PortalGateway,
        envelope: Envelope,
        signer: Signer,
        event_signers: SignerSource,
        replay: ReplayStore,
        webhooks: WebhookSender,
        clock: Clock,
        metrics: MetricsSink | None = None,
    ) -> None:
        """``signer``: the KMS key, for sealed payloads only; ``event_signers``: the stage's
        hourly event keys, for webhook events only (never the one for the other)."""
        self.config = config
        self._store = store
        self._partners = partners
        self._portal = portal
        self._envelope = envelope
        self._signer = signer
        self._event_signers = event_signers
        self._replay = replay
        self._webhooks = webhooks
        self._clock = clock
        self._metrics = metrics

    # -- IF001-05: the completion notice is only a hint ----------------------------------------------

    def notice(self, process_id: str) -> dict[str, int]:
        """Poll the portal now for the retrieving flow a completion notice names: the poll the
        scheduled run would make, made at once, with the webhook it writes sent as that run sends
        it. The notice carries no authentication, so it is only a hint: nothing from it is used but
        the processId, and the result is fetched from the portal (mutual TLS, the flow's own token)
        as every poll fetches it. Outcomes are counted as ``process_due`` counts them; an empty
        dict when there was nothing to do (no such process, or its flow is no longer retrieving).

        Notices make at most one portal call per flow in ``poll_backoff_base`` (the poller's own
        shortest pause between two looks), however many arrive: a notice within that time of the
        last notice that polled does nothing (``deferred``); the scheduled run keeps its own
        schedule. A dependency failing in the poll (DynamoDB, KMS) leaves the flow due for the
        scheduled run, which tries again; a concurrent update means the scheduled run (or another
        notice) moved the flow first (``raced``). Neither is raised."""
        if not process_id or len(process_id) > 64:
            return {}
        now = self._clock.now()
        found = self._store.flow_for_process(process_id, now=now)
        if found is None or found.flow.status is not FlowStatus.RETRIEVING:
            return {}
        flow = found.flow
        if found.noticed_at is not None and now - found.noticed_at < self.config.poll_backoff_base:
            return {"deferred": 1}
        fresh: list[WebhookEvent] = []
        try:
            # One attempt: the notice is an API request (API Gateway gives up after 29 s; one
            # attempt is at most the connect and read timeouts); a failure here is left to the
            # scheduled run, whose polls retry as configured.
            outcome = self.poll(flow, fresh, portal_attempts=1)
        except ConcurrentUpdate:
            outcome = "raced"
        except RelayError as error:
            outcome = f"flow.{error.code}"
            # The flow stays due for the scheduled run, unless the poll moved it already.
            with contextlib.suppress(RelayError):  # ConcurrentUpdate included
                self._store.update(flow, flow.updated(now=now, next_due_at=now))
        if outcome != "ready" and not outcome.startswith("failed:"):
            # Still retrieving: the next notices wait (from the end of this poll), so that they
            # cannot make the relay call the portal again and again. Unrecorded (DynamoDB failing),
            # the next notice may poll once more.
            with contextlib.suppress(RelayError):
                self._store.mark_noticed(process_id, at=self._clock.now())
        outcomes = {outcome: 1}
        self._send_fresh(fresh, outcomes)
        return outcomes

    def _send_fresh(self, fresh: Sequence[WebhookEvent], outcomes: dict[str, int]) -> None:
        """Send the webhook events just committed to the outbox, counting each attempt's outcome.
        An event that cannot be signed or recorded stays in the outbox, due: the next run sends it."""
        for event in fresh:
            try:
                outcome = self._send_webhook(event, self._clock.now())
            except RelayError as error:
                outcome = f"webhook.{error.code}"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

    # -- the scheduled work: poll, expire, send webhooks ---------------------------------------------

    def process_due(self, *, limit: int = 25) -> dict[str, int]:
        """One scheduled run. A webhook event written by this run (with the state change that
        caused it) is also sent by this run, right after that change is committed; it stays in the
        outbox until sent, so a failed send or a crash leaves it due for the next run. Each run
        records once how late its most overdue item was (``poller_lag``)."""
        outcomes: dict[str, int] = {}

        def count(outcome: str) -> None:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

        now = self._clock.now()
        due = self._store.due(now=now, limit=limit)
        self._metric("poller_lag", _lag_ms(due, now), unit="Milliseconds")
        for kind, key, _ in due:
            fresh: list[WebhookEvent] = []
            try:
                outcome = self._deliver_webhook(key) if kind == "webhook" else self._advance(key, fresh)
            except RelayError as error:
                # One item whose dependency failed (a KMS Sign while sealing, a throttled write)
                # must not hold back the others: it stays due and is tried again at the next run.
                # A bug (anything else) still fails the run loudly.
                outcome = f"{kind}.{error.code}"
            count(outcome)
            self._send_fresh(fresh, outcomes)
        return outcomes

    def _advance(self, flow_id: str, fresh: list[WebhookEvent] | None = None) -> str:
        now = self._clock.now()
        flow = self._store.get(flow_id, now=now)
        if flow is None or flow.next_due_at is None or flow.next_due_at > now:
            return "skipped"
        try:
            if flow.status is FlowStatus.RETRIEVING:
                return self.poll(flow, fresh)
            if flow.status is FlowStatus.READY:
                return self._expire(flow, now, fresh)
            if flow.status in (FlowStatus.CREATED, FlowStatus.AT_PORTAL):
                return self._abandon(flow, now)
        except ConcurrentUpdate:
            return "raced"
        return "skipped"

    def poll(
        self, flow: Flow, fresh: list[WebhookEvent] | None = None, *, portal_attempts: int | None = None
    ) -> str:
        """One look at the portal for a retrieving flow (IF001-06). A webhook event this writes is
        appended to ``fresh`` once committed, for the caller to send straight away.
        ``portal_attempts`` caps the portal client's retries (None: as configured)."""
        now = self._clock.now()
        if flow.retrieval_deadline is not None and now >= flow.retrieval_deadline:
            return self._fail(flow, "retrieval.deadline", fresh)
        if flow.portal_process is None or flow.portal_token_ciphertext is None:
            return self._fail(flow, "retrieval.state_missing", fresh)
        try:
            # Decrypted only for this call; the plaintext token lives in this frame alone.
            token = self._envelope.decrypt(
                base64.b64decode(flow.portal_token_ciphertext), context={"flow_id": flow.flow_id}
            ).decode()
            process = PortalProcess(
                telegram_id=flow.portal_process.telegram_id,
                process_id=flow.portal_process.process_id,
                mode=flow.portal_process.mode,
            )
            result = self._portal.fetch_result(access_token=token, process=process, attempts=portal_attempts)
        except PortalUnavailable:
            return self._later(flow, now, "portal.unavailable")
        except PortalRejected as error:
            reason = f"portal.error_code.{error.error_code or error.http_status}"
            # An unknown code may only mean "not yet" (docs/mynaportal.md): ask again with the
            # poller's backoff, and fail naming it on the last look the deadline leaves.
            if error.definite or self._last_look(flow, now):
                return self._fail(flow, reason, fresh)
            return self._later(flow, now, "portal.error_code")
        except PortalError:
            return self._fail(flow, "portal.protocol_error", fresh)
        except RelayError:  # KMS unavailable: try again at the next poll
            return self._later(flow, now, "kms.unavailable")
        if isinstance(result, ResultPending):
            return self._later(flow, now, "pending")
        return self._seal(flow, result.self_personal_data, now, fresh)

    def _backoff(self, flow: Flow) -> timedelta:
        doubled: timedelta = self.config.poll_backoff_base * 2 ** min(flow.poll_attempts, 10)
        return min(doubled, self.config.poll_backoff_max)

    def _last_look(self, flow: Flow, now: datetime) -> bool:
        """Whether the next poll would come at or after the deadline (where it fails unasked)."""
        return flow.retrieval_deadline is not None and now + self._backoff(flow) >= flow.retrieval_deadline

    def _later(self, flow: Flow, now: datetime, outcome: str) -> str:
        delay = self._backoff(flow)
        if flow.retrieval_deadline is not None:
            delay = min(delay, max(flow.retrieval_deadline - now, timedelta(0)))
        self._store.update(
            flow, flow.updated(now=now, next_due_at=now + delay, poll_attempts=flow.poll_attempts + 1)
        )
        return outcome

    def _seal(
        self, flow: Flow, self_personal_data: str, now: datetime, fresh: list[WebhookEvent] | None = None
    ) -> str:
        partner = self._partner_or_none(flow.partner_id)
        if partner is not None and not partner.enabled:
            # disabled by the operator: nothing is sealed to its keys any more
            return self._fail(flow, "partner.disabled", fresh, partner=partner)
        purpose = partner.purpose(flow.purpose_id) if partner else None
        if partner is None or purpose is None:
            return self._fail(flow, "partner.unavailable", fresh, partner=partner)
        try:
            normalised = normalise(
                self_personal_data,
                dataset=flow.dataset,
                max_bytes=self.config.max_result_bytes,
                mapping=self.config.mapping,
            )
        except UnreadableResult as error:
            # For the operator: which dataset and which field of the mapping (or "dataset": none
            # recognised), never a value. The mapping, not the portal, is what to check first.
            self._metric("results_unreadable", 1, dataset=error.dataset, path=error.path)
            return self._fail(flow, "result.unreadable", fresh, partner=partner)
        except MalformedResult as error:
            reason = f"result.{(error.check or 'malformed').removeprefix('result.')}"
            return self._fail(flow, reason, fresh, partner=partner)
        released = release(normalised, purpose)
        expires_at = now + purpose.data_life
        sealed = seal(
            released.claims(),
            signer=self._signer,
            issuer=self.config.issuer,
            audience=partner.id,
            encryption_key=partner.jwks.encryption_keys()[0],
            purpose=purpose.id,
            interaction_id=flow.flow_id,
            issued_at=now,
            expires_at=expires_at,
        )
        if len(sealed.compact) > MAX_DELIVERY_BYTES:
            return self._fail(flow, "result.too_large", fresh, partner=partner)
        municipalities = tuple(released.providers)
        audits = [
            audit_record(
                flow,
                AuditEvent.RESULT_RECEIVED,
                at=now,
                outcome="received",
                municipalities=municipalities,
                counts=dict(normalised.dropped),
            ),
        ]
        if normalised.individual_numbers_removed:
            audits.append(
                audit_record(
                    flow,
                    AuditEvent.INDIVIDUAL_NUMBERS_REMOVED,
                    at=now,
                    outcome="removed",
                    counts={"individual_numbers": normalised.individual_numbers_removed},
                )
            )
        audits.append(
            audit_record(flow, AuditEvent.SEALED, at=now, outcome="sealed", municipalities=municipalities)
        )
        after = flow.moved_to(
            FlowStatus.READY,
            now=now,
            portal_token_ciphertext=None,  # the portal token is deleted once the result is in
            ready_at=now,
            delivery_expires_at=expires_at,
            next_due_at=expires_at,
        )
        event = self._webhook(partner, "delivery.ready", flow, now)
        self._store.finish(
            flow,
            after,
            audits=audits,
            delivery=StoredDelivery(flow.flow_id, partner.id, sealed.compact, expires_at),
            webhook=event,
        )
        _announce(event, fresh)
        self._metric("flows_completed", 1)
        self._metric("time_to_ready", (now - flow.created_at).total_seconds() * 1000, unit="Milliseconds")
        return "ready"

    def _metric(self, name: str, value: float, *, unit: str = "Count", **dimensions: str) -> None:
        if self._metrics is not None:
            self._metrics(name, value, unit=unit, **dimensions)

    def _fail(
        self,
        flow: Flow,
        reason: str,
        fresh: list[WebhookEvent] | None = None,
        *,
        partner: Partner | Unread | None = UNREAD,
    ) -> str:
        """End the flow ``failed``; ``partner`` if this request has read it already."""
        now = self._clock.now()
        if isinstance(partner, Unread):
            partner = self._partner_or_none(flow.partner_id)
        after = flow.moved_to(
            FlowStatus.FAILED, now=now, failure_reason=reason, portal_token_ciphertext=None, next_due_at=None
        )
        event = self._webhook(
            partner, "delivery.failed", flow, now, reason=PARTNER_FAILURE_REASONS.get(reason)
        )
        self._store.finish(
            flow,
            after,
            audits=[audit_record(flow, AuditEvent.FAILED, at=now, outcome=reason)],
            webhook=event,
        )
        _announce(event, fresh)
        self._metric("flows_failed", 1, reason=reason)
        return f"failed:{reason}"

    def _expire(self, flow: Flow, now: datetime, fresh: list[WebhookEvent] | None = None) -> str:
        partner = self._partner_or_none(flow.partner_id)
        after = flow.moved_to(
            FlowStatus.EXPIRED, now=now, failure_reason="delivery.expired", next_due_at=None
        )
        event = self._webhook(partner, "delivery.expired", flow, now)
        self._store.finish(
            flow,
            after,
            audits=[audit_record(flow, AuditEvent.EXPIRED, at=now, outcome="expired")],
            delete_delivery=True,
            webhook=event,
        )
        _announce(event, fresh)
        return "expired"

    def _abandon(self, flow: Flow, now: datetime) -> str:
        """End a flow whose resident never decided, or never came back from the portal, once
        nothing can move it on (its request_uri or portal state is dead): so that every flow ends
        with a record saying how. The partner learns nothing new (no redirect ever came; no
        webhook: no delivery was ever promised), nothing was retrieved."""
        reason = "request_uri.expired" if flow.status is FlowStatus.CREATED else "portal_state.expired"
        self._store.finish(
            flow,
            flow.moved_to(FlowStatus.EXPIRED, now=now, failure_reason=reason),
            audits=[audit_record(flow, AuditEvent.ABANDONED, at=now, outcome=reason)],
        )
        self._metric("flows_abandoned", 1, reason=reason)
        return f"abandoned:{reason}"

    def _partner_or_none(self, partner_id: str) -> Partner | None:
        try:
            return self._partners.get(partner_id).partner
        except PartnerNotFound:
            return None

    # -- webhooks --------------------------------------------------------------------------------

    def _webhook(
        self,
        partner: Partner | None,
        kind: WebhookType,
        flow: Flow,
        now: datetime,
        *,
        reason: str | None = None,
    ) -> WebhookEvent | None:
        """The outbox event for a change, if the partner is there, enabled and has a webhook."""
        url = webhook_url_of(partner)
        if partner is None or url is None:
            return None
        return WebhookEvent(
            event_id=new_secret(16),
            partner_id=partner.id,
            url=url,
            type=kind,
            delivery_id=flow.flow_id,
            occurred_at=now,
            next_due_at=now,
            reason=reason,
        )

    def _deliver_webhook(self, event_id: str) -> str:
        """A retry from the outbox, to the partner's webhook as registered now: a partner disabled,
        removed or without a webhook since gets nothing more (the event is dropped, recorded as
        abandoned); a webhook URL changed since is where the event goes."""
        event = self._store.webhook(event_id)
        now = self._clock.now()
        if event is None or event.next_due_at > now:
            return "skipped"
        url = webhook_url_of(self._partner_or_none(event.partner_id))
        if url is None:
            self._store.webhook_attempted(event, delivered=False, next_due_at=None)
            self._metric("webhooks_dropped", 1)
            return "webhook.dropped"
        return self._send_webhook(replace(event, url=url), now)

    def _send_webhook(self, event: WebhookEvent, now: datetime) -> str:
        """One signed attempt at an outbox event, recorded (delivered, retry later or abandoned)."""
        body = sign_jwt(
            {
                "iss": self.config.issuer,
                "aud": event.partner_id,
                "iat": int(now.timestamp()),
                "jti": event.event_id,
                "event": {
                    "id": event.event_id,
                    "type": event.type,
                    "delivery_id": event.delivery_id,
                    "occurred_at": event.occurred_at.isoformat(),
                    **({"reason": event.reason} if event.reason else {}),
                },
            },
            signer=self._event_signers.current(),
            typ="myna-relay-event+jwt",
        )
        delivered = self._webhooks.send(event.url, body, event_id=event.event_id)
        attempts = event.attempts + 1
        next_due = None
        if not delivered and attempts < self.config.webhook_max_attempts:
            next_due = now + self.config.webhook_backoff_base * 2 ** (attempts - 1)
        self._store.webhook_attempted(
            replace(event, attempts=attempts), delivered=delivered, next_due_at=next_due
        )
        if delivered:
            self._metric("webhooks_delivered", 1)
            return "webhook.delivered"
        outcome: Literal["retry", "abandoned"] = "retry" if next_due else "abandoned"
        self._metric("webhooks_failed", 1, outcome=outcome)
        return f"webhook.{outcome}"

    # -- pickup (GET /v1/self-info) --------------------------------------------------------------------

    def pick_up(
        self, *, authorization: str | None, dpop_proof: str | None, delivery_id: str | None
    ) -> Pending | Picked:
        now = self._clock.now()
        # RFC 9449 section 7.1; the scheme is case-insensitive and 1*SP may follow it (RFC 9110 11.1, 11.4)
        token = credentials(authorization, "DPoP")
        if token is None:
            raise InvalidToken(
                "a DPoP-bound access token is required (Authorization: DPoP <token>)", check="authorization"
            )
        # The token names its flow: one read brings the flow, its token's fingerprint and the
        # sealed payload.
        flow_id = flow_id_of(token)
        flow, jwe = self._store.flow_for_pickup(flow_id, now=now) if flow_id else (None, None)
        if flow is None or flow.dpop_jkt is None or not flow.holds_token(token, now=now):
            raise InvalidToken("the access token is unknown, expired or revoked", check="access_token")
        proof = verify_dpop_proof(
            dpop_proof,
            method="GET",
            url=self.config.self_info_url,
            now=now,
            access_token=token,
            expected_jkt=flow.dpop_jkt,
        )
        if delivery_id is not None and delivery_id != flow.flow_id:
            raise DeliveryForbidden("the token was issued for another delivery", check="delivery_id")
        try:
            self._partners.get_enabled(flow.partner_id)
        except (PartnerNotFound, PartnerDisabled):
            raise DeliveryForbidden("the partner is disabled", check="client_id") from None
        # The proof's jti is spent by every pickup that got this far, and a replay is refused
        # before anything else. The handover writes it in its own transaction; every other
        # outcome (pending, gone, expired, lost to a concurrent pickup) remembers it on its own
        # first, so a replayed proof is refused as such and changes nothing.
        proof_jti = ReplayEntry(
            f"dpop:{proof.jkt}",
            fingerprint(proof.jti),
            until=proof.issued_at + MAX_AGE + MAX_FUTURE,
            at=now,
            refusal=InvalidDpopProof("DPoP proof jti already used", check="dpop.jti"),
        )
        if flow.status is not FlowStatus.READY:
            spend(self._replay, [proof_jti])
        if flow.status in (FlowStatus.AT_PORTAL, FlowStatus.RETRIEVING):
            return Pending(self.config.retry_after_s)
        if flow.status is FlowStatus.FAILED and flow.failure_reason in PARTNER_FAILURE_REASONS:
            named = PARTNER_FAILURE_REASONS[flow.failure_reason]
            raise DeliveryGone(f"the delivery failed: {named}", check=f"delivery.{named}")
        if flow.status is not FlowStatus.READY:
            raise DeliveryGone(f"the delivery is {flow.status.value}", check=f"delivery.{flow.status.value}")
        # The handover happens once the flow is seen ready, not when the request arrived: a seal
        # committed while this request was being checked must not be recorded after the pickup.
        now = max(self._clock.now(), flow.updated_at)
        if flow.delivery_expires_at is not None and now >= flow.delivery_expires_at:
            spend(self._replay, [proof_jti])
            with contextlib.suppress(ConcurrentUpdate):
                self._expire(flow, now)
            raise DeliveryGone("the delivery's data life has ended", check="delivery.expired")
        after = flow.moved_to(FlowStatus.PICKED_UP, now=now, next_due_at=None)
        audit = audit_record(flow, AuditEvent.PICKED_UP, at=now, outcome="provided", provided_at=now)
        try:
            if jwe is None:  # read with the flow: already deleted by a concurrent pickup
                raise ConcurrentUpdate("the delivery is gone", check="delivery")
            self._store.pick_up(flow, after, audit=audit, now=now, replays=[proof_jti])
            return Picked(jwe)
        except ConcurrentUpdate:
            spend(self._replay, [proof_jti])  # nothing was written: the proof is spent on its own
            raise DeliveryGone("the delivery was picked up", check="delivery.picked_up") from None


def _lag_ms(due: Sequence[DueItem], now: datetime) -> float:
    """How late the most overdue item of a scheduled run is (0 when nothing is due): what an
    alarm on a poller that stopped running, or cannot keep up, watches."""
    oldest = min((item.due_at for item in due), default=now)
    return max((now - oldest).total_seconds() * 1000, 0.0)


def _announce(event: WebhookEvent | None, fresh: list[WebhookEvent] | None) -> None:
    """After the transaction that wrote ``event`` to the outbox is committed: hand it to the
    scheduled run to send straight away (the outbox entry stays until the send is recorded)."""
    if event is not None and fresh is not None:
        fresh.append(event)
