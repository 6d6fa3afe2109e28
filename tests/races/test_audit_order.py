"""A pickup racing the seal, made deterministic: the scheduler seals the delivery while a pickup
request is being checked. The audit trail must still say what happened, in order: the pickup's
"provided" record follows the seal, whichever request started first (found by the 200-flow race)."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib import container
from tests.fakes import ShiftedClock
from tests.functional.conftest import Journey
from tests.functional.test_delivery import pick_up, redeemed, run_due
from tests.races.harness import DELIVERED


def audit_trail(dynamodb_client: Any, table: str, flow_id: str) -> tuple[str, ...]:
    items = dynamodb_client.query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"FLOW#{flow_id}"}},
        ConsistentRead=True,
    )["Items"]
    return tuple(item["event"]["S"] for item in items)


def test_a_pickup_checked_while_the_delivery_is_sealed_is_recorded_after_the_seal(
    journey: Journey,
    clock: ShiftedClock,
    dynamodb_client: Any,
    resources: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a partner's token for a retrieving flow, and the scheduler sealing the delivery just as a
    # pickup (its clock read when the request arrived) reads the flow (since issue [13] the pickup's
    # one read, which brings the token's fingerprint, the flow and the delivery together)
    token, flow_id = redeemed(journey)
    store = container.get_container().state_store
    read_flow = store.flow_for_pickup

    def sealed_meanwhile(wanted: str, *, now: Any) -> Any:
        monkeypatch.setattr(store, "flow_for_pickup", read_flow)
        assert run_due() == {"ready": 1}
        return read_flow(wanted, now=now)

    monkeypatch.setattr(store, "flow_for_pickup", sealed_meanwhile)
    # WHEN that pickup goes on
    answer = pick_up(journey, token)
    # THEN it hands the delivery over, and the trail records the seal before the handover
    assert answer.status_code == 200, answer.body
    assert audit_trail(dynamodb_client, resources["RELAY_AUDIT_TABLE"], flow_id) == DELIVERED
