"""The emulator's TransactWriteItems, as ``infra.local_aws`` patches it for the local stack and the
tests: it backs up only the items a transaction names (moto copies whole tables, which made the race
tests' stack slow down with every request), and a cancelled transaction still changes nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest

TABLE = "emulator-transactions"
FILLER_ITEMS = 1000


def key(pk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": "ITEM"}}


@pytest.fixture
def table(dynamodb_client: Any) -> Any:
    dynamodb_client.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return dynamodb_client


def test_a_cancelled_transaction_leaves_every_item_it_named_as_it_was(table: Any) -> None:
    # GIVEN an item to update and an item to delete
    table.put_item(TableName=TABLE, Item={**key("updated"), "value": {"N": "1"}})
    table.put_item(TableName=TABLE, Item={**key("deleted"), "value": {"N": "1"}})
    # WHEN a transaction updates, puts and deletes, but one of its conditions fails
    with pytest.raises(table.exceptions.TransactionCanceledException) as cancelled:
        table.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": key("updated"),
                        "UpdateExpression": "SET #v = :two",
                        "ExpressionAttributeNames": {"#v": "value"},
                        "ExpressionAttributeValues": {":two": {"N": "2"}},
                    }
                },
                {"Put": {"TableName": TABLE, "Item": key("put")}},
                {"Delete": {"TableName": TABLE, "Key": key("deleted")}},
                {
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": key("missing"),
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
                {"Put": {"TableName": TABLE, "Item": key("put-after-the-failure")}},
            ]
        )
    # THEN it names the failed condition, and no item changed
    reasons = [reason["Code"] for reason in cancelled.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "None", "ConditionalCheckFailed", "None"]
    items = table.scan(TableName=TABLE, ConsistentRead=True)["Items"]
    assert sorted((item["pk"]["S"], item["value"]["N"]) for item in items) == [
        ("deleted", "1"),
        ("updated", "1"),
    ]


def test_a_transaction_costs_the_same_whatever_the_size_of_its_tables(table: Any) -> None:
    # GIVEN a table with a thousand items (moto alone copies all of them for every transaction)
    for index in range(FILLER_ITEMS):
        table.put_item(TableName=TABLE, Item={**key(f"filler-{index}"), "data": {"S": "x" * 200}})
    # WHEN ten transactions of three writes each run
    started = time.perf_counter()
    for index in range(10):
        table.transact_write_items(
            TransactItems=[{"Put": {"TableName": TABLE, "Item": key(f"new-{index}-{n}")}} for n in range(3)]
        )
    elapsed = time.perf_counter() - started
    # THEN they take milliseconds, not the ~100 ms each that copying the table costs
    assert elapsed < 0.5, f"10 transactions took {elapsed:.2f} s"
    assert table.get_item(TableName=TABLE, Key=key("new-9-2"), ConsistentRead=True)["Item"] == key("new-9-2")


def conditional_create(pk: str) -> list[dict[str, Any]]:
    return [{"Put": {"TableName": TABLE, "Item": key(pk), "ConditionExpression": "attribute_not_exists(pk)"}}]


def test_a_transaction_repeated_with_its_client_token_succeeds_again_without_writing(table: Any) -> None:
    # GIVEN a conditional transaction that succeeded (botocore sends one token across its retries)
    table.transact_write_items(TransactItems=conditional_create("once"), ClientRequestToken="token-1")
    table.delete_item(TableName=TABLE, Key=key("once"))
    # WHEN it is sent again with the same token (its answer was lost and botocore retried)
    table.transact_write_items(TransactItems=conditional_create("once"), ClientRequestToken="token-1")
    # THEN it succeeds as in DynamoDB, and writes nothing
    assert table.scan(TableName=TABLE, ConsistentRead=True)["Items"] == []
    # AND the same request under a new token is a new transaction whose condition is checked
    table.put_item(TableName=TABLE, Item=key("once"))
    with pytest.raises(table.exceptions.TransactionCanceledException):
        table.transact_write_items(TransactItems=conditional_create("once"), ClientRequestToken="token-2")


def test_a_client_token_reused_for_another_transaction_is_refused(table: Any) -> None:
    table.transact_write_items(TransactItems=conditional_create("first"), ClientRequestToken="token-3")
    with pytest.raises(table.exceptions.IdempotentParameterMismatchException):
        table.transact_write_items(TransactItems=conditional_create("second"), ClientRequestToken="token-3")
    assert [item["pk"]["S"] for item in table.scan(TableName=TABLE)["Items"]] == ["first"]
