"""``relayctl audit`` against moto: an untouched log verifies, and every kind of tampering with the
records or the checkpoints in DynamoDB makes ``verify`` fail naming the spot; export by date range."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from joserfc import jws
from joserfc.jwk import ECKey

from chalicelib.adapters.dynamodb_audit import DynamoAuditLog, index_attributes
from chalicelib.adapters.dynamodb_state import DynamoStateStore, audit_sort_key
from chalicelib.adapters.kms_signer import KmsSigner
from chalicelib.adapters.s3_anchor import S3HeadAnchor
from chalicelib.domain.audit import AuditEvent, AuditRecord
from chalicelib.domain.checkpoints import (
    CHECKPOINT_TYP,
    SETTLE,
    CheckpointService,
    b64,
    parse_head,
)
from chalicelib.domain.sealing import sign_jwt
from chalicelib.domain.tiles import TileId
from relayctl.audit import keys_from_jwks
from relayctl.cli import main
from tests.conftest import REGION
from tests.fakes import FixedClock

ISSUER = "https://myna-relay.test"
# Recent days: a checkpoint reads every day from the last one covered up to now (16 queries a day).
_MIDNIGHT = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
DAYS = tuple(_MIDNIGHT - timedelta(days=back) for back in (4, 3, 2))
DAY = [f"{day:%Y-%m-%d}" for day in (*DAYS, DAYS[2] + timedelta(days=1))]  # the fourth: the newer records
JAPANESE_HEADERS = [
    "記録番号",
    "記録日時",
    "事象",
    "連携番号",
    "情報照会者",
    "情報照会者名",
    "情報提供者",
    "提供元市区町村",
    "特定個人情報の項目",
    "項目コード",
    "事務（利用目的）",
    "提供の求めの日時",
    "提供の日時",
    "結果",
    "仮名ID",
    "不開示",
]
# Records stored before the 不開示 flag existed: their documents lack it, stay as written, and must
# still verify (a leaf is the stored document byte for byte) and export as false.
LEGACY = frozenset({5, 17})
FLAG = ',"withheld_from_disclosure":false'


def append_legacy(store: DynamoStateStore, record: AuditRecord) -> None:
    """Store ``record`` as the relay wrote it before the flag: its document without the field."""
    put = store._audit_put(record)["Put"]
    document = put["Item"]["document"]["S"]
    assert FLAG in document
    legacy = document.replace(FLAG, "")
    put["Item"].update(
        index_attributes(
            record_id=record.record_id,
            requester_id=record.requester_id,
            occurred_at=record.occurred_at,
            document=legacy,
        ),
        document={"S": legacy},
    )
    store._client.put_item(**put)


class Run:
    def __init__(self, status: int, out: str, err: str) -> None:
        self.status, self.out, self.err = status, out, err


@dataclass
class AuditLog:
    """Twenty records over three days under three checkpoints (8, 14, 20), and two newer ones."""

    client: Any
    table: str
    kms: Any
    signing_key: str
    records: list[AuditRecord]
    s3: Any
    bucket: str

    def key(self, n: int) -> str:
        pk, sk = self.item_key(n)
        return f"{pk}|{sk}"

    def item_key(self, n: int) -> tuple[str, str]:
        record = self.records[n]
        return f"FLOW#{record.interaction_id}", audit_sort_key(record.occurred_at, 0, record.record_id)

    def get(self, pk: str, sk: str) -> dict[str, Any]:
        item: dict[str, Any] = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        )["Item"]
        return item

    def put(self, item: dict[str, Any]) -> None:
        self.client.put_item(TableName=self.table, Item=item)

    def delete(self, pk: str, sk: str) -> None:
        self.client.delete_item(TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}})

    def checkpoint_item(self, seq: int) -> dict[str, Any]:
        return self.get("CHECKPOINT", f"{seq:012d}")

    def edit_checkpoint(self, seq: int, edit: Callable[[dict[str, Any]], None]) -> None:
        item = self.checkpoint_item(seq)
        document = json.loads(item["document"]["S"])
        edit(document)
        item["document"] = {"S": json.dumps(document, separators=(",", ":"))}
        self.put(item)

    def jwk(self) -> dict[str, Any]:
        return KmsSigner(self.kms, self.signing_key).public_jwk()

    def head(self, seq: int) -> Any:
        item = self.checkpoint_item(seq)
        return parse_head(item["document"]["S"], item["signed_head"]["S"])

    def tile(self, level: int, index: int, width: int) -> dict[str, Any]:
        return self.get(f"TILE#{level}#{index}", f"{width:03d}")

    def edit_leaves(self, seq: int, edit: Callable[[list[str]], None]) -> None:
        item = self.get("CHECKPOINT#LEAVES", f"{seq:012d}")
        keys = item["keys"]["S"].split("\n")
        edit(keys)
        self.put({**item, "keys": {"S": "\n".join(keys)}})


def audit_record(n: int, at: datetime) -> AuditRecord:
    return AuditRecord(
        record_id=f"rec{n:04d}",
        occurred_at=at,
        event=AuditEvent.PICKED_UP if n % 4 == 3 else AuditEvent.REQUEST_PUSHED,
        interaction_id=f"flow-{n // 4:02d}",
        requester_id="acme-bank",
        requester_name="アクメ銀行",
        resident_pseudonym=f"pseudonym-{n // 4}",
        municipalities=("横浜市", "川崎市") if n % 4 == 3 else (),
        dataset="local_tax",
        dataset_code="TM000000000002",
        dataset_name_ja="地方税関係情報",
        purpose_id="loan-screening",
        requested_at=at - timedelta(minutes=1),
        provided_at=at if n % 4 == 3 else None,
        outcome="ok",
    )


@pytest.fixture
def log(resources: dict[str, str], dynamodb_client: Any, kms_client: Any) -> AuditLog:
    table, signing_key = resources["RELAY_AUDIT_TABLE"], resources["RELAY_SIGNING_KEY_ID"]
    s3 = boto3.client("s3", region_name=REGION)
    bucket = resources["RELAY_HEADS_BUCKET"]
    store = DynamoStateStore(dynamodb_client, resources["RELAY_STATE_TABLE"], audit_table=table)
    # Records 0-7 on day 1, 8-15 on day 2, 16-19 on day 3: ten minutes apart from 01:00 (UTC).
    records = [audit_record(n, DAYS[n // 8] + timedelta(hours=1, minutes=10 * (n % 8))) for n in range(20)]
    # Two newer records, after the last checkpoint: 00:00:10 and 00:00:20 on day 4.
    records += [audit_record(n, DAYS[2] + timedelta(days=1, seconds=10 * (n - 19))) for n in (20, 21)]
    for n, record in enumerate(records):
        if n in LEGACY:
            append_legacy(store, record)
        else:
            store.append_audit(record)
    clock = FixedClock(DAYS[1])
    service = CheckpointService(
        store=DynamoAuditLog(dynamodb_client, table),
        signer=KmsSigner(kms_client, signing_key),
        clock=clock,
        issuer=ISSUER,
        anchor=S3HeadAnchor(s3, bucket),
    )
    sizes = []
    for now in (DAYS[1], records[14].occurred_at + SETTLE / 2, DAYS[2] + timedelta(days=1)):
        clock.current = now
        checkpoint = service.checkpoint()
        assert checkpoint is not None
        sizes.append(checkpoint.tree_size)
    assert sizes == [8, 14, 20]
    return AuditLog(dynamodb_client, table, kms_client, signing_key, records, s3, bucket)


@pytest.fixture
def relayctl(resources: dict[str, str]) -> Callable[..., Run]:
    def run(*argv: str) -> Run:
        out, err = io.StringIO(), io.StringIO()
        status = main(["--stage", "test", "audit", *argv], out=out, err=err)
        return Run(status, out.getvalue(), err.getvalue())

    return run


def refused(run: Run, message: str) -> None:
    assert run.status == 1, run.out
    assert run.err.startswith("relayctl: "), run.err
    assert message in run.err, run.err
    assert "Traceback" not in run.err
    assert len(run.err.splitlines()) == 1


# -- verify: an untouched log ---------------------------------------------------------------------


def test_an_untouched_log_verifies(log: AuditLog, relayctl: Callable[..., Run]) -> None:
    run = relayctl("verify")
    assert run.status == 0, run.err
    assert run.out.splitlines()[0] == (
        "verified 3 checkpoints covering 20 records; 2 newer records not yet checkpointed"
    )
    assert "latest signed head: checkpoint 3" in run.out


def test_an_empty_log_verifies(resources: dict[str, str], relayctl: Callable[..., Run]) -> None:
    run = relayctl("verify")
    assert run.status == 0, run.err
    assert run.out.splitlines() == [
        "verified 0 checkpoints covering 0 records; 0 newer records not yet checkpointed",
        "anchored in s3://myna-relay-test-audit-heads: 0 of them",
    ]


def test_the_published_jwks_verifies(log: AuditLog, relayctl: Callable[..., Run], tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [log.jwk()]}), encoding="utf-8")
    run = relayctl("verify", "--jwks", str(path))
    assert run.status == 0, run.err
    assert run.out.startswith("verified 3 checkpoints covering 20 records")


def test_checkpoint_on_demand_covers_the_newer_records(log: AuditLog, relayctl: Callable[..., Run]) -> None:
    made = relayctl("checkpoint")
    assert made.status == 0, made.err
    assert made.out.startswith(f"checkpoint 4: 2 records through {log.item_key(21)[1]}; tree size 22")
    again = relayctl("checkpoint")
    assert again.out.strip() == "no records to checkpoint (a record is covered once it is 60 s old)"
    verified = relayctl("verify")
    assert verified.status == 0, verified.err
    assert verified.out.startswith("verified 4 checkpoints covering 22 records; 0 newer records")
    head = log.head(4)
    claims = json.loads(jws.extract_compact(head.signed_head.encode()).payload)
    assert claims["iss"] == ISSUER


# -- verify: tampered records ----------------------------------------------------------------------


def test_an_altered_record_is_named(log: AuditLog, relayctl: Callable[..., Run]) -> None:
    pk, sk = log.item_key(11)
    item = log.get(pk, sk)
    assert '"outcome":"ok"' in item["document"]["S"]
    item["document"] = {"S": item["document"]["S"].replace('"outcome":"ok"', '"outcome":"ox"')}
    log.put(item)
    refused(relayctl("verify"), f"record {log.key(11)}: altered (checkpoint 2, leaf 11)")


def test_a_deleted_record_is_named(log: AuditLog, relayctl: Callable[..., Run]) -> None:
    log.delete(*log.item_key(3))
    refused(relayctl("verify"), f"record {log.key(3)}: deleted (checkpoint 1, leaf 3)")


def test_a_record_inserted_among_covered_ones_is_named(
    log: AuditLog, relayctl: Callable[..., Run], resources: dict[str, str]
) -> None:
    forged = audit_record(99, log.records[9].occurred_at + timedelta(minutes=5))
    DynamoStateStore(log.client, resources["RELAY_STATE_TABLE"], audit_table=log.table).append_audit(forged)
    key = f"FLOW#{forged.interaction_id}|{audit_sort_key(forged.occurred_at, 0, forged.record_id)}"
    refused(relayctl("verify"), f"record {key}: not covered by any checkpoint (inserted or moved)")


def test_a_moved_record_is_named(log: AuditLog, relayctl: Callable[..., Run]) -> None:
    pk, sk = log.item_key(5)
    item = log.get(pk, sk)
    log.delete(pk, sk)
    moved_sk = audit_sort_key(log.records[5].occurred_at + timedelta(seconds=1), 0, log.records[5].record_id)
    log.put({**item, "sk": {"S": moved_sk}})
    refused(relayctl("verify"), f"record {log.key(5)}: moved to {pk}|{moved_sk} (checkpoint 1, leaf 5)")


def test_a_record_moved_and_altered_is_deleted_and_inserted(
    log: AuditLog, relayctl: Callable[..., Run]
) -> None:
    pk, sk = log.item_key(5)
    item = log.get(pk, sk)
    log.delete(pk, sk)
    document = item["document"]["S"].replace('"outcome":"ok"', '"outcome":"ox"')
    log.put({**item, "sk": {"S": sk.replace("T01:50", "T01:51")}, "document": {"S": document}})
    refused(relayctl("verify"), f"record {log.key(5)}: deleted (checkpoint 1, leaf 5)")


def test_a_foreign_item_in_the_audit_table_is_named(log: AuditLog, relayctl: Callable[..., Run]) -> None:
    log.put({"pk": {"S": "NOTE#1"}, "sk": {"S": "x"}, "document": {"S": "{}"}})
    refused(relayctl("verify"), "item NOTE#1|x: neither an audit record nor a checkpoint")


# -- verify: tampered checkpoints ------------------------------------------------------------------


def test_an_altered_checkpoint_root_is_named(log: AuditLog, relayctl: Callable[..., Run]) -> None:
    log.edit_checkpoint(2, lambda document: document.update(root=b64(b"\x07" * 32)))
    refused(relayctl("verify"), "checkpoint 2: signed head does not match its stored document (root)")


def test_an_altered_leaf_tile_is_named_by_the_signed_root(
    log: AuditLog, relayctl: Callable[..., Run]
) -> None:
    # GIVEN one leaf hash of the level-0 tile the leaves are read from, bit-flipped
    tile = log.tile(0, 0, 20)
    data = bytearray(tile["hashes"]["B"])
    data[3 * 32] ^= 0x01
    log.put({**tile, "hashes": {"B": bytes(data)}})
    # THEN the first checkpoint over it no longer has its signed root
    refused(relayctl("verify"), "checkpoint 1: root does not match its leaf tiles (tile/0/000.p/20)")


@pytest.mark.parametrize(
    ("tile", "damage"),
    [((0, 0, 8), "flip"), ((0, 0, 14), "truncate"), ((0, 0, 8), "delete")],
)
def test_a_damaged_partial_tile_of_an_earlier_checkpoint_is_named(
    log: AuditLog, relayctl: Callable[..., Run], tile: tuple[int, int, int], damage: str
) -> None:
    # GIVEN a partial tile a proof against an earlier checkpoint would read, damaged
    level, index, width = tile
    item = log.tile(level, index, width)
    seq = {8: 1, 14: 2}[width]
    path = TileId(level, index, width).path()
    if damage == "delete":
        log.delete(item["pk"]["S"], item["sk"]["S"])
        expected = f"tile {path}: missing (checkpoint {seq})"
    else:
        data = bytearray(item["hashes"]["B"])
        if damage == "flip":
            data[-1] ^= 0x80
        else:
            del data[-32:]
        log.put({**item, "hashes": {"B": bytes(data)}})
        expected = f"tile {path}: altered, it does not match the signed tree (checkpoint {seq})"
    # THEN verify names it (the proofs against that checkpoint would fail)
    refused(relayctl("verify", "--no-anchor"), expected)


def test_reordered_leaves_are_named(log: AuditLog, relayctl: Callable[..., Run]) -> None:
    def edit(keys: list[str]) -> None:
        keys[1], keys[2] = keys[2], keys[1]

    log.edit_leaves(2, edit)
    refused(relayctl("verify"), f"checkpoint 2: leaf 10 ({log.key(9)}) is out of order")


def test_an_altered_previous_link_is_named(log: AuditLog, relayctl: Callable[..., Run]) -> None:
    log.edit_checkpoint(3, lambda document: document.update(previous=b64(b"\x00" * 32)))
    refused(relayctl("verify"), "checkpoint 3: signed head does not match its stored document (previous)")


def test_a_resigned_earlier_checkpoint_breaks_the_next_link(
    log: AuditLog, relayctl: Callable[..., Run]
) -> None:
    item = log.checkpoint_item(1)
    checkpoint = log.head(1)
    resigned = sign_jwt(
        checkpoint.head_claims(ISSUER), signer=KmsSigner(log.kms, log.signing_key), typ=CHECKPOINT_TYP
    )
    assert resigned != checkpoint.signed_head  # ECDSA: a fresh signature over the same claims
    log.put({**item, "signed_head": {"S": resigned}})
    refused(relayctl("verify", "--no-anchor"), "checkpoint 2: link to checkpoint 1 broken")
    # and against the write-once copy, the rewritten head itself is named
    refused(
        relayctl("verify"), "checkpoint 1: differs from its write-once copy in myna-relay-test-audit-heads"
    )


def test_an_unreadable_checkpoint_document_is_named(log: AuditLog, relayctl: Callable[..., Run]) -> None:
    log.put({**log.checkpoint_item(2), "document": {"S": "{not json"}})
    refused(relayctl("verify"), "checkpoint 2: stored document is unreadable")


def test_a_deleted_checkpoint_is_a_gap(log: AuditLog, relayctl: Callable[..., Run]) -> None:
    log.delete("CHECKPOINT", f"{2:012d}")
    refused(relayctl("verify"), "checkpoint sequence gap at 2")


def test_a_forged_signature_is_named(log: AuditLog, relayctl: Callable[..., Run]) -> None:
    item = log.checkpoint_item(2)
    signed = jws.extract_compact(item["signed_head"]["S"].encode())
    forger = ECKey.generate_key("P-256")
    forged = jws.serialize_compact(dict(signed.headers()), signed.payload, forger, algorithms=["ES256"])
    assert jws.extract_compact(forged.encode()).headers()["kid"] == log.jwk()["kid"]
    log.put({**item, "signed_head": {"S": forged}})
    refused(relayctl("verify"), "checkpoint 2: signature does not verify")


def test_another_jwks_is_refused(log: AuditLog, relayctl: Callable[..., Run], tmp_path: Path) -> None:
    other = dict(ECKey.generate_key("P-256").as_dict(private=False))
    same_kid = tmp_path / "same-kid.json"
    same_kid.write_text(json.dumps({"keys": [{**other, "kid": log.jwk()["kid"]}]}), encoding="utf-8")
    refused(relayctl("verify", "--jwks", str(same_kid)), "checkpoint 1: signature does not verify")
    other_kid = tmp_path / "other-kid.json"
    other_kid.write_text(json.dumps({"keys": [{**other, "kid": "other-1"}]}), encoding="utf-8")
    refused(
        relayctl("verify", "--jwks", str(other_kid)),
        f"checkpoint 1: signed by key '{log.jwk()['kid']}', which is not in {other_kid}",
    )
    not_jwks = tmp_path / "not-jwks.json"
    not_jwks.write_text("[]", encoding="utf-8")
    refused(relayctl("verify", "--jwks", str(not_jwks)), "is not a JWKS")


# -- heads kept elsewhere: the anchor bucket and a partner's trusted head ---------------------------


def delete_latest_checkpoint(log: AuditLog, seq: int) -> None:
    """What an operator with table access would do to hide the last records: drop the latest head."""
    for pk in ("CHECKPOINT", "CHECKPOINT#LEAVES", "CHECKPOINT#PUBLISHED"):
        log.delete(pk, f"{seq:012d}")


def test_a_deleted_latest_checkpoint_is_named_against_the_anchor(
    log: AuditLog, relayctl: Callable[..., Run]
) -> None:
    delete_latest_checkpoint(log, 3)
    # the table alone still looks whole: its records now read as not yet checkpointed
    alone = relayctl("verify", "--no-anchor")
    assert alone.status == 0, alone.err
    assert alone.out.startswith("verified 2 checkpoints covering 14 records; 8 newer records")
    refused(
        relayctl("verify"),
        "checkpoint 3: in the anchor bucket myna-relay-test-audit-heads but not in the table",
    )


def test_anchored_heads_cannot_be_deleted_or_overwritten(log: AuditLog) -> None:
    # GIVEN the compliance-mode retention the bucket puts on every head
    versions = log.s3.list_object_versions(Bucket=log.bucket, Prefix="checkpoints/")["Versions"]
    assert len(versions) == 3
    head = log.s3.head_object(Bucket=log.bucket, Key=versions[0]["Key"])
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC)
    # WHEN the operator tries to delete one: THEN it is refused
    with pytest.raises(log.s3.exceptions.ClientError, match="AccessDenied"):
        log.s3.delete_object(Bucket=log.bucket, Key=versions[0]["Key"], VersionId=versions[0]["VersionId"])


def test_a_delete_marker_on_the_latest_anchored_head_does_not_hide_it(
    log: AuditLog, relayctl: Callable[..., Run]
) -> None:
    # GIVEN an operator who dropped the latest head from the table and, since Object Lock keeps
    # versions but lets anyone with s3:DeleteObject put a delete marker, hid its anchored copy too
    delete_latest_checkpoint(log, 3)
    log.s3.delete_object(Bucket=log.bucket, Key="checkpoints/000000000003.json")
    with pytest.raises(log.s3.exceptions.ClientError, match="NoSuchKey"):
        log.s3.get_object(Bucket=log.bucket, Key="checkpoints/000000000003.json")
    # THEN verify still finds the head: it lists versions and delete markers, not current objects
    refused(
        relayctl("verify"),
        "checkpoint 3: in the anchor bucket myna-relay-test-audit-heads but not in the table",
    )


def test_a_second_version_written_behind_a_delete_marker_is_named(
    log: AuditLog, relayctl: Callable[..., Run]
) -> None:
    # GIVEN a delete marker on an anchored head, then another body written under its key (the
    # marker makes If-None-Match pass): the current object now says something else
    key = "checkpoints/000000000002.json"
    log.s3.delete_object(Bucket=log.bucket, Key=key)
    log.s3.put_object(
        Bucket=log.bucket,
        Key=key,
        Body=b'{"document":"{}","signed_head":"forged"}',
        ChecksumAlgorithm="SHA256",
    )
    # THEN verify names the head whose key was touched, whatever its current version says
    refused(
        relayctl("verify"),
        "checkpoint 2: its key in myna-relay-test-audit-heads has 1 delete marker(s) and 1 later version(s)",
    )


def trusted_head_file(tmp_path: Path, signed_head: str) -> str:
    path = tmp_path / "head.json"
    path.write_text(json.dumps({"seq": 0, "signed_tree_head": signed_head}), encoding="utf-8")
    return str(path)


def test_verify_from_a_trusted_head_reads_only_what_came_after(
    log: AuditLog, relayctl: Callable[..., Run], tmp_path: Path
) -> None:
    # GIVEN a partner kept checkpoint 2, and a record covered only by checkpoint 1 was later damaged
    pk, sk = log.item_key(2)
    log.put({**log.get(pk, sk), "document": {"S": "{}"}})
    run = relayctl("verify", "--trusted-head", trusted_head_file(tmp_path, log.head(2).signed_head))
    # THEN verification starts at the trusted head (what it covers is the partner's to vouch for)
    assert run.status == 0, run.err
    assert run.out.startswith(
        "verified 1 checkpoints after trusted checkpoint 2 covering 20 records; 2 newer records"
    )
    # and a record after it is still checked
    pk, sk = log.item_key(17)
    log.put({**log.get(pk, sk), "document": {"S": "{}"}})
    refused(
        relayctl("verify", "--trusted-head", trusted_head_file(tmp_path, log.head(2).signed_head)),
        f"record {log.key(17)}: altered (checkpoint 3, leaf 17)",
    )


def test_a_rolled_back_log_is_named_against_a_trusted_head(
    log: AuditLog, relayctl: Callable[..., Run], tmp_path: Path
) -> None:
    kept = log.head(3).signed_head
    delete_latest_checkpoint(log, 3)
    refused(
        relayctl("verify", "--no-anchor", "--trusted-head", trusted_head_file(tmp_path, kept)),
        "trusted head: the log has no checkpoint 3 (rolled back",
    )


def test_a_forked_head_shown_to_one_partner_is_named(
    log: AuditLog, relayctl: Callable[..., Run], tmp_path: Path
) -> None:
    # GIVEN a head for checkpoint 2 signed by the service over another tree (shown to one partner)
    genuine = log.head(2)
    claims = {**genuine.head_claims(ISSUER), "root": b64(b"\x05" * 32)}
    forked = sign_jwt(claims, signer=KmsSigner(log.kms, log.signing_key), typ=CHECKPOINT_TYP)
    # THEN the partner's head does not match the log's
    refused(
        relayctl("verify", "--trusted-head", trusted_head_file(tmp_path, forked)),
        "trusted head: checkpoint 2 in the log has another tree",
    )


def test_a_trusted_head_needs_the_service_signature(
    log: AuditLog, relayctl: Callable[..., Run], tmp_path: Path
) -> None:
    signed = jws.extract_compact(log.head(2).signed_head.encode())
    forger = ECKey.generate_key("P-256")
    forged = jws.serialize_compact(dict(signed.headers()), signed.payload, forger, algorithms=["ES256"])
    refused(
        relayctl("verify", "--trusted-head", trusted_head_file(tmp_path, forged)),
        "trusted head: signature does not verify",
    )


def test_records_past_their_retention_may_be_gone(log: AuditLog, relayctl: Callable[..., Run]) -> None:
    # GIVEN the first day's records expired (DynamoDB's TTL deleted two of them)
    log.delete(*log.item_key(3))
    log.delete(*log.item_key(4))
    # THEN the tree still verifies the retained suffix, counting what expired
    run = relayctl("verify", "--retention-days", "3")
    assert run.status == 0, run.err
    assert run.out.startswith("verified 3 checkpoints covering 20 records (2 expired by retention); 2 newer")
    # while the same deletion within the retention is named
    refused(relayctl("verify"), f"record {log.key(3)}: deleted (checkpoint 1, leaf 3)")


# -- export ----------------------------------------------------------------------------------------


def test_jsonl_export_is_the_stored_documents_of_the_range_in_key_order(
    log: AuditLog, relayctl: Callable[..., Run]
) -> None:
    run = relayctl("export", "--from", DAY[1], "--to", DAY[2], "--format", "jsonl")
    assert run.status == 0, run.err
    lines = run.out.splitlines()
    assert [json.loads(line)["record_id"] for line in lines] == [f"rec{n:04d}" for n in range(8, 20)]
    assert lines[0] == log.get(*log.item_key(8))["document"]["S"]  # byte for byte: the leaf
    # the 不開示 flag is in every new document; one stored before it existed is exported as written
    flags = {
        json.loads(line)["record_id"]: json.loads(line).get("withheld_from_disclosure") for line in lines
    }
    assert flags.pop("rec0017") is None
    assert set(flags.values()) == {False}
    one_day = relayctl("export", "--from", DAY[3], "--to", DAY[3])
    assert [json.loads(line)["record_id"] for line in one_day.out.splitlines()] == ["rec0020", "rec0021"]


def test_csv_export_with_japanese_headers_to_a_file(
    log: AuditLog, relayctl: Callable[..., Run], tmp_path: Path
) -> None:
    path = tmp_path / "records.csv"
    run = relayctl(
        "export", "--from", DAY[0], "--to", DAY[0], "--format", "csv",
        "--japanese-headers", "--output", str(path),
    )  # fmt: skip
    assert run.status == 0, run.err
    assert run.out.strip() == f"exported 8 records ({DAY[0]} to {DAY[0]}) to {path}"
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # a BOM, so Excel reads UTF-8
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert rows[0] == JAPANESE_HEADERS
    assert len(rows) == 9
    picked_up = rows[4]
    assert picked_up[0] == "rec0003"
    assert picked_up[2] == "picked_up"
    assert picked_up[6] == "マイナポータル"
    assert picked_up[7] == "横浜市、川崎市"
    assert picked_up[8] == "地方税関係情報"
    assert picked_up[12] == f"{DAY[0]}T01:30:00Z"  # 提供の日時, only when provided
    assert rows[1][12] == ""
    # 不開示: false on every record, those stored before the flag existed (rec0005) included
    assert [row[15] for row in rows[1:]] == ["false"] * 8
    assert rows[6][0] == "rec0005"


def test_csv_export_has_english_headers_by_default(log: AuditLog, relayctl: Callable[..., Run]) -> None:
    run = relayctl("export", "--from", DAY[2], "--to", DAY[2], "--format", "csv")
    assert run.status == 0, run.err
    assert not run.out.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(run.out, newline="")))
    assert rows[0][:4] == ["record_id", "occurred_at", "event", "interaction_id"]
    assert rows[0][-1] == "withheld_from_disclosure"
    assert len(rows[0]) == len(JAPANESE_HEADERS)
    assert [row[0] for row in rows[1:]] == [f"rec{n:04d}" for n in range(16, 20)]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--from", "2025-02-30", "--to", "2025-03-01"), "--from '2025-02-30' is not a date (YYYY-MM-DD)"),
        (("--from", "2025-03-01", "--to", "20250302"), "--to '20250302' is not a date (YYYY-MM-DD)"),
        (("--from", "2025-03-02", "--to", "2025-03-01"), "--from 2025-03-02 is after --to 2025-03-01"),
        (
            ("--from", "2025-03-01", "--to", "2025-03-01", "--japanese-headers"),
            "--japanese-headers applies to --format csv only",
        ),
    ],
)
def test_bad_export_options_are_refused(
    relayctl: Callable[..., Run], argv: tuple[str, ...], message: str
) -> None:
    refused(relayctl("export", *argv), message)


def test_a_saved_relay_jwks_with_event_keys_verifies_with_the_kms_key_only(
    log: AuditLog, relayctl: Callable[..., Run], tmp_path: Path
) -> None:
    # GIVEN the relay's JWKS as served since issue [13]: the KMS key, then webhook event keys
    event = {
        **ECKey.generate_key("P-256").as_dict(private=False),
        "kid": "event-20261206T23-0123456789abcdef",
    }
    path = tmp_path / "jwks.json"
    path.write_text(
        json.dumps({"keys": [log.jwk(), {**event, "use": "sig", "alg": "ES256"}]}), encoding="utf-8"
    )
    # THEN the checkpoints verify with the KMS key, and the event key is never one to verify with
    run = relayctl("verify", "--jwks", str(path))
    assert run.status == 0, run.err
    assert list(keys_from_jwks(json.loads(path.read_text(encoding="utf-8")), "saved")) == [log.jwk()["kid"]]
    only_events = tmp_path / "events.json"
    only_events.write_text(json.dumps({"keys": [event]}), encoding="utf-8")
    refused(relayctl("verify", "--jwks", str(only_events)), "has no P-256 ES256 signing key")
