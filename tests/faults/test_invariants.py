"""The invariant checker fails on each kind of damage it is meant to find: otherwise every fault
test could pass while checking nothing."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from sandbox.personas import load_personas
from tests.fakes import ShiftedClock
from tests.faults.harness import Tables, WebhookReceiver, assert_consistent, redeemed, run_due
from tests.functional.conftest import Journey


def only(items: list[dict[str, Any]]) -> dict[str, Any]:
    (item,) = items
    return item


def audit_item(tables: Tables, event: str) -> dict[str, Any]:
    return only([item for item in tables.scan(tables.audit) if item["event"]["S"] == event])


def delete(tables: Tables, table: str, item: dict[str, Any]) -> None:
    tables.client.delete_item(TableName=table, Key={"pk": item["pk"], "sk": item["sk"]})


def test_each_kind_of_damage_is_caught(
    journey: Journey, clock: ShiftedClock, receiver: WebhookReceiver, tables: Tables
) -> None:
    # GIVEN a sealed delivery waiting for pickup, consistent in every respect
    redeemed(journey)
    assert run_due(journey) == {"ready": 1, "webhook.delivered": 1}  # sealed, partner told
    assert_consistent(tables, webhooks=True)
    flow = only(tables.state_items("FLOW#"))
    delivery = only(tables.state_items("DELIVERY#"))
    webhook = only(tables.state_items("WEBHOOK#"))
    sealed = audit_item(tables, "sealed")

    def not_due() -> None:
        undue = copy.deepcopy(flow)
        del undue["due_at"], undue["due_shard"]
        tables.client.put_item(TableName=tables.state, Item=undue)

    damages: list[tuple[Callable[[], None], str, dict[str, Any], str]] = [
        (lambda: delete(tables, tables.state, delivery), tables.state, delivery, "payload stored: False"),
        (lambda: delete(tables, tables.audit, sealed), tables.audit, sealed, "but its audit says"),
        (not_due, tables.state, flow, "outside the due index"),
        (lambda: delete(tables, tables.state, webhook), tables.state, webhook, "webhook events"),
    ]
    for damage, table, original, complaint in damages:
        # WHEN the tables are damaged this way
        damage()
        # THEN the check fails, naming the damage
        with pytest.raises(AssertionError, match=complaint):
            assert_consistent(tables, webhooks=True)
        # AND passes again once repaired
        tables.client.put_item(TableName=table, Item=original)
        assert_consistent(tables, webhooks=True)
    # AND a resident's name or amount in a table is caught (seen through the check's eyes only:
    # written to the emulator, the suite's own leak scan would rightly report it), while a timestamp
    # whose fraction of a second reads like one of the amounts is not
    salaried = load_personas()["salaried"]
    tax = salaried.local_tax[1].fields["市町村民税所得割額"]  # 6 digits, like microseconds
    for leaked in (salaried.display_name.split("（")[0], f"income tax {tax} yen"):
        with pytest.raises(AssertionError, match="salaried"):
            assert_consistent(Leaky(tables.client, tables.state, tables.audit, tables.partners, leaked))
    stamp = f"2026-11-27T15:51:23.{tax}+00:00"
    assert_consistent(Leaky(tables.client, tables.state, tables.audit, tables.partners, stamp))


class Leaky(Tables):
    """The tables as they are, with ``leaked`` in an extra attribute of the first partner item."""

    def __init__(self, client: Any, state: str, audit: str, partners: str, leaked: str) -> None:
        super().__init__(client, state, audit, partners)
        self.leaked = leaked

    def scan(self, table: str) -> list[dict[str, Any]]:
        items = super().scan(table)
        if table == self.partners and items:
            items[0] = {**items[0], "note": {"S": self.leaked}}
        return items
