"""The scheduled run's view of the due index: the most overdue work first, whatever its shard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.adapters.dynamodb_state import DynamoStateStore, epoch


def put_due(dynamodb_client: Any, table: str, pk: str, shard: int, due_at: datetime) -> None:
    dynamodb_client.put_item(
        TableName=table,
        Item={
            "pk": {"S": pk},
            "sk": {"S": "FLOW"},
            "due_shard": {"S": f"DUE#{shard}"},
            "due_at": {"N": str(epoch(due_at))},
        },
    )


def test_a_full_first_shard_does_not_starve_an_older_item_in_a_later_shard(
    dynamodb_client: Any, resources: dict[str, str]
) -> None:
    # GIVEN 30 flows due a minute ago in shard 0 and one flow due an hour ago in shard 5
    table = resources["RELAY_STATE_TABLE"]
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    for i in range(30):
        put_due(dynamodb_client, table, f"FLOW#recent-{i:02d}", 0, now - timedelta(minutes=1))
    put_due(dynamodb_client, table, "FLOW#oldest", 5, now - timedelta(hours=1))
    store = DynamoStateStore(dynamodb_client, table, audit_table=resources["RELAY_AUDIT_TABLE"])

    # WHEN a run asks for 25 due items
    due = store.due(now=now, limit=25)

    # THEN the oldest comes first and the run takes 25 in all
    assert len(due) == 25
    assert (due[0].kind, due[0].key) == ("flow", "oldest")
    assert [item.due_at for item in due] == sorted(item.due_at for item in due)
