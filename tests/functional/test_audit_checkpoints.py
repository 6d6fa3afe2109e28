"""Checkpoints on the audit table (moto): what a run reads stays flat as the log grows, a run that
crashes half-way leaves nothing a later run cannot finish, two concurrent runs never make two heads
of one size, and the write-sharded indexes spread one partner's and one day's writes.

And the partner's side over HTTP: the latest signed head, a head by number, and the RFC 9162
consistency proof from a head the partner kept, each behind a fresh client assertion whose
audience is the issuer."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.client
import pytest

from chalicelib import container
from chalicelib.adapters.dynamodb_audit import AUDIT_SHARDS, DynamoAuditLog
from chalicelib.adapters.dynamodb_state import DynamoStateStore
from chalicelib.adapters.kms_signer import KmsSigner
from chalicelib.adapters.s3_anchor import S3HeadAnchor
from chalicelib.domain import merkle
from chalicelib.domain.audit import AuditEvent, AuditRecord
from chalicelib.domain.checkpoints import SETTLE, CheckpointService, unb64
from relayctl.audit import Verifier, keys_from_jwks
from tests.conftest import REGION
from tests.fakes import FixedClock, ShiftedClock
from tests.functional.conftest import ISSUER, Journey
from tests.functional.test_partner_audit import assert_bad_parameter, assert_invalid_token, completed_flow

# Noon, two days ago: the tests step the clock by minutes and days, and counting a day's shards
# must not depend on the hour the suite happens to run (started at 23:55, a test crossed midnight
# and read one day of shards more than it expected).
START = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=2)


def record(n: int, at: datetime, partner: str = "acme-bank") -> AuditRecord:
    return AuditRecord(
        record_id=f"r{n:011d}",
        occurred_at=at,
        event=AuditEvent.REQUEST_PUSHED,
        interaction_id=f"flow-{n // 10:05d}",
        requester_id=partner,
        dataset="local_tax",
        dataset_code="TM000000000002",
        dataset_name_ja="地方税関係情報",
        purpose_id="loan-screening",
        requested_at=at,
        outcome="ok",
    )


class Log:
    def __init__(self, resources: dict[str, str], dynamodb: Any, kms: Any) -> None:
        self.dynamodb, self.kms = dynamodb, kms
        self.table = resources["RELAY_AUDIT_TABLE"]
        self.writer = DynamoStateStore(dynamodb, resources["RELAY_STATE_TABLE"], audit_table=self.table)
        self.store = DynamoAuditLog(dynamodb, self.table)
        self.s3 = boto3.client("s3", region_name=REGION)
        self.anchor = S3HeadAnchor(self.s3, resources["RELAY_HEADS_BUCKET"])
        self.signer = KmsSigner(kms, resources["RELAY_SIGNING_KEY_ID"])
        self.clock = FixedClock(START)
        self.written = 0

    def append(self, count: int, every: timedelta = timedelta(seconds=1)) -> None:
        for _ in range(count):
            self.writer.append_audit(record(self.written, self.clock.current))
            self.written += 1
            self.clock.advance(seconds=every.total_seconds())

    def service(self, **changes: Any) -> CheckpointService:
        fields: dict[str, Any] = {
            "store": self.store,
            "signer": self.signer,
            "clock": self.clock,
            "issuer": ISSUER,
            "anchor": self.anchor,
        }
        fields.update(changes)
        return CheckpointService(**fields)

    def settle(self) -> None:
        self.clock.advance(seconds=SETTLE.total_seconds() + 1)

    def verify(self) -> Any:
        keys = keys_from_jwks({"keys": [self.signer.public_jwk()]}, "kms")
        return Verifier(self.store, keys, "kms", now=self.clock.current, anchor=self.anchor).run()


@pytest.fixture
def log(resources: dict[str, str], dynamodb_client: Any, kms_client: Any) -> Log:
    return Log(resources, dynamodb_client, kms_client)


@pytest.fixture
def dynamodb_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, dict[str, Any], int]]]:
    """Every DynamoDB call: (operation, parameters, items it returned)."""
    seen: list[tuple[str, dict[str, Any], int]] = []
    original = botocore.client.BaseClient._make_api_call

    def counting(self: Any, operation: str, params: dict[str, Any]) -> Any:
        answer = original(self, operation, params)
        if self.meta.service_model.service_name == "dynamodb":
            items = len(answer.get("Items", [])) + (1 if "Item" in answer else 0)
            items += sum(len(found) for found in answer.get("Responses", {}).values())
            seen.append((operation, params, items))
        return answer

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", counting)
    return seen


# -- cost -------------------------------------------------------------------------------------------


def test_a_checkpoint_reads_the_new_records_and_a_few_items_whatever_the_log_holds(
    log: Log, dynamodb_reads: list[tuple[str, dict[str, Any], int]]
) -> None:
    # GIVEN a log grown through many checkpoints
    service = log.service()
    for _ in range(12):
        log.append(60)
        log.settle()
        assert service.checkpoint() is not None
    small_reads: list[int] = []
    for _grown in range(2):
        # WHEN 50 more records are checkpointed
        log.append(50)
        log.settle()
        dynamodb_reads.clear()
        head = service.checkpoint()
        assert head is not None
        assert head.tree_size - head.first_index == 50
        # THEN nothing is scanned, every query carries a Limit, and what was read beyond the new
        # records is a few items: the head, the publishing marker, the edge tiles, the first day
        assert "Scan" not in {operation for operation, _, _ in dynamodb_reads}
        queries = [params for operation, params, _ in dynamodb_reads if operation == "Query"]
        assert all("Limit" in params for params in queries)
        read = sum(items for operation, _, items in dynamodb_reads if operation != "TransactWriteItems")
        small_reads.append(read - 50)
        # (the next round adds 600 more records to the log first)
        log.append(600)
        log.settle()
        assert service.checkpoint() is not None
    assert small_reads[0] == small_reads[1] <= 10
    assert log.verify().covered == log.written


def test_the_first_checkpoint_scans_once_and_a_quiet_spell_is_not_read_again(
    log: Log, dynamodb_reads: list[tuple[str, dict[str, Any], int]]
) -> None:
    service = log.service()
    log.append(5)
    log.settle()
    assert service.checkpoint() is not None
    assert [op for op, _, _ in dynamodb_reads].count("Scan") == 1  # finding the first day, once
    # WHEN nothing happens for five days
    log.clock.advance(days=5)
    dynamodb_reads.clear()
    assert service.checkpoint() is None
    first_quiet_queries = sum(1 for op, _, _ in dynamodb_reads if op == "Query")
    dynamodb_reads.clear()
    log.clock.advance(minutes=10)
    assert service.checkpoint() is None
    # THEN the next run starts from the day the quiet run reached (2 days of shards, not 6)
    later_queries = sum(1 for op, _, _ in dynamodb_reads if op == "Query")
    assert "Scan" not in {op for op, _, _ in dynamodb_reads}
    assert later_queries <= 2 * AUDIT_SHARDS + 1 < first_quiet_queries


# -- faults -----------------------------------------------------------------------------------------


def test_a_run_that_crashes_after_its_commit_is_finished_by_the_next(log: Log) -> None:
    # GIVEN a run that committed its head and then died before publishing it
    log.append(30)
    log.settle()
    crashing = log.service()

    def crash(*_: Any, **__: Any) -> None:
        raise RuntimeError("the function timed out here")

    original = log.store.put_leaf_indexes
    log.store.put_leaf_indexes = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        crashing.checkpoint()
    log.store.put_leaf_indexes = original  # type: ignore[method-assign]
    assert log.store.latest_head() is not None
    assert not log.store.is_published(1)
    assert log.anchor.get(1) is None
    # WHEN the next run comes (with new records)
    log.append(10)
    log.settle()
    head = log.service().checkpoint()
    # THEN it published the first head, then made and published its own
    assert head is not None
    assert head.seq == 2
    assert log.store.is_published(1)
    assert log.store.is_published(2)
    assert log.anchor.get(1) is not None
    _, indexes = log.store.flow_trail("flow-00000")
    assert sorted(indexes.values()) == list(range(10))
    assert log.verify().covered == 40


def test_a_run_that_crashes_before_its_commit_leaves_nothing(log: Log) -> None:
    log.append(30)
    log.settle()
    service = log.service()
    original = log.store.commit

    def crash(*_: Any, **__: Any) -> None:
        raise RuntimeError("the function timed out here")

    log.store.commit = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        service.checkpoint()
    log.store.commit = original  # type: ignore[method-assign]
    assert log.store.latest_head() is None
    head = service.checkpoint()
    assert head is not None
    assert head.seq == 1
    assert head.tree_size == 30


def test_two_concurrent_runs_never_make_two_heads_of_one_size(log: Log) -> None:
    # GIVEN two runs that read the same latest head, one of them later (it sees more records)
    log.append(20)
    log.settle()
    assert log.service().checkpoint() is not None
    log.append(20)
    log.settle()
    early, late = log.service(), log.service()
    original = log.store.commit
    made: list[Any] = []

    def commit_after_the_other(head: Any, keys: Any, tiles: Any) -> None:
        if not made:  # the early run is about to commit: the late one gets there first
            made.append("late")
            log.append(5)
            log.settle()
            log.store.commit = original  # type: ignore[method-assign]
            assert late.checkpoint() is not None
            log.store.commit = commit_after_the_other  # type: ignore[method-assign]
        original(head, keys, tiles)

    log.store.commit = commit_after_the_other  # type: ignore[method-assign]
    # WHEN the early run tries to commit the same sequence number
    assert early.checkpoint() is None
    log.store.commit = original  # type: ignore[method-assign]
    # THEN there is one head 2 (the late run's), and the log verifies
    assert log.store.latest_head() is not None
    assert log.store.latest_head().seq == 2  # type: ignore[union-attr]
    assert log.store.latest_head().tree_size == 45  # type: ignore[union-attr]
    assert log.verify().covered == 45


def test_a_tampered_frontier_stops_the_checkpoints(log: Log) -> None:
    log.append(20)
    log.settle()
    assert log.service().checkpoint() is not None
    item = log.dynamodb.get_item(
        TableName=log.table, Key={"pk": {"S": "CHECKPOINT"}, "sk": {"S": f"{1:012d}"}}
    )["Item"]
    document = json.loads(item["document"]["S"])
    document["frontier"][0] = "A" * 43
    log.dynamodb.put_item(
        TableName=log.table, Item={**item, "document": {"S": json.dumps(document, separators=(",", ":"))}}
    )
    log.append(5)
    log.settle()
    with pytest.raises(Exception, match="edge tiles do not match its frontier"):
        log.service().checkpoint()


# -- the indexes --------------------------------------------------------------------------------------


def test_one_partner_s_month_and_one_day_are_spread_over_every_shard(log: Log) -> None:
    log.append(400, every=timedelta(milliseconds=10))
    items = log.dynamodb.scan(TableName=log.table)["Items"]
    partner_keys = Counter(item["partner_shard"]["S"] for item in items if "partner_shard" in item)
    day_keys = Counter(item["day_shard"]["S"] for item in items if "day_shard" in item)
    assert len(partner_keys) == len(day_keys) == AUDIT_SHARDS
    # no key takes much more than its share (400 / 32 = 12.5)
    assert max(partner_keys.values()) < 30
    assert max(day_keys.values()) < 30


# -- the partner's side, over HTTP ------------------------------------------------------------------


@pytest.fixture
def clock(journey: Journey, monkeypatch: pytest.MonkeyPatch) -> ShiftedClock:
    shifted = ShiftedClock()
    container.reset()
    monkeypatch.setattr(container, "_container", container.Container(clock=shifted))
    journey.partner.clock = shifted.timestamp
    return shifted


def get(journey: Journey, path: str, audience: str = ISSUER) -> Any:
    headers = {"Authorization": f"Bearer {journey.partner.client_assertion(audience)}"}
    return journey.client.http.get(path, headers=headers)


def checkpointed_flow(journey: Journey, clock: ShiftedClock) -> Any:
    completed_flow(journey)
    clock.advance(minutes=2)
    head = container.get_container().checkpoints.checkpoint()
    assert head is not None
    return head


def test_a_partner_fetches_the_latest_head_and_a_proof_from_the_one_it_kept(
    journey: Journey, clock: ShiftedClock
) -> None:
    # GIVEN a partner that kept the first checkpoint's head
    checkpointed_flow(journey, clock)
    kept = json.loads(get(journey, "/v1/audit/checkpoints/latest").body)
    assert kept["seq"] == 1
    # WHEN more flows are checkpointed and it asks for the proof from its head to the latest
    checkpointed_flow(journey, clock)
    latest = get(journey, "/v1/audit/checkpoints/latest")
    assert latest.status_code == 200, latest.body
    assert latest.headers["Cache-Control"] == "no-store"
    head = json.loads(latest.body)
    answer = get(journey, f"/v1/audit/checkpoints/latest/consistency?from={kept['seq']}")
    assert answer.status_code == 200, answer.body
    proof = json.loads(answer.body)
    # THEN the proof shows its head's tree is a prefix of the latest one
    assert proof["first"] == kept
    assert proof["second"] == head
    assert merkle.verify_consistency(
        kept["tree_size"],
        head["tree_size"],
        unb64(kept["root"]),
        unb64(head["root"]),
        [unb64(node) for node in proof["consistency_path"]],
    )
    # AND each head is also served by its number
    assert json.loads(get(journey, "/v1/audit/checkpoints/1").body) == kept


def test_checkpoint_requests_are_refused_with_the_failed_check(journey: Journey, clock: ShiftedClock) -> None:
    # no checkpoint yet
    none = get(journey, "/v1/audit/checkpoints/latest")
    assert none.status_code == 404, none.body
    assert json.loads(none.body)["check"] == "checkpoint"
    checkpointed_flow(journey, clock)
    assert get(journey, "/v1/audit/checkpoints/2").status_code == 404
    assert_bad_parameter(get(journey, "/v1/audit/checkpoints/01"), "checkpoint")
    assert_bad_parameter(get(journey, "/v1/audit/checkpoints/latest/consistency"), "from")
    assert_bad_parameter(get(journey, "/v1/audit/checkpoints/latest/consistency?from=x"), "from")
    assert_bad_parameter(get(journey, "/v1/audit/checkpoints/latest?month=2026-01"), "month")
    assert get(journey, "/v1/audit/checkpoints/1/consistency?from=2").status_code == 404
    # credentials: none, or an assertion for another audience than the issuer
    assert_invalid_token(journey.client.http.get("/v1/audit/checkpoints/latest"), "authorization")
    assert_invalid_token(
        get(journey, "/v1/audit/checkpoints/latest", audience=f"{ISSUER}/v1/audit"), "client_assertion.aud"
    )
