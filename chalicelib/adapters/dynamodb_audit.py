"""The audit table: reading its records, and storing the tree that makes them tamper-evident.

Records are written by ``DynamoStateStore`` inside the transactions of the steps they record (with
the attributes ``index_attributes`` gives them); this adapter reads them and keeps the checkpoints.

What lives in the table, and how every access grows with the log (N records in all):

| item | pk / sk | written | read |
|---|---|---|---|
| record | ``FLOW#<id>`` / ``<time>#<pos>#<record id>`` | once, in its step | by flow (Query, the flow's ~15 items); by day and shard (index ``by_day``, with ``Limit``); by partner, month and shard (index ``by_partner``, with ``Limit``) |
| leaf index | ``FLOW#<id>`` / ``~leaves#<seq>`` | once per flow and checkpoint, after the commit | with the flow's records (same Query) |
| head | ``CHECKPOINT`` / ``<seq>`` | once, conditional on its seq | the latest (Query, ``Limit`` 1), or one by seq: O(1) |
| covered keys | ``CHECKPOINT#LEAVES`` / ``<seq>`` | once, with its head | by the next run only if it must finish publishing, and by ``relayctl audit verify`` |
| tile | ``TILE#<level>#<index>`` / ``<width>`` | once, with the head that completes it | the handful a proof or the next checkpoint needs: O(log N) |
| published | ``CHECKPOINT#PUBLISHED`` / ``<seq>`` | once, after publishing | one GetItem per run |
| first day | ``CHECKPOINT#SCAN`` / ``-`` | after a quiet spell | one GetItem per run |

Write sharding: the ``by_day`` and ``by_partner`` keys carry one of ``AUDIT_SHARDS`` shards (from the
record id), so neither one day nor one busy partner's month funnels writes into one partition key;
reads scatter over the shards and merge lazily (a page reads about what it returns, plus one short
query per shard). Only the very first checkpoint of a log, while no head exists yet, scans the
table once to find the first day.
"""

from __future__ import annotations

import hashlib
import heapq
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.aws import error_code, unavailable
from chalicelib.domain import merkle
from chalicelib.domain.checkpoints import LeafEntry, StoredRecord, TreeHead, head_document, parse_head
from chalicelib.domain.errors import ConcurrentUpdate, DependencyUnavailable
from chalicelib.domain.tiles import TileId

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

RECORD_PREFIX = "FLOW#"
CHECKPOINT_PK = "CHECKPOINT"
LEAVES_PK = "CHECKPOINT#LEAVES"
PUBLISHED_PK = "CHECKPOINT#PUBLISHED"
SCAN_PK = "CHECKPOINT#SCAN"
TILE_PREFIX = "TILE#"
LEAF_INDEX_PREFIX = "~leaves#"  # "~" sorts after every record sort key (they start with a year)
# 32 shards: one day, or one partner's month, takes writes at up to 32 x 1,000 WCU/s, about 2,200
# onboardings/s at ~14 records each (docs/data-model.md; bench/RESULTS.md "audit at scale").
AUDIT_SHARDS = 32
BEFORE_EVERY_KEY = " "  # below every sort key (printable ASCII without spaces); never "" in a key condition
_BATCH_GET = 100
_BATCH_WRITE = 25
_UNPROCESSED_ATTEMPTS = 5


def _seq_key(seq: int) -> str:
    return f"{seq:012d}"


def _time_key(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ}"


def shard_of(record_id: str) -> int:
    """Uniform over the shards for any id (the record id's own last character would not be: a
    base64url character modulo 32 never lands on five of them)."""
    return int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:4], "big") % AUDIT_SHARDS


def day_shard(day: date | datetime, shard: int) -> str:
    return f"{day:%Y-%m-%d}#{shard:02d}"


def partner_shard(partner_id: str, month: str, shard: int) -> str:
    return f"{partner_id}#{month}#{shard:02d}"


def index_attributes(
    *, record_id: str, requester_id: str, occurred_at: datetime, document: str
) -> dict[str, dict[str, Any]]:
    """What a record item carries besides its key and document: its index keys (UTC, like the sort
    key, so a record's day and month never depend on a clock's zone) and its leaf hash, so that a
    checkpoint reads 32 bytes per record from the index instead of the document."""
    occurred = occurred_at.astimezone(UTC)
    shard = shard_of(record_id)
    return {
        "day_shard": {"S": day_shard(occurred, shard)},
        "partner_shard": {"S": partner_shard(requester_id, f"{occurred:%Y-%m}", shard)},
        "leaf": {"B": merkle.leaf_hash(document.encode())},
    }


def record_from_item(item: Mapping[str, Any]) -> StoredRecord:
    return StoredRecord(
        key=f"{item['pk']['S']}|{item['sk']['S']}", sort_key=item["sk"]["S"], document=item["document"]["S"]
    )


def _entry(item: Mapping[str, Any]) -> LeafEntry:
    return LeafEntry(
        key=f"{item['pk']['S']}|{item['sk']['S']}", sort_key=item["sk"]["S"], hash=bytes(item["leaf"]["B"])
    )


def _order(item: Mapping[str, Any]) -> tuple[str, str]:
    return item["sk"]["S"], item["pk"]["S"]


def split_key(key: str) -> tuple[str, str]:
    pk, _, sk = key.partition("|")
    return pk, sk


def is_record_key(pk: str, sk: str) -> bool:
    return pk.startswith(RECORD_PREFIX) and not sk.startswith(LEAF_INDEX_PREFIX)


def occurred_of(sort_key: str) -> datetime | None:
    """The time in a record's sort key (``2026-12-06T09:18:16.123456Z#..``)."""
    try:
        return datetime.strptime(sort_key[:27], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


class DynamoAuditLog:
    def __init__(
        self, client: DynamoDBClient, table_name: str, *, retention: timedelta = timedelta(days=7 * 365)
    ) -> None:
        self._client = client
        self._table = table_name
        self._retention = retention

    # -- plumbing -----------------------------------------------------------------------------------

    def _call(self, operation: str, method: Any, **params: Any) -> Any:
        try:
            return method(TableName=self._table, **params)
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("dynamodb", operation, exc) from exc

    def _query(self, *, page: int = 100, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item a query matches, ``page`` at a time (``Limit``), lazily."""
        start: dict[str, Any] | None = None
        while True:
            extra = {"ExclusiveStartKey": start} if start else {}
            answer = self._call("Query", self._client.query, Limit=page, **params, **extra)
            yield from answer.get("Items", [])
            start = answer.get("LastEvaluatedKey")
            if not start:
                return

    def _shard(
        self, index: str, attribute: str, value: str, *, after: str, before: str | None, page: int
    ) -> Iterator[dict[str, Any]]:
        """One shard of an index, in sort key order, after ``after`` (and below ``before``),
        fetched ``page`` items at a time as the merge asks for them; a shard that turns out to hold
        more than its share gets larger pages."""
        values = {":key": {"S": value}}
        if before is None:
            condition = f"{attribute} = :key AND sk > :lo"
            values[":lo"] = {"S": after or BEFORE_EVERY_KEY}
        else:
            # BETWEEN is inclusive: after + " " is above ``after`` and below every key that follows it.
            condition = f"{attribute} = :key AND sk BETWEEN :lo AND :hi"
            values[":lo"] = {"S": after + " " if after else BEFORE_EVERY_KEY}
            values[":hi"] = {"S": before}
        start: dict[str, Any] | None = None
        while True:
            extra = {"ExclusiveStartKey": start} if start else {}
            answer = self._call(
                "Query",
                self._client.query,
                IndexName=index,
                KeyConditionExpression=condition,
                ExpressionAttributeValues=values,
                Limit=page,
                **extra,
            )
            yield from answer.get("Items", [])
            start = answer.get("LastEvaluatedKey")
            if not start:
                return
            page = min(page * 2, 1000)

    def _merged(
        self, index: str, attribute: str, values: Iterable[str], *, after: str, before: str | None, page: int
    ) -> Iterator[dict[str, Any]]:
        streams = [self._shard(index, attribute, v, after=after, before=before, page=page) for v in values]
        return heapq.merge(*streams, key=_order)

    def _get(self, pk: str, sk: str, *, consistent: bool = True) -> dict[str, Any] | None:
        answer = self._call(
            "GetItem",
            self._client.get_item,
            Key={"pk": {"S": pk}, "sk": {"S": sk}},
            ConsistentRead=consistent,
        )
        item: dict[str, Any] | None = answer.get("Item")
        return item

    def _batch_get(self, keys: Sequence[tuple[str, str]], *, consistent: bool) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for i in range(0, len(keys), _BATCH_GET):
            pending: list[dict[str, Any]] = [
                {"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in dict.fromkeys(keys[i : i + _BATCH_GET])
            ]
            for attempt in range(_UNPROCESSED_ATTEMPTS):
                try:
                    answer = self._client.batch_get_item(
                        RequestItems={self._table: {"Keys": pending, "ConsistentRead": consistent}}
                    )
                except (ClientError, BotoCoreError) as exc:
                    raise unavailable("dynamodb", "BatchGetItem", exc) from exc
                found.extend(answer.get("Responses", {}).get(self._table, []))
                unprocessed: dict[str, Any] = dict(answer.get("UnprocessedKeys", {}).get(self._table, {}))
                pending = list(unprocessed.get("Keys", []))
                if not pending:
                    break
                time.sleep(0.05 * 2**attempt)  # DynamoDB asks for a backoff before retrying these
            else:
                raise DependencyUnavailable("dynamodb BatchGetItem left keys unprocessed", check="dynamodb")
        return found

    def _batch_put(self, items: Sequence[dict[str, Any]]) -> None:
        for i in range(0, len(items), _BATCH_WRITE):
            pending: list[Any] = [{"PutRequest": {"Item": item}} for item in items[i : i + _BATCH_WRITE]]
            for attempt in range(_UNPROCESSED_ATTEMPTS):
                try:
                    answer = self._client.batch_write_item(RequestItems={self._table: pending})
                except (ClientError, BotoCoreError) as exc:
                    raise unavailable("dynamodb", "BatchWriteItem", exc) from exc
                pending = answer.get("UnprocessedItems", {}).get(self._table, [])
                if not pending:
                    break
                time.sleep(0.05 * 2**attempt)
            else:
                raise DependencyUnavailable(
                    "dynamodb BatchWriteItem left items unprocessed", check="dynamodb"
                )

    # -- records ------------------------------------------------------------------------------------

    def flow_trail(self, interaction_id: str) -> tuple[list[StoredRecord], dict[str, int]]:
        """A flow's records in key order, and the leaf index of each one a checkpoint covered.
        One query: the leaf indexes sort after the records in the flow's own partition."""
        records: list[StoredRecord] = []
        indexes: dict[str, int] = {}
        pk = f"{RECORD_PREFIX}{interaction_id}"
        for item in self._query(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
            ConsistentRead=True,
        ):
            sk = item["sk"]["S"]
            if sk.startswith(LEAF_INDEX_PREFIX):
                for record_sk, index in item.get("leaves", {}).get("M", {}).items():
                    indexes[f"{pk}|{record_sk}"] = int(index["N"])
            elif "document" in item:
                records.append(record_from_item(item))
        return records, indexes

    def records_of_flow(self, interaction_id: str) -> list[StoredRecord]:
        return self.flow_trail(interaction_id)[0]

    def records_of_partner(
        self, partner_id: str, month: str, *, after: str = "", limit: int = 100
    ) -> list[StoredRecord]:
        """One partner's records of one month (``YYYY-MM``), in key order, after a sort key: its
        shards merged lazily, so a page reads about ``limit`` records, not the rest of the month."""
        page = max(2, -(-limit // AUDIT_SHARDS) + 1)
        merged = self._merged(
            "by_partner",
            "partner_shard",
            (partner_shard(partner_id, month, shard) for shard in range(AUDIT_SHARDS)),
            after=after.strip(),
            before=None,
            page=page,
        )
        found: list[StoredRecord] = []
        for item in merged:
            found.append(record_from_item(item))
            if len(found) >= limit:
                break
        return found

    def entries_of_day(
        self, day: date, *, after: str = "", before: str | None = None, page: int = 100
    ) -> Iterator[LeafEntry]:
        """One UTC day's records (key, sort key, leaf hash) in key order, lazily."""
        values = (day_shard(day, shard) for shard in range(AUDIT_SHARDS))
        for item in self._merged("by_day", "day_shard", values, after=after, before=before, page=page):
            yield _entry(item)

    def documents(self, keys: Sequence[str]) -> dict[str, str]:
        """The stored documents of records by key (absent keys are left out)."""
        items = self._batch_get([split_key(key) for key in keys], consistent=True)
        return {
            f"{item['pk']['S']}|{item['sk']['S']}": item["document"]["S"]
            for item in items
            if "document" in item
        }

    def records_between(self, start: date, end: date) -> Iterator[StoredRecord]:
        """Records that occurred (UTC) on ``start`` .. ``end`` inclusive, in key order, a page at a time."""
        day = start
        while day <= end:
            batch: list[LeafEntry] = []
            for entry in self.entries_of_day(day):
                batch.append(entry)
                if len(batch) == _BATCH_GET:
                    yield from self._with_documents(batch)
                    batch = []
            yield from self._with_documents(batch)
            day += timedelta(days=1)

    def _with_documents(self, entries: Sequence[LeafEntry]) -> Iterator[StoredRecord]:
        documents = self.documents([entry.key for entry in entries]) if entries else {}
        for entry in entries:
            if entry.key in documents:
                yield StoredRecord(entry.key, entry.sort_key, documents[entry.key])

    # -- checkpoints: the store ``CheckpointService`` uses ------------------------------------------

    def latest_head(self, *, consistent: bool = True) -> TreeHead | None:
        answer = self._call(
            "Query",
            self._client.query,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": CHECKPOINT_PK}},
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=consistent,
        )
        items = answer.get("Items", [])
        return _head(items[0]) if items else None

    def head(self, seq: int) -> TreeHead | None:
        item = self._get(CHECKPOINT_PK, _seq_key(seq), consistent=False)
        return _head(item) if item else None

    def heads(self, *, after_seq: int = 0) -> Iterator[dict[str, Any]]:
        """Every stored head item after ``after_seq``, in sequence order, as stored (for verify)."""
        yield from self._query(
            KeyConditionExpression="pk = :pk AND sk > :after",
            ExpressionAttributeValues={":pk": {"S": CHECKPOINT_PK}, ":after": {"S": _seq_key(after_seq)}},
            ConsistentRead=True,
        )

    def tiles(self, ids: Iterable[TileId], *, consistent: bool = False) -> dict[TileId, bytes]:
        wanted = {(f"{TILE_PREFIX}{tile.level}#{tile.index}", f"{tile.width:03d}"): tile for tile in ids}
        found: dict[TileId, bytes] = {}
        for item in self._batch_get(list(wanted), consistent=consistent):
            tile = wanted.get((item["pk"]["S"], item["sk"]["S"]))
            if tile is not None and "hashes" in item:
                found[tile] = bytes(item["hashes"]["B"])
        return found

    def first_day(self, through: str, *, today: date) -> date:
        scanned = self._get(SCAN_PK, "-")
        known = (
            date.fromisoformat(scanned["day"]["S"])
            if scanned and scanned["through"]["S"] == through
            else None
        )
        if through:
            own = date.fromisoformat(through[:10])
            return max(own, known) if known else own
        if known:
            return known
        # No checkpoint has ever been made: find the first record's day, once (the one time a
        # run reads the whole table; at a new stage's first run it holds a few minutes of records).
        first: str | None = None
        try:
            for page in self._client.get_paginator("scan").paginate(
                TableName=self._table, ProjectionExpression="pk, sk", PaginationConfig={"PageSize": 1000}
            ):
                for item in page.get("Items", []):
                    pk, sk = item["pk"]["S"], item["sk"]["S"]
                    if is_record_key(pk, sk) and (first is None or sk < first):
                        first = sk
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("dynamodb", "Scan", exc) from exc
        day = date.fromisoformat(first[:10]) if first else today
        self.move_first_day("", day)
        return day

    def move_first_day(self, through: str, day: date) -> None:
        self._call(
            "PutItem",
            self._client.put_item,
            Item={
                "pk": {"S": SCAN_PK},
                "sk": {"S": "-"},
                "through": {"S": through},
                "day": {"S": f"{day:%Y-%m-%d}"},
            },
        )

    def records_after(
        self, sort_key: str, *, first_day: date, until: datetime, limit: int
    ) -> list[LeafEntry]:
        until_key = _time_key(until)
        page = max(8, -(-limit // AUDIT_SHARDS) + 4)
        found: list[LeafEntry] = []
        day = first_day
        last_day = until.astimezone(UTC).date()
        while day <= last_day:
            for entry in self.entries_of_day(day, after=sort_key, before=until_key, page=page):
                # Records of one sort key stay together: the next run starts after that key.
                if len(found) >= limit and entry.sort_key != found[-1].sort_key:
                    return found
                found.append(entry)
            if len(found) >= limit:
                return found
            day += timedelta(days=1)
        return found

    def commit(self, head: TreeHead, keys: Sequence[str], tiles: Mapping[TileId, bytes]) -> None:
        seq = _seq_key(head.seq)
        writes: list[Any] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        "pk": {"S": CHECKPOINT_PK},
                        "sk": {"S": seq},
                        "document": {"S": head_document(head)},
                        "signed_head": {"S": head.signed_head},
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {"pk": {"S": LEAVES_PK}, "sk": {"S": seq}, "keys": {"S": "\n".join(keys)}},
                }
            },
            *(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {
                            "pk": {"S": f"{TILE_PREFIX}{tile.level}#{tile.index}"},
                            "sk": {"S": f"{tile.width:03d}"},
                            "hashes": {"B": hashes},
                        },
                    }
                }
                for tile, hashes in sorted(tiles.items())
            ),
        ]
        try:
            self._client.transact_write_items(TransactItems=writes)
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons", []) if error_code(exc) else []
            if (
                error_code(exc) == "TransactionCanceledException"
                and reasons
                and reasons[0].get("Code") == "ConditionalCheckFailed"
            ):
                raise ConcurrentUpdate(
                    f"checkpoint {head.seq} already exists", check="checkpoint.seq"
                ) from None
            raise unavailable("dynamodb", "TransactWriteItems", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("dynamodb", "TransactWriteItems", exc) from exc

    def leaf_keys(self, seq: int) -> list[str]:
        item = self._get(LEAVES_PK, _seq_key(seq))
        text = item["keys"]["S"] if item and "keys" in item else ""
        return text.split("\n") if text else []

    def is_published(self, seq: int) -> bool:
        return self._get(PUBLISHED_PK, _seq_key(seq)) is not None

    def put_leaf_indexes(self, seq: int, first_index: int, keys: Sequence[str]) -> None:
        by_flow: dict[str, dict[str, int]] = {}
        for offset, key in enumerate(keys):
            pk, sk = split_key(key)
            by_flow.setdefault(pk, {})[sk] = first_index + offset
        items = []
        for pk, leaves in by_flow.items():
            occurred = [moment for moment in map(occurred_of, leaves) if moment is not None]
            keep_until = max(occurred, default=datetime.now(UTC)) + self._retention
            items.append(
                {
                    "pk": {"S": pk},
                    "sk": {"S": f"{LEAF_INDEX_PREFIX}{_seq_key(seq)}"},
                    "leaves": {"M": {sk: {"N": str(index)} for sk, index in leaves.items()}},
                    # An index outlives no record it points to (they expire together).
                    "retain_until": {"N": str(int(keep_until.timestamp()))},
                }
            )
        self._batch_put(items)

    def mark_published(self, seq: int) -> None:
        self._call(
            "PutItem", self._client.put_item, Item={"pk": {"S": PUBLISHED_PK}, "sk": {"S": _seq_key(seq)}}
        )

    # -- verification (relayctl audit verify) -------------------------------------------------------

    def scan(self, *, page: int = 1000) -> Iterator[dict[str, Any]]:
        """Every item of the table, as stored, a page at a time (the full verification)."""
        try:
            for answer in self._client.get_paginator("scan").paginate(
                TableName=self._table, ConsistentRead=True, PaginationConfig={"PageSize": page}
            ):
                yield from answer.get("Items", [])
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("dynamodb", "Scan", exc) from exc


def _head(item: Mapping[str, Any]) -> TreeHead:
    return parse_head(item["document"]["S"], item["signed_head"]["S"])
