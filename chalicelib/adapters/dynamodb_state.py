"""Short-lived flow state in DynamoDB (the ``state`` table): flows, single-use pointers, access
tokens and the ``jti`` replay store. See docs/data-model.md for the item layout.

Secrets (request_uri, portal state, codes, tokens, jti) arrive here already fingerprinted; nothing
stored can be replayed. Every read enforces ``expires_at`` in code: DynamoDB TTL is only the
garbage collector (lazy in AWS, never run by moto). Condition expressions are built from named
parts; ``ConditionalCheckFailed`` and cancelled transactions become domain errors right here.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.aws import error_code, unavailable
from chalicelib.adapters.dynamodb_audit import index_attributes
from chalicelib.domain.audit import AuditRecord
from chalicelib.domain.delivery import (
    DUE_SHARDS,
    DueItem,
    NoticedFlow,
    StoredDelivery,
    WebhookEvent,
    due_shard,
)
from chalicelib.domain.errors import ConcurrentUpdate, DependencyUnavailable
from chalicelib.domain.flow import BrowserBindingMismatch, Flow
from chalicelib.domain.oauth.replay import ReplayEntry

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

ITEM_IS_NEW = "attribute_not_exists(pk)"
ITEM_EXISTS = "attribute_exists(pk)"
NOT_EXPIRED = "expires_at > :now"
VERSION_UNCHANGED = "attribute_exists(pk) AND version = :expected"
JTI_FREE = "attribute_not_exists(pk) OR expires_at <= :now"
NOT_USED = "attribute_not_exists(used_by)"

# The flow's item stays under 1 KB (one write unit; two in a transaction): its document names
# fields by these short keys (never reuse one), times are integer microseconds since the epoch,
# fields at their default are left out, and what the item carries as attributes of its own
# (id, partner, status, version, the portal state) is not repeated in it.
FLOW_KEYS: dict[str, str] = {
    "partner_name": "pn",
    "resident_pseudonym": "rp",
    "purpose_id": "pu",
    "dataset": "ds",
    "scope": "sc",
    "redirect_uri": "ru",
    "partner_state": "st",
    "code_challenge": "cc",
    "created_at": "ca",
    "updated_at": "ua",
    "expires_at": "ea",
    "portal_client_id": "pc",
    "portal_process": "pp",
    "portal_token_ciphertext": "pt",
    "request_uri_hash": "rh",
    "request_uri_expires_at": "re",
    "csrf_hash": "xh",
    "code_hash": "ch",
    "code_expires_at": "ce",
    "code_redeemed": "cr",
    "access_token_hash": "th",
    "token_expires_at": "te",
    "dpop_jkt": "jk",
    "ui_locale": "ul",
    "retrieval_deadline": "rd",
    "failure_reason": "fr",
    "next_due_at": "nd",
    "poll_attempts": "pa",
    "ready_at": "ra",
    "delivery_expires_at": "de",
}
_FIELD_OF = {short: name for name, short in FLOW_KEYS.items()}
# Flow fields stored as attributes of the item rather than in its document.
_OWN_ATTRIBUTES = {
    "flow_id",
    "partner_id",
    "status",
    "version",
    "portal_state_hash",
    "browser_binding_hash",
    "portal_state_expires_at",
}
_TIMES = {name for name, info in Flow.model_fields.items() if "datetime" in str(info.annotation)}


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_flow(flow: Flow) -> str:
    """The flow's stored document (see ``FLOW_KEYS``)."""
    fields = flow.model_dump(mode="python", exclude_defaults=True, exclude=_OWN_ATTRIBUTES)
    document = {
        FLOW_KEYS[name]: _micros(value) if isinstance(value, datetime) else value
        for name, value in fields.items()
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def flow_of_item(item: Mapping[str, Any]) -> Flow:
    """The flow a state-table item holds."""
    document = json.loads(item["document"]["S"])
    fields: dict[str, Any] = {
        _FIELD_OF[short]: (_EPOCH + timedelta(microseconds=value) if _FIELD_OF[short] in _TIMES else value)
        for short, value in document.items()
    }
    fields.update(
        flow_id=item["pk"]["S"].removeprefix("FLOW#"),
        partner_id=item["partner_id"]["S"],
        status=item["status"]["S"],
        version=int(item["version"]["N"]),
    )
    if "pstate" in item:
        fields.update(
            portal_state_hash=item["pstate"]["S"],
            browser_binding_hash=item["pbind"]["S"] or None,
            portal_state_expires_at=datetime.fromtimestamp(int(item["pstate_exp"]["N"]), UTC),
        )
    return Flow.model_validate(fields)


PORTAL_STATE_SPENDABLE = (
    "attribute_exists(pk) AND #status = :at_portal AND expires_at > :now AND pstate = :state"
    " AND pstate_exp > :now AND attribute_not_exists(state_used_by)"
)

# Flows outlive their last step by this much, so that a late or replayed request still finds
# the flow (and is refused by its state) rather than nothing.
FLOW_MARGIN_S = 3600


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": _s(pk), "sk": _s(sk)}


def audit_sort_key(occurred: datetime, position: int, record_id: str) -> str:
    """Fixed-width UTC time first, so keys sort in the order records happened (isoformat() would
    drop zero microseconds and break lexicographic order)."""
    return f"{occurred.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ}#{position:02d}#{record_id}"


def flow_key(flow_id: str) -> dict[str, Any]:
    return _key(f"FLOW#{flow_id}", "FLOW")


def _failed_conditions(exc: ClientError) -> set[int]:
    """The positions of the items whose condition cancelled a transaction: someone else moved
    first. DynamoDB also cancels for throttling (``ThrottlingError``,
    ``ProvisionedThroughputExceeded``) or a conflicting transaction in flight
    (``TransactionConflict``); those changed nothing and are worth retrying, so they must not read
    as a lost race (a "replayed" code, a "picked up" delivery). DynamoDB lists one reason per item,
    in order (``None`` for an item that was not the cause)."""
    if error_code(exc) != "TransactionCanceledException":
        return set()
    reasons = exc.response.get("CancellationReasons", [])
    return {i for i, reason in enumerate(reasons) if reason.get("Code") == "ConditionalCheckFailed"}


def _jti_item(namespace: str, value: str, *, until: datetime, now: datetime) -> dict[str, Any]:
    return {
        **_key(f"JTI#{namespace}#{value}", "JTI"),
        "expires_at": _n(max(epoch(until), epoch(now)) + 1),
    }


def _replay_conflicts(replays: Sequence[ReplayEntry]) -> dict[int, Exception]:
    """Each replay item's refusal, by its position: the replay items lead their transaction."""
    return {i: entry.refusal for i, entry in enumerate(replays)}


class DynamoStateStore:
    """Implements ``FlowStore``, ``DeliveryStore`` and ``ReplayStore`` on the state table, and
    appends audit records to the audit table inside the same transactions."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        audit_table: str,
        audit_retention: timedelta = timedelta(days=7 * 365),
    ) -> None:
        self._client = client
        self._table = table_name
        self._audit_table = audit_table
        self._audit_retention = audit_retention

    # -- flows ------------------------------------------------------------------------------------

    def _flow_item(self, flow: Flow) -> dict[str, Any]:
        item = {
            **flow_key(flow.flow_id),
            "document": _s(encode_flow(flow)),
            "status": _s(flow.status.value),
            "version": _n(flow.version),
            "partner_id": _s(flow.partner_id),
            "expires_at": _n(epoch(flow.expires_at)),
        }
        if flow.portal_state_hash is not None and flow.portal_state_expires_at is not None:
            item["pstate"] = _s(flow.portal_state_hash)
            item["pbind"] = _s(flow.browser_binding_hash or "")
            item["pstate_exp"] = _n(epoch(flow.portal_state_expires_at))
        if flow.next_due_at is not None and not flow.is_terminal:
            # Sparse GSI by_due: only flows the scheduled run must come back to carry these (every
            # flow that has not ended: to poll, to expire its delivery, or to end it as abandoned).
            item["due_shard"] = _s(due_shard(flow.flow_id))
            item["due_at"] = _n(epoch(flow.next_due_at))
        return item

    @staticmethod
    def _flow_of(item: Mapping[str, Any]) -> Flow:
        return flow_of_item(item)

    def _put_flow(
        self, after: Flow, before: Flow | None, *, unspent_portal_state: bool = False
    ) -> dict[str, Any]:
        if before is None:
            return {
                "Put": {
                    "TableName": self._table,
                    "Item": self._flow_item(after),
                    "ConditionExpression": ITEM_IS_NEW,
                }
            }
        return {
            "Put": {
                "TableName": self._table,
                "Item": self._flow_item(after),
                # unspent_portal_state: no callback that brought the state is using it meanwhile
                # (it marks the item without changing the version, see consume_portal_state)
                "ConditionExpression": VERSION_UNCHANGED
                + (" AND attribute_not_exists(state_used_by)" if unspent_portal_state else ""),
                "ExpressionAttributeValues": {":expected": _n(before.version)},
            }
        }

    def _pointer(
        self, pk: str, flow_id: str, expires_at: datetime, **extra: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table,
                "Item": {
                    **_key(pk, "PTR"),
                    "flow_id": _s(flow_id),
                    "expires_at": _n(epoch(expires_at)),
                    **extra,
                },
                "ConditionExpression": ITEM_IS_NEW,
            }
        }

    def _transact(
        self,
        items: list[dict[str, Any]],
        *,
        on_conflict: Exception,
        item_conflicts: Mapping[int, Exception] | None = None,
    ) -> None:
        """One transaction. A failed condition raises ``on_conflict``, or the exception
        ``item_conflicts`` names for a failed item when a caller must tell its items' conflicts
        apart (a replayed jti is not a used code, and a used code is not a flow that merely moved
        on). When several named items failed, the mapping's order is the precedence: the first
        of its entries whose item failed is raised.

        botocore gives the call a ``ClientRequestToken`` and keeps it across its own retries, so
        a transaction whose answer was lost is not applied twice, nor refused by its own effect:
        DynamoDB answers the retry with the first attempt's success (for 10 minutes)."""
        try:
            self._client.transact_write_items(TransactItems=cast("list[TransactWriteItemTypeDef]", items))
        except ClientError as exc:
            failed = _failed_conditions(exc)
            named = [refusal for i, refusal in (item_conflicts or {}).items() if i in failed]
            if named:
                raise named[0] from None
            if error_code(exc) == "ConditionalCheckFailedException" or failed:
                raise on_conflict from None
            raise unavailable("dynamodb", "TransactWriteItems", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("dynamodb", "TransactWriteItems", exc) from exc

    def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            item = self._client.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("dynamodb", "GetItem", exc) from exc
        return dict(item) if item is not None else None

    def create(
        self,
        flow: Flow,
        *,
        audits: Sequence[AuditRecord] = (),
        replays: Sequence[ReplayEntry] = (),
    ) -> None:
        self._transact(
            [
                *(self._replay_put(entry) for entry in replays),
                self._put_flow(flow, None),
                *(self._audit_put(audit, i) for i, audit in enumerate(audits)),
            ],
            on_conflict=ConcurrentUpdate("the flow already exists", check="flow_id"),
            item_conflicts=_replay_conflicts(replays),
        )

    def get(self, flow_id: str, *, now: datetime) -> Flow | None:
        item = self._get(flow_key(flow_id))
        if item is None or int(item["expires_at"]["N"]) <= epoch(now):
            return None
        return self._flow_of(item)

    def update(
        self,
        before: Flow,
        after: Flow,
        *,
        audits: Sequence[AuditRecord] = (),
        delete_delivery: bool = False,
        unspent_portal_state: bool = False,
    ) -> None:
        if audits or delete_delivery:
            deletes = (
                [
                    {
                        "Delete": {
                            "TableName": self._table,
                            "Key": _key(f"DELIVERY#{before.flow_id}", "DELIVERY"),
                        }
                    }
                ]
                if delete_delivery
                else []
            )
            self._transact(
                [
                    self._put_flow(after, before, unspent_portal_state=unspent_portal_state),
                    *(self._audit_put(audit, i) for i, audit in enumerate(audits)),
                    *deletes,
                ],
                on_conflict=ConcurrentUpdate("the flow changed since it was read", check="flow.version"),
            )
            return
        put = self._put_flow(after, before, unspent_portal_state=unspent_portal_state)["Put"]
        try:
            self._client.put_item(**put)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise ConcurrentUpdate("the flow changed since it was read", check="flow.version") from None
            raise unavailable("dynamodb", "PutItem", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("dynamodb", "PutItem", exc) from exc

    def consume_portal_state(
        self, flow_id: str, *, portal_state_hash: str, browser_binding_hash: str, now: datetime
    ) -> Flow | None:
        """Mark the state used on the flow's item (the version stays: the step's transaction that
        follows is conditional on it) rather than clear it: a cleared state could not tell a
        retried call its own earlier attempt from a concurrent callback. Only the browser that
        left for the portal can spend it: its binding cookie's fingerprint must match (RFC 9700
        section 4.7.1); otherwise ``BrowserBindingMismatch`` and nothing changes. One
        ``UpdateItem``: the flow comes back with the answer."""
        key = flow_key(flow_id)
        marker = secrets.token_hex(8)
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="SET state_used_by = :marker",
                ConditionExpression=f"{PORTAL_STATE_SPENDABLE} AND pbind = :binding",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":now": _n(epoch(now)),
                    ":marker": _s(marker),
                    ":state": _s(portal_state_hash),
                    ":binding": _s(browser_binding_hash),
                    ":at_portal": _s("at_portal"),
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            item: dict[str, Any] | None = dict(answer.get("Attributes", {}))
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise unavailable("dynamodb", "UpdateItem", exc) from exc
            item = self._own_write(key, marker, exc, attribute="state_used_by")
            if item is None:
                # ReturnValuesOnConditionCheckFailure=ALL_OLD: the item as the condition found it
                found = cast("dict[str, Any]", exc.response.get("Item") or {})
                if (
                    found
                    and found.get("status", {}).get("S") == "at_portal"
                    and found.get("pstate", {}).get("S") == portal_state_hash
                    and "state_used_by" not in found
                    and int(found["pstate_exp"]["N"]) > epoch(now)
                    and int(found["expires_at"]["N"]) > epoch(now)
                    and found.get("pbind", {}).get("S") != browser_binding_hash
                ):
                    raise BrowserBindingMismatch(
                        "the callback was opened in another browser than the one that left for the portal",
                        check="browser_binding",
                    ) from None
        except BotoCoreError as exc:
            raise unavailable("dynamodb", "UpdateItem", exc) from exc
        return self._flow_of(item) if item else None

    def _own_write(
        self, key: dict[str, Any], marker: str, exc: ClientError, *, attribute: str = "used_by"
    ) -> dict[str, Any] | None:
        """After a failed condition, the item if the write that failed it was this call's own.

        botocore retries a write whose answer was lost (a 5xx or a timeout, after which DynamoDB
        may have applied it); the retry then fails on that earlier attempt's effect. Only a
        retried call can meet itself, and only its own random marker on the item proves it."""
        if not exc.response.get("ResponseMetadata", {}).get("RetryAttempts"):
            return None
        item = self._get(key)
        return item if item is not None and item.get(attribute, {}).get("S") == marker else None

    def start_retrieval(
        self, before: Flow, after: Flow, *, process_id: str, audits: Sequence[AuditRecord] = ()
    ) -> None:
        self._transact(
            [
                *(self._audit_put(audit, i) for i, audit in enumerate(audits)),
                self._put_flow(after, before),
                # the portal chooses the processId its notice carries: the one pointer left
                self._pointer(f"PROC#{process_id}", after.flow_id, after.expires_at),
            ],
            on_conflict=ConcurrentUpdate("the flow changed since it was read", check="flow.version"),
        )

    # -- codes ------------------------------------------------------------------------------------

    def redeem_code(self, before: Flow, after: Flow, *, replays: Sequence[ReplayEntry] = ()) -> None:
        self._transact(
            [*(self._replay_put(entry) for entry in replays), self._put_flow(after, before)],
            # another redemption won, or a scheduled run moved the flow on (a poll, the seal): the
            # caller reads the flow again and tells which
            on_conflict=ConcurrentUpdate("the flow changed since it was read", check="flow.version"),
            # a replayed jti first: the request is refused as a replay, whatever else it met
            item_conflicts=_replay_conflicts(replays),
        )

    # -- replay store -------------------------------------------------------------------------------

    def _replay_put(self, entry: ReplayEntry) -> dict[str, Any]:
        """A jti as one item of a step's transaction: the same item and condition as
        ``remember``'s put, without the marker (the transaction's ClientRequestToken already keeps
        a retried transaction from meeting its own write)."""
        return {
            "Put": {
                "TableName": self._table,
                "Item": _jti_item(entry.namespace, entry.value, until=entry.until, now=entry.at),
                "ConditionExpression": JTI_FREE,
                "ExpressionAttributeValues": {":now": _n(epoch(entry.at))},
            }
        }

    def remember(self, namespace: str, value: str, *, until: datetime, now: datetime) -> bool:
        """One conditional put, for the steps that have no transaction to put it in: True the
        first time ``value`` is seen in ``namespace`` before it expires, False on a replay.
        ``value`` is fingerprinted by the caller."""
        item = _jti_item(namespace, value, until=until, now=now)
        key = _key(item["pk"]["S"], item["sk"]["S"])
        marker = secrets.token_hex(8)
        try:
            self._client.put_item(
                TableName=self._table,
                Item={**item, "used_by": _s(marker)},
                ConditionExpression=JTI_FREE,
                ExpressionAttributeValues={":now": _n(epoch(now))},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return self._own_write(key, marker, exc) is not None
            raise unavailable("dynamodb", "PutItem", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("dynamodb", "PutItem", exc) from exc
        return True

    # -- retrieval, delivery, expiry --------------------------------------------------------------

    def flow_for_process(self, process_id: str, *, now: datetime) -> NoticedFlow | None:
        pointer = self._get(_key(f"PROC#{process_id}", "PTR"))
        if pointer is None or int(pointer["expires_at"]["N"]) <= epoch(now):
            return None
        flow = self.get(pointer["flow_id"]["S"], now=now)
        if flow is None:
            return None
        noticed = pointer.get("noticed_at")
        return NoticedFlow(flow, datetime.fromtimestamp(int(noticed["N"]), UTC) if noticed else None)

    def mark_noticed(self, process_id: str, *, at: datetime) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(f"PROC#{process_id}", "PTR"),
                UpdateExpression="SET noticed_at = :at",
                ConditionExpression=ITEM_EXISTS,
                # whole seconds, rounded up: the quiet period a notice waits is never cut short
                ExpressionAttributeValues={":at": _n(math.ceil(at.timestamp()))},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return  # the pointer is gone (collected after the flow's life): nothing to mark
            raise unavailable("dynamodb", "UpdateItem", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("dynamodb", "UpdateItem", exc) from exc

    def due(self, *, now: datetime, limit: int) -> list[DueItem]:
        found: list[DueItem] = []
        for shard in range(DUE_SHARDS):
            try:
                answer = self._client.query(
                    TableName=self._table,
                    IndexName="by_due",
                    KeyConditionExpression="due_shard = :shard AND due_at <= :now",
                    ExpressionAttributeValues={":shard": _s(f"DUE#{shard}"), ":now": _n(epoch(now))},
                    Limit=limit,
                )
            except (ClientError, BotoCoreError) as exc:
                raise unavailable("dynamodb", "Query", exc) from exc
            for item in answer.get("Items", []):
                pk = item["pk"]["S"]
                # KEYS_ONLY still projects the index's own keys: due_at comes with every item.
                due_at = datetime.fromtimestamp(int(item["due_at"]["N"]), UTC)
                if pk.startswith("FLOW#"):
                    found.append(DueItem("flow", pk.removeprefix("FLOW#"), due_at))
                elif pk.startswith("WEBHOOK#"):
                    found.append(DueItem("webhook", pk.removeprefix("WEBHOOK#"), due_at))
        # Most overdue first across the shards: cutting in shard order would starve the later
        # shards whenever the first ones hold ``limit`` items.
        return sorted(found, key=lambda item: item.due_at)[:limit]

    def live_flows(self, *, now: datetime, page_size: int = 100) -> Iterator[Flow]:
        """Every flow that has not ended, for an operator's sweep (``partners purge-deliveries``):
        each one carries the due attributes, so the ``by_due`` index lists them all. Each shard is
        queried page by page (``Limit``), the flows' items read by key (consistent
        ``BatchGetItem``, 100 a call); outbox items and expired flows are passed over. Costs
        O(live flows of every partner): the index's keys, then about one read unit a flow."""
        for shard in range(DUE_SHARDS):
            start: dict[str, Any] | None = None
            while True:
                query: dict[str, Any] = {
                    "TableName": self._table,
                    "IndexName": "by_due",
                    "KeyConditionExpression": "due_shard = :shard",
                    "ExpressionAttributeValues": {":shard": _s(f"DUE#{shard}")},
                    "Limit": page_size,
                }
                if start is not None:
                    query["ExclusiveStartKey"] = start
                try:
                    answer = self._client.query(**query)
                except (ClientError, BotoCoreError) as exc:
                    raise unavailable("dynamodb", "Query", exc) from exc
                keys = [
                    flow_key(item["pk"]["S"].removeprefix("FLOW#"))
                    for item in answer.get("Items", [])
                    if item["pk"]["S"].startswith("FLOW#")
                ]
                for item in self._batch_get(keys):
                    if item.get("sk", {}).get("S") == "FLOW" and int(item["expires_at"]["N"]) > epoch(now):
                        yield self._flow_of(item)
                start = answer.get("LastEvaluatedKey")
                if not start:
                    break

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for first in range(0, len(keys), 100):
            request: dict[str, Any] = {
                self._table: {"Keys": keys[first : first + 100], "ConsistentRead": True}
            }
            try:
                for _ in range(5):
                    answer = self._client.batch_get_item(RequestItems=request)
                    found.extend(answer.get("Responses", {}).get(self._table, []))
                    request = cast("dict[str, Any]", answer.get("UnprocessedKeys") or {})
                    if not request:
                        break
                else:
                    raise DependencyUnavailable(
                        "dynamodb BatchGetItem failed: keys left unprocessed", check="dynamodb"
                    )
            except (ClientError, BotoCoreError) as exc:
                raise unavailable("dynamodb", "BatchGetItem", exc) from exc
        return found

    def _audit_put(self, record: AuditRecord, position: int = 0) -> dict[str, Any]:
        occurred = record.occurred_at
        # Records written together share a time; their position keeps the order they happened in.
        sort_key = audit_sort_key(occurred, position, record.record_id)
        document = record.model_dump_json()
        return {
            "Put": {
                "TableName": self._audit_table,
                "Item": {
                    "pk": _s(f"FLOW#{record.interaction_id}"),
                    "sk": _s(sort_key),
                    **index_attributes(
                        record_id=record.record_id,
                        requester_id=record.requester_id,
                        occurred_at=occurred,
                        document=document,
                    ),
                    "event": _s(record.event.value),
                    "document": _s(document),
                    "retain_until": _n(epoch(occurred + self._audit_retention)),
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def append_audit(self, record: AuditRecord) -> None:
        put = self._audit_put(record)["Put"]
        try:
            self._client.put_item(**put)
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("dynamodb", "PutItem", exc) from exc

    def _webhook_put(self, event: WebhookEvent) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table,
                "Item": self._webhook_item(event),
                "ConditionExpression": ITEM_IS_NEW,
            }
        }

    def _webhook_item(self, event: WebhookEvent) -> dict[str, Any]:
        return {
            **_key(f"WEBHOOK#{event.event_id}", "WEBHOOK"),
            "partner_id": _s(event.partner_id),
            "url": _s(event.url),
            "type": _s(event.type),
            "delivery_id": _s(event.delivery_id),
            "occurred_at": _n(epoch(event.occurred_at)),
            "attempts": _n(event.attempts),
            "due_shard": _s(due_shard(event.event_id)),
            "due_at": _n(epoch(event.next_due_at)),
            "expires_at": _n(epoch(event.occurred_at) + 86_400),
            **({"reason": _s(event.reason)} if event.reason else {}),
        }

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
        items: list[dict[str, Any]] = [
            self._put_flow(after, before),
            *(self._audit_put(a, i) for i, a in enumerate(audits)),
        ]
        if delivery is not None:
            items.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {
                            **_key(f"DELIVERY#{delivery.flow_id}", "DELIVERY"),
                            "partner_id": _s(delivery.partner_id),
                            "jwe": _s(delivery.jwe),
                            "delivery_expires_at": _n(epoch(delivery.expires_at)),
                            "expires_at": _n(epoch(delivery.expires_at)),
                        },
                        "ConditionExpression": ITEM_IS_NEW,
                    }
                }
            )
        if delete_delivery:
            items.append(
                {"Delete": {"TableName": self._table, "Key": _key(f"DELIVERY#{before.flow_id}", "DELIVERY")}}
            )
        if webhook is not None:
            items.append(self._webhook_put(webhook))
        self._transact(
            items, on_conflict=ConcurrentUpdate("the flow changed since it was read", check="flow.version")
        )

    def flow_for_pickup(self, flow_id: str, *, now: datetime) -> tuple[Flow | None, str | None]:
        """The flow and its sealed payload (None if none, or past its data life), in one
        consistent ``BatchGetItem``. The payload item is written once and never replaced, so the
        one read here is the one ``pick_up`` deletes if its condition holds."""
        found = self._batch_get([flow_key(flow_id), _key(f"DELIVERY#{flow_id}", "DELIVERY")])
        flow_item = next((item for item in found if item["sk"]["S"] == "FLOW"), None)
        delivery = next((item for item in found if item["sk"]["S"] == "DELIVERY"), None)
        flow = (
            self._flow_of(flow_item)
            if flow_item is not None and int(flow_item["expires_at"]["N"]) > epoch(now)
            else None
        )
        if delivery is None or int(delivery["delivery_expires_at"]["N"]) <= epoch(now):
            return flow, None
        return flow, str(delivery["jwe"]["S"])

    def pick_up(
        self,
        before: Flow,
        after: Flow,
        *,
        audit: AuditRecord,
        now: datetime,
        replays: Sequence[ReplayEntry] = (),
    ) -> None:
        self._transact(
            [
                *(self._replay_put(entry) for entry in replays),
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": _key(f"DELIVERY#{before.flow_id}", "DELIVERY"),
                        "ConditionExpression": f"{ITEM_EXISTS} AND delivery_expires_at > :now",
                        "ExpressionAttributeValues": {":now": _n(epoch(now))},
                    }
                },
                self._put_flow(after, before),
                self._audit_put(audit),
            ],
            on_conflict=ConcurrentUpdate("the delivery was picked up concurrently", check="delivery"),
            item_conflicts=_replay_conflicts(replays),
        )

    def webhook(self, event_id: str) -> WebhookEvent | None:
        item = self._get(_key(f"WEBHOOK#{event_id}", "WEBHOOK"))
        if item is None or "due_at" not in item:
            return None
        return WebhookEvent(
            event_id=event_id,
            partner_id=item["partner_id"]["S"],
            url=item["url"]["S"],
            type=item["type"]["S"],
            delivery_id=item["delivery_id"]["S"],
            occurred_at=datetime.fromtimestamp(int(item["occurred_at"]["N"]), UTC),
            next_due_at=datetime.fromtimestamp(int(item["due_at"]["N"]), UTC),
            attempts=int(item["attempts"]["N"]),
            reason=item["reason"]["S"] if "reason" in item else None,
        )

    def webhook_attempted(
        self, event: WebhookEvent, *, delivered: bool, next_due_at: datetime | None
    ) -> None:
        """A delivered or abandoned event leaves the due index; its item stays a day for idempotency."""
        item = self._webhook_item(event)
        item["outcome"] = _s("delivered" if delivered else ("retrying" if next_due_at else "abandoned"))
        if next_due_at is None:
            del item["due_shard"], item["due_at"]
        else:
            item["due_at"] = _n(epoch(next_due_at))
        try:
            self._client.put_item(TableName=self._table, Item=item)
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("dynamodb", "PutItem", exc) from exc


def flow_document(item: Mapping[str, Any]) -> dict[str, Any]:
    """A flow item as the flow's fields by their full names (JSON types): for operators' tools
    and tests, which should not know the stored layout."""
    return flow_of_item(item).model_dump(mode="json")
