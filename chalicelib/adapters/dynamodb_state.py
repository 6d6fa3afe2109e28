"""Short-lived flow state in DynamoDB (the ``state`` table): flows, single-use pointers, access
tokens and the ``jti`` replay store. See docs/data-model.md for the item layout.

Secrets (request_uri, portal state, codes, tokens, jti) arrive here already fingerprinted; nothing
stored can be replayed. Every read enforces ``expires_at`` in code: DynamoDB TTL is only the
garbage collector (lazy in AWS, never run by moto). Condition expressions are built from named
parts; ``ConditionalCheckFailed`` and cancelled transactions become domain errors right here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.aws import error_code, unavailable
from chalicelib.domain.errors import ConcurrentUpdate
from chalicelib.domain.flow import CodeAlreadyUsed, Flow
from chalicelib.domain.flow_store import AccessTokenRecord, CodeState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

ITEM_IS_NEW = "attribute_not_exists(pk)"
ITEM_EXISTS = "attribute_exists(pk)"
NOT_EXPIRED = "expires_at > :now"
VERSION_UNCHANGED = "attribute_exists(pk) AND version = :expected"
CODE_UNUSED = "attribute_exists(pk) AND used = :false AND code_expires_at > :now"
JTI_FREE = "attribute_not_exists(pk) OR expires_at <= :now"

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


def flow_key(flow_id: str) -> dict[str, Any]:
    return _key(f"FLOW#{flow_id}", "FLOW")


class DynamoStateStore:
    """Implements ``FlowStore`` and ``ReplayStore`` on one table."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    # -- flows ------------------------------------------------------------------------------------

    def _flow_item(self, flow: Flow) -> dict[str, Any]:
        return {
            **flow_key(flow.flow_id),
            "document": _s(flow.model_dump_json()),
            "status": _s(flow.status.value),
            "version": _n(flow.version),
            "partner_id": _s(flow.partner_id),
            "expires_at": _n(epoch(flow.expires_at)),
        }

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

    def _transact(self, items: list[dict[str, Any]], *, on_conflict: Exception) -> None:
        try:
            self._client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]  # built from plain dicts
        except ClientError as exc:
            if error_code(exc) in ("TransactionCanceledException", "ConditionalCheckFailedException"):
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

    def create(self, flow: Flow, *, request_uri_hash: str, request_uri_expires_at: datetime) -> None:
        self._transact(
            [
                self._put_flow(flow, None),
                self._pointer(f"PAR#{request_uri_hash}", flow.flow_id, request_uri_expires_at),
            ],
            on_conflict=ConcurrentUpdate("flow or request_uri already exists", check="flow_id"),
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

    def update(self, before: Flow, after: Flow) -> None:
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
    ) -> None:
        items: list[dict[str, Any]] = [
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
            items.append(self._pointer(f"PSTATE#{portal_state_hash}", after.flow_id, portal_state_expires_at))
        self._transact(items, on_conflict=ConcurrentUpdate("request_uri already used", check="request_uri"))

    def consume_portal_state(self, portal_state_hash: str, *, now: datetime) -> Flow | None:
        try:
            answer = self._client.delete_item(
                TableName=self._table,
                Key=_key(f"PSTATE#{portal_state_hash}", "PTR"),
                ConditionExpression=f"{ITEM_EXISTS} AND {NOT_EXPIRED}",
                ExpressionAttributeValues={":now": _n(epoch(now))},
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise unavailable("dynamodb", "DeleteItem", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("dynamodb", "DeleteItem", exc) from exc
        old = answer.get("Attributes")
        return self.get(old["flow_id"]["S"], now=now) if old else None

    def start_retrieval(
        self, before: Flow, after: Flow, *, code_hash: str, code_expires_at: datetime, process_id: str
    ) -> None:
        self._transact(
            [
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
        self, before: Flow, after: Flow, *, code_hash: str, token: AccessTokenRecord, now: datetime
    ) -> None:
        self._transact(
            [
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
            on_conflict=CodeAlreadyUsed("the code was already redeemed", check="code"),
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

    def remember(self, namespace: str, value: str, *, until: datetime, now: datetime) -> bool:
        """One conditional put: True the first time ``value`` is seen in ``namespace`` before it
        expires, False on a replay. ``value`` is fingerprinted by the caller."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    **_key(f"JTI#{namespace}#{value}", "JTI"),
                    "expires_at": _n(max(epoch(until), epoch(now)) + 1),
                },
                ConditionExpression=JTI_FREE,
                ExpressionAttributeValues={":now": _n(epoch(now))},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise unavailable("dynamodb", "PutItem", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("dynamodb", "PutItem", exc) from exc
        return True
