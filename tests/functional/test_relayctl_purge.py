"""``relayctl partners purge-deliveries``: a disabled partner's waiting deliveries are revoked, each
with its payload deleted and its audit record written in one transaction; nobody else's are
touched, an enabled partner is refused, and a second run finds nothing to do."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chalicelib.adapters.dynamodb_state import DynamoStateStore, flow_document
from chalicelib.domain.delivery import StoredDelivery
from chalicelib.domain.flow import Flow, FlowStatus, new_flow_id
from relayctl.cli import main

DISABLED, OTHER = "acme-bank", "other-bank"


class Run:
    def __init__(self, status: int, out: str, err: str) -> None:
        self.status, self.out, self.err = status, out, err


@pytest.fixture
def relayctl(resources: dict[str, str]) -> Callable[..., Run]:
    def run(*argv: str) -> Run:
        out, err = io.StringIO(), io.StringIO()
        status = main(["--stage", "test", *argv], out=out, err=err)
        return Run(status, out.getvalue(), err.getvalue())

    return run


@pytest.fixture
def store(resources: dict[str, str], dynamodb_client: Any) -> DynamoStateStore:
    return DynamoStateStore(
        dynamodb_client, resources["RELAY_STATE_TABLE"], audit_table=resources["RELAY_AUDIT_TABLE"]
    )


@pytest.fixture
def partners(relayctl: Callable[..., Run], partner_document: Callable[..., Any], tmp_path: Path) -> None:
    """Two registered partners: acme-bank (to be disabled by each test as it needs) and other-bank."""
    for partner_id in (DISABLED, OTHER):
        path = tmp_path / f"{partner_id}.json"
        path.write_text(json.dumps(partner_document(id=partner_id), ensure_ascii=False), encoding="utf-8")
        assert relayctl("partners", "register", str(path)).status == 0


def a_flow(partner_id: str, status: FlowStatus, now: datetime) -> Flow:
    return Flow.model_validate(
        {
            "flow_id": new_flow_id(),
            "partner_id": partner_id,
            "partner_name": "アクメ銀行",
            "resident_pseudonym": "p" * 43,
            "purpose_id": "loan-screening",
            "dataset": "local_tax",
            "scope": "local_tax",
            "redirect_uri": "https://bank.example/callback",
            "partner_state": "s" * 43,
            "code_challenge": "c" * 43,
            "status": status,
            "version": 1,
            "created_at": now - timedelta(minutes=5),
            "updated_at": now - timedelta(minutes=5),
            "expires_at": now + timedelta(hours=2),
            "portal_client_id": "SP00000001_AA0001",
            "next_due_at": now + timedelta(seconds=30),
        }
    )


def ready(store: DynamoStateStore, partner_id: str) -> str:
    """A sealed delivery waiting for pickup, written as the sealing run writes it."""
    now = datetime.now(UTC)
    retrieving = a_flow(partner_id, FlowStatus.RETRIEVING, now)
    store.create(retrieving)
    expires_at = now + timedelta(hours=1)
    store.finish(
        retrieving,
        retrieving.moved_to(
            FlowStatus.READY, now=now, ready_at=now, delivery_expires_at=expires_at, next_due_at=expires_at
        ),
        audits=[],
        delivery=StoredDelivery(retrieving.flow_id, partner_id, "sealed.jwe.for.test.only", expires_at),
    )
    return retrieving.flow_id


def retrieving(store: DynamoStateStore, partner_id: str) -> str:
    flow = a_flow(partner_id, FlowStatus.RETRIEVING, datetime.now(UTC))
    store.create(flow)
    return flow.flow_id


def state(dynamodb_client: Any, resources: dict[str, str], flow_id: str) -> tuple[str, str | None, bool]:
    """The flow's status and failure reason, and whether its sealed payload is still stored."""
    table = resources["RELAY_STATE_TABLE"]
    flow = dynamodb_client.get_item(
        TableName=table, Key={"pk": {"S": f"FLOW#{flow_id}"}, "sk": {"S": "FLOW"}}
    )
    delivery = dynamodb_client.get_item(
        TableName=table, Key={"pk": {"S": f"DELIVERY#{flow_id}"}, "sk": {"S": "DELIVERY"}}
    )
    document = flow_document(flow["Item"])
    return document["status"], document.get("failure_reason"), "Item" in delivery


def audit_events(dynamodb_client: Any, resources: dict[str, str], flow_id: str) -> list[tuple[str, str]]:
    items = dynamodb_client.query(
        TableName=resources["RELAY_AUDIT_TABLE"],
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"FLOW#{flow_id}"}},
    )["Items"]
    records = [json.loads(item["document"]["S"]) for item in items if "document" in item]
    return [(record["event"], record["outcome"]) for record in records]


def test_a_disabled_partners_waiting_deliveries_are_revoked_with_a_record_each_and_nothing_else(
    partners: None,
    store: DynamoStateStore,
    relayctl: Callable[..., Run],
    dynamodb_client: Any,
    resources: dict[str, str],
) -> None:
    # GIVEN a disabled partner with two deliveries waiting and one flow still retrieving, and
    # another partner with a delivery waiting
    mine = sorted([ready(store, DISABLED), ready(store, DISABLED)])
    still_retrieving = retrieving(store, DISABLED)
    theirs = ready(store, OTHER)
    assert relayctl("partners", "disable", DISABLED).status == 0
    # WHEN the operator looks first, then purges
    looked = relayctl("partners", "purge-deliveries", DISABLED)
    assert looked.status == 0, looked.err
    assert "2 waiting deliveries would be revoked; nothing changed, run again with --yes" in looked.out
    assert all(state(dynamodb_client, resources, flow_id)[2] for flow_id in mine)
    run = relayctl("partners", "purge-deliveries", DISABLED, "--yes")
    # THEN both are revoked (partner.disabled), their payloads deleted, a record written for each
    assert run.status == 0, run.err
    lines = run.out.splitlines()
    assert lines[0].startswith(
        f"partner {DISABLED}: 2 waiting deliveries revoked (partner.disabled): payload deleted, "
        "audit record written (read 4 live flows of every partner from the due index)"
    )
    assert sorted(line.strip() for line in lines[1:]) == mine
    for flow_id in mine:
        assert state(dynamodb_client, resources, flow_id) == ("revoked", "partner.disabled", False)
        assert audit_events(dynamodb_client, resources, flow_id) == [("revoked", "partner.disabled")]
    # AND the other partner's delivery and the flow still retrieving are untouched
    assert state(dynamodb_client, resources, theirs) == ("ready", None, True)
    assert state(dynamodb_client, resources, still_retrieving) == ("retrieving", None, False)
    assert audit_events(dynamodb_client, resources, theirs) == []
    # AND a second run finds nothing left to do and writes nothing
    again = relayctl("partners", "purge-deliveries", DISABLED, "--yes")
    assert again.status == 0, again.err
    assert again.out.strip() == (
        f"partner {DISABLED}: no waiting deliveries (read 2 live flows of every partner from the due index)"
    )
    for flow_id in mine:
        assert audit_events(dynamodb_client, resources, flow_id) == [("revoked", "partner.disabled")]


def test_an_enabled_partner_is_refused_and_nothing_changes(
    partners: None,
    store: DynamoStateStore,
    relayctl: Callable[..., Run],
    dynamodb_client: Any,
    resources: dict[str, str],
) -> None:
    # GIVEN an enabled partner with a delivery waiting
    flow_id = ready(store, OTHER)
    # WHEN the operator purges its deliveries
    run = relayctl("partners", "purge-deliveries", OTHER, "--yes")
    # THEN the command is refused, saying to disable it first, and the delivery is still there
    assert run.status == 1
    assert run.err.startswith(f"relayctl: partner enabled: partner {OTHER} is enabled: disable it first")
    assert state(dynamodb_client, resources, flow_id) == ("ready", None, True)
    assert audit_events(dynamodb_client, resources, flow_id) == []


def test_an_unknown_partner_is_refused(partners: None, relayctl: Callable[..., Run]) -> None:
    run = relayctl("partners", "purge-deliveries", "no-such-bank", "--yes")
    assert run.status == 1
    assert run.err.startswith("relayctl: unknown partner: ")


def test_the_due_index_is_read_page_by_page_and_lists_only_live_flows(store: DynamoStateStore) -> None:
    # GIVEN three live flows (two partners) and one that has ended
    live = sorted([ready(store, DISABLED), retrieving(store, DISABLED), ready(store, OTHER)])
    now = datetime.now(UTC)
    ended = a_flow(DISABLED, FlowStatus.RETRIEVING, now)
    store.create(ended)
    store.update(ended, ended.moved_to(FlowStatus.FAILED, now=now, failure_reason="retrieval.deadline"))
    # WHEN the sweep reads the index one item a page
    found = sorted(flow.flow_id for flow in store.live_flows(now=now, page_size=1))
    # THEN it finds every live flow once, and not the ended one (out of the sparse index)
    assert found == live
