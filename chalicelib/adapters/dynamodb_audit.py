"""Reading the audit table, and storing its checkpoints.

Records are written by ``DynamoStateStore`` inside the transactions of the steps they record;
this adapter only reads them (by flow, by day, by partner and month) and appends checkpoints
(``pk = CHECKPOINT``, one conditional put per sequence number: there is a single writer at a time).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.aws import error_code, unavailable
from chalicelib.domain.checkpoints import Checkpoint, StoredRecord, checkpoint_document, parse_checkpoint
from chalicelib.domain.errors import ConcurrentUpdate

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

CHECKPOINT_PK = "CHECKPOINT"
DAY_SHARDS = 16


def _time_key(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ}"


def record_from_item(item: dict[str, Any]) -> StoredRecord:
    return StoredRecord(
        key=f"{item['pk']['S']}|{item['sk']['S']}", sort_key=item["sk"]["S"], document=item["document"]["S"]
    )


class DynamoAuditLog:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def _query(self, **params: Any) -> Iterator[dict[str, Any]]:
        try:
            for page in self._client.get_paginator("query").paginate(TableName=self._table, **params):
                yield from page.get("Items", [])
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("dynamodb", "Query", exc) from exc

    # -- records ------------------------------------------------------------------------------------

    def records_of_flow(self, interaction_id: str) -> list[StoredRecord]:
        return [
            record_from_item(item)
            for item in self._query(
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": f"FLOW#{interaction_id}"}},
                ConsistentRead=True,
            )
        ]

    def records_of_day(self, day: date) -> list[StoredRecord]:
        found: list[StoredRecord] = []
        for shard in range(DAY_SHARDS):
            found.extend(
                record_from_item(item)
                for item in self._query(
                    IndexName="by_day",
                    KeyConditionExpression="day_shard = :shard",
                    ExpressionAttributeValues={":shard": {"S": f"{day:%Y-%m-%d}#{shard}"}},
                )
            )
        return sorted(found, key=lambda record: (record.sort_key, record.key))

    def records_of_partner(
        self, partner_id: str, month: str, *, after: str = "", limit: int = 100
    ) -> list[StoredRecord]:
        """One partner's records of one month (``YYYY-MM``), in key order, after a sort key."""
        # DynamoDB refuses an empty string in a key condition: the first page has no lower bound.
        params: dict[str, Any] = {
            "IndexName": "by_partner",
            "KeyConditionExpression": "partner_month = :pm" + (" AND sk > :after" if after else ""),
            "ExpressionAttributeValues": {
                ":pm": {"S": f"{partner_id}#{month}"},
                **({":after": {"S": after}} if after else {}),
            },
        }
        records = [record_from_item(item) for item in self._query(**params)]
        return sorted(records, key=lambda record: (record.sort_key, record.key))[:limit]

    def all_records(self) -> list[StoredRecord]:
        """Every record (the operator's verification and export; a full scan)."""
        found: list[StoredRecord] = []
        try:
            for page in self._client.get_paginator("scan").paginate(
                TableName=self._table, ConsistentRead=True
            ):
                found.extend(
                    record_from_item(item)
                    for item in page.get("Items", [])
                    if item["pk"]["S"].startswith("FLOW#")
                )
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("dynamodb", "Scan", exc) from exc
        return sorted(found, key=lambda record: (record.sort_key, record.key))

    def records_after(
        self, sort_key: str, *, until: datetime, limit: int, not_before: datetime | None = None
    ) -> list[StoredRecord]:
        until_key = _time_key(until)
        if not sort_key:
            candidates = self.all_records()  # the first checkpoint: no day to start from
        else:
            first = date.fromisoformat(sort_key[:10])
            if not_before is not None:  # after a quiet spell, skip the days already known to be empty
                first = max(first, not_before.astimezone(UTC).date())
            candidates = []
            day = first
            while day <= until.astimezone(UTC).date():
                candidates.extend(self.records_of_day(day))
                day += timedelta(days=1)
        selected = [record for record in candidates if sort_key < record.sort_key < until_key]
        return sorted(selected, key=lambda record: (record.sort_key, record.key))[:limit]

    # -- checkpoints --------------------------------------------------------------------------------

    def checkpoints(self) -> Iterator[Checkpoint]:
        for item in self._query(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": CHECKPOINT_PK}},
            ConsistentRead=True,
        ):
            yield parse_checkpoint(item["document"]["S"], item["signed_head"]["S"])

    def put_checkpoint(self, checkpoint: Checkpoint) -> None:
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": CHECKPOINT_PK},
                    "sk": {"S": f"{checkpoint.seq:012d}"},
                    "document": {"S": checkpoint_document(checkpoint)},
                    "signed_head": {"S": checkpoint.signed_head},
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise ConcurrentUpdate(
                    f"checkpoint {checkpoint.seq} already exists", check="checkpoint.seq"
                ) from None
            raise unavailable("dynamodb", "PutItem", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("dynamodb", "PutItem", exc) from exc
