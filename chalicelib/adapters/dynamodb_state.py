"""Short-lived flow state in DynamoDB (the ``state`` table): flows, single-use pointers, access
tokens and the ``jti`` replay store. See docs/data-model.md for the item layout.

Secrets (request_uri, portal state, codes, tokens, jti) arrive here already fingerprinted; nothing
stored can be replayed. Every read enforces ``expires_at`` in code: DynamoDB TTL is only the
garbage collector (lazy in AWS, never run by moto). Condition expressions are built from named
parts; ``ConditionalCheckFailed`` and cancelled transactions become domain errors right here.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence
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
from chalicelib.domain.errors import ConcurrentUpdate
from chalicelib.domain.flow import BrowserBindingMismatch, CodeAlreadyUsed, Flow
from chalicelib.domain.flow_store import AccessTokenRecord, CodeState
from chalicelib.domain.oauth.replay import ReplayEntry

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

ITEM_IS_NEW = "attribute_not_exists(pk)"
ITEM_EXISTS = "attribute_exists(pk)"
NOT_EXPIRED = "expires_at > :now"
VERSION_UNCHANGED = "attribute_exists(pk) AND version = :expected"
CODE_UNUSED = "attribute_exists(pk) AND used = :false AND code_expires_at > :now"
JTI_FREE = "attribute_not_exists(pk) OR expires_at <= :now"
NOT_USED = "attribute_not_exists(used_by)"

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
            "document": _s(flow.model_dump_json()),
            "status": _s(flow.status.value),
            "version": _n(flow.version),
            "partner_id": _s(flow.partner_id),
            "expires_at": _n(epoch(flow.expires_at)),
        }
        if flow.next_due_at is not None and not flow.is_terminal:
            # Sparse GSI by_due: only flows the scheduled run must come back to carry these (every
            # flow that has not ended: to poll, to expire its delivery, or to end it as abandoned).
            item["due_shard"] = _s(due_shard(flow.flow_id))
            item["due_at"] = _n(epoch(flow.next_due_at))
        return item

    def _put_flow(self, after: Flow, before: Flow | None) -> dict[str, Any]:
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
                "ConditionExpression": VERSION_UNCHANGED,
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
        request_uri_hash: str,
        request_uri_expires_at: datetime,
        audits: Sequence[AuditRecord] = (),
        replays: Sequence[ReplayEntry] = (),
    ) -> None:
        self._transact(
            [
                *(self._replay_put(entry) for entry in replays),
                self._put_flow(flow, None),
                self._pointer(f"PAR#{request_uri_hash}", flow.flow_id, request_uri_expires_at),
                *(self._audit_put(audit, i) for i, audit in enumerate(audits)),
            ],
            on_conflict=ConcurrentUpdate("flow or request_uri already exists", check="flow_id"),
            item_conflicts=_replay_conflicts(replays),
        )

    def get(self, flow_id: str, *, now: datetime) -> Flow | None:
        item = self._get(flow_key(flow_id))
        if item is None or int(item["expires_at"]["N"]) <= epoch(now):
            return None
        return Flow.model_validate_json(item["document"]["S"])

    def _pointed_flow(self, pk: str, *, now: datetime) -> Flow | None:
        pointer = self._get(_key(pk, "PTR"))
        if pointer is None or int(pointer["expires_at"]["N"]) <= epoch(now):
            return None
        return self.get(pointer["flow_id"]["S"], now=now)

    def flow_for_request_uri(self, request_uri_hash: str, *, now: datetime) -> Flow | None:
        return self._pointed_flow(f"PAR#{request_uri_hash}", now=now)

    def update(
        self, before: Flow, after: Flow, *, audits: Sequence[AuditRecord] = (), delete_delivery: bool = False
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
                    self._put_flow(after, before),
                    *(self._audit_put(audit, i) for i, audit in enumerate(audits)),
                    *deletes,
                ],
                on_conflict=ConcurrentUpdate("the flow changed since it was read", check="flow.version"),
            )
            return
        put = self._put_flow(after, before)["Put"]
        try:
            self._client.put_item(**put)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise ConcurrentUpdate("the flow changed since it was read", check="flow.version") from None
            raise unavailable("dynamodb", "PutItem", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("dynamodb", "PutItem", exc) from exc

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
        items: list[dict[str, Any]] = [
            *(self._audit_put(audit, i) for i, audit in enumerate(audits)),
            {
                "Delete": {
                    "TableName": self._table,
                    "Key": _key(f"PAR#{request_uri_hash}", "PTR"),
                    "ConditionExpression": f"{ITEM_EXISTS} AND {NOT_EXPIRED}",
                    "ExpressionAttributeValues": {":now": _n(epoch(now))},
                }
            },
            self._put_flow(after, before),
        ]
        if portal_state_hash is not None and portal_state_expires_at is not None:
            binding = {"binding": _s(browser_binding_hash)} if browser_binding_hash else {}
            items.append(
                self._pointer(
                    f"PSTATE#{portal_state_hash}", after.flow_id, portal_state_expires_at, **binding
                )
            )
        self._transact(items, on_conflict=ConcurrentUpdate("request_uri already used", check="request_uri"))

    def consume_portal_state(
        self, portal_state_hash: str, *, browser_binding_hash: str, now: datetime
    ) -> Flow | None:
        """Mark the pointer used (it stays until its TTL) rather than delete it: a deleted pointer
        could not tell a retried call its own earlier attempt from a concurrent callback. Only the
        browser that left for the portal can use it: its binding cookie's fingerprint must match
        (RFC 9700 section 4.7.1); otherwise ``BrowserBindingMismatch`` and nothing changes."""
        key = _key(f"PSTATE#{portal_state_hash}", "PTR")
        marker = secrets.token_hex(8)
        try:
            answer = self._client.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="SET used_by = :marker",
                ConditionExpression=f"{ITEM_EXISTS} AND {NOT_EXPIRED} AND {NOT_USED} AND binding = :binding",
                ExpressionAttributeValues={
                    ":now": _n(epoch(now)),
                    ":marker": _s(marker),
                    ":binding": _s(browser_binding_hash),
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            pointer: dict[str, Any] | None = dict(answer.get("Attributes", {}))
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise unavailable("dynamodb", "UpdateItem", exc) from exc
            pointer = self._own_write(key, marker, exc)
            if pointer is None:
                # ReturnValuesOnConditionCheckFailure=ALL_OLD: the item as the condition found it
                found = cast("dict[str, Any]", exc.response.get("Item") or {})
                if (
                    found
                    and "used_by" not in found
                    and int(found["expires_at"]["N"]) > epoch(now)
                    and found.get("binding", {}).get("S") != browser_binding_hash
                ):
                    raise BrowserBindingMismatch(
                        "the callback was opened in another browser than the one that left for the portal",
                        check="browser_binding",
                    ) from None
        except BotoCoreError as exc:
            raise unavailable("dynamodb", "UpdateItem", exc) from exc
        return self.get(pointer["flow_id"]["S"], now=now) if pointer else None

    def _own_write(self, key: dict[str, Any], marker: str, exc: ClientError) -> dict[str, Any] | None:
        """After a failed condition, the item if the write that failed it was this call's own.

        botocore retries a write whose answer was lost (a 5xx or a timeout, after which DynamoDB
        may have applied it); the retry then fails on that earlier attempt's effect. Only a
        retried call can meet itself, and only its own random marker on the item proves it."""
        if not exc.response.get("ResponseMetadata", {}).get("RetryAttempts"):
            return None
        item = self._get(key)
        return item if item is not None and item.get("used_by", {}).get("S") == marker else None

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
        self._transact(
            [
                *(self._audit_put(audit, i) for i, audit in enumerate(audits)),
                self._put_flow(after, before),
                self._pointer(
                    f"CODE#{code_hash}",
                    after.flow_id,
                    after.expires_at,
                    used={"BOOL": False},
                    code_expires_at=_n(epoch(code_expires_at)),
                ),
                self._pointer(f"PROC#{process_id}", after.flow_id, after.expires_at),
            ],
            on_conflict=ConcurrentUpdate("the flow changed since it was read", check="flow.version"),
        )

    # -- codes and tokens ---------------------------------------------------------------------------

    def code_state(self, code_hash: str, *, now: datetime) -> tuple[CodeState, str | None]:
        item = self._get(_key(f"CODE#{code_hash}", "PTR"))
        if item is None or int(item["expires_at"]["N"]) <= epoch(now):
            return "unknown", None
        flow_id = item["flow_id"]["S"]
        if item["used"]["BOOL"]:
            return "used", flow_id
        if int(item["code_expires_at"]["N"]) <= epoch(now):
            return "expired", flow_id
        return "unused", flow_id

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
        code_position = len(replays)
        self._transact(
            [
                *(self._replay_put(entry) for entry in replays),
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": _key(f"CODE#{code_hash}", "PTR"),
                        "UpdateExpression": "SET used = :true",
                        "ConditionExpression": CODE_UNUSED,
                        "ExpressionAttributeValues": {
                            ":true": {"BOOL": True},
                            ":false": {"BOOL": False},
                            ":now": _n(epoch(now)),
                        },
                    }
                },
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {
                            **_key(f"TOKEN#{token.token_hash}", "TOKEN"),
                            "flow_id": _s(token.flow_id),
                            "partner_id": _s(token.partner_id),
                            "jkt": _s(token.jkt),
                            "token_expires_at": _n(epoch(token.expires_at)),
                            "expires_at": _n(epoch(token.expires_at)),
                        },
                        "ConditionExpression": ITEM_IS_NEW,
                    }
                },
                self._put_flow(after, before),
            ],
            # the flow's version condition fails when a scheduled run moved the flow on meanwhile
            # (a poll, the seal): that is not a replay, and the caller reads the flow again
            on_conflict=ConcurrentUpdate("the flow changed since it was read", check="flow.version"),
            # a replayed jti first (the request is refused as a replay, whatever else it met),
            # then a used code
            item_conflicts={
                **_replay_conflicts(replays),
                code_position: CodeAlreadyUsed("the code was already redeemed", check="code"),
            },
        )

    def token(self, token_hash: str, *, now: datetime) -> AccessTokenRecord | None:
        item = self._get(_key(f"TOKEN#{token_hash}", "TOKEN"))
        if item is None or int(item["token_expires_at"]["N"]) <= epoch(now):
            return None
        return AccessTokenRecord(
            token_hash=token_hash,
            flow_id=item["flow_id"]["S"],
            partner_id=item["partner_id"]["S"],
            jkt=item["jkt"]["S"],
            expires_at=datetime.fromtimestamp(int(item["token_expires_at"]["N"]), UTC),
        )

    def delete_token(self, token_hash: str) -> None:
        try:
            self._client.delete_item(TableName=self._table, Key=_key(f"TOKEN#{token_hash}", "TOKEN"))
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("dynamodb", "DeleteItem", exc) from exc

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

    def pick_up(
        self,
        before: Flow,
        after: Flow,
        *,
        audit: AuditRecord,
        now: datetime,
        replays: Sequence[ReplayEntry] = (),
    ) -> str:
        key = _key(f"DELIVERY#{before.flow_id}", "DELIVERY")
        item = self._get(key)
        if item is None or int(item["delivery_expires_at"]["N"]) <= epoch(now):
            raise ConcurrentUpdate("the delivery is gone", check="delivery")
        self._transact(
            [
                *(self._replay_put(entry) for entry in replays),
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": key,
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
        return str(item["jwe"]["S"])

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
