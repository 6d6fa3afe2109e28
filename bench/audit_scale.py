"""Audit at scale: what a checkpoint, a proof and ``relayctl audit verify`` cost as the audit log
grows from 10^4 to 10^7 records, and how many onboardings a second its sharded indexes take.

Checkpoints and proofs run the production code (``CheckpointService``, ``DynamoAuditLog``,
``DynamoStateStore.append_audit``, ``KmsSigner``, ``S3HeadAnchor``) against moto in process, each
size in a fresh child process (``python -m bench.audit_scale checkpoint N``). The N existing leaves
are synthesised straight into tiles: leaf ``i`` is ``leaf_hash("synthetic leaf <i mod 256>")``, so
every full tile of a level is the same tile and any tile of any N is computed in O(levels). Only
the items a run reads are written: the head of checkpoint 1 (size N, its frontier and root derived
from those tiles and signed with the KMS key), its "published" and "first day" markers, the edge
tiles of N and the full tiles on the measured proofs' paths. Then 2,000 real records are appended
after the head's ``through`` and one checkpoint runs, every boto3 call metered (``bench.cpu_flow``'s
``Meter``, DynamoDB units from the real item sizes). The new head's root is checked against the one
computed independently from the synthetic tree and the 2,000 leaves; every proof is verified.

``verify`` runs ``relayctl.audit.Verifier`` over a synthetic ``AuditSource`` (``SyntheticLog``):
N records under checkpoints of 2,000, documents generated on demand from a template, heads signed
with a local ES256 key, tiles computed from the documents (levels above 0 kept, 32 bytes per 256
leaves); each size in a fresh child (``python -m bench.audit_scale verify N``), peak RSS from
/proc. The log is generated, not stored, so the child's peak is the verifier's plus a few MiB.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import hashlib
import itertools
import json
import math
import operator
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bench import prices
from bench.cpu_flow import AWS_ROUND_TRIP_MS, Meter, TableShape, Usage, item_size, lambda_memory_mb
from bench.cpu_flow import Index as TableIndex
from bench.report import ROOT, Section, limit_text
from chalicelib.adapters.dynamodb_audit import (
    AUDIT_SHARDS,
    CHECKPOINT_PK,
    LEAF_INDEX_PREFIX,
    LEAVES_PK,
    PUBLISHED_PK,
    SCAN_PK,
    TILE_PREFIX,
)
from chalicelib.domain import merkle
from chalicelib.domain.checkpoints import (
    CHECKPOINT_TYP,
    MAX_LEAVES_PER_CHECKPOINT,
    LeafEntry,
    TreeHead,
    head_claims,
    head_document,
    head_hash,
)
from chalicelib.domain.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    TileHashes,
    TileId,
    TileWriter,
    edge_tiles,
    entries_at,
)

SIZES = (10_000, 100_000, 1_000_000, 10_000_000)  # existing leaves before the measured checkpoint
VERIFY_SIZES = (10_000, 100_000, 1_000_000)
NEW_RECORDS = MAX_LEAVES_PER_CHECKPOINT  # a full run: the most one checkpoint takes
REPEATS = 3  # checkpoint runs per size, each in a fresh moto; the median CPU is reported
RECORDS_PER_ONBOARDING = 14  # the longest trail of one onboarding (the happy path writes fewer)
FLOWS_IN_BATCH = math.ceil(NEW_RECORDS / RECORDS_PER_ONBOARDING)  # 143 interleaved flows
PARTITION_KEY_WCU_PER_S = 1000  # DynamoDB's ceiling per partition key value (tables and indexes)
FUNCTION = "audit_checkpoint"
ISSUER = "https://myna-relay.test"
REGION = "ap-northeast-1"
STAGE = "test"
RESULT_MARK = "AUDIT-SCALE-RESULT "
MIB = 1024 * 1024

# The measured checkpoint: the clock (fixed) and where the synthetic head left off.
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
THROUGH_AT = NOW - timedelta(hours=2)
SYNTHETIC_THROUGH = f"{THROUGH_AT:%Y-%m-%dT%H:%M:%S.%fZ}#00#synthetic-last"

# The verified log: one record every 10 ms from this instant.
VERIFY_START = datetime(2026, 3, 1, tzinfo=UTC)
VERIFY_STEP = timedelta(milliseconds=10)

HAPPY_PATH = (
    "request_pushed",
    "consent_shown",
    "continued",
    "portal_authorised",
    "retrieval_started",
    "result_received",
    "individual_numbers_removed",
    "sealed",
    "picked_up",
)


# -- the synthetic tree --------------------------------------------------------------------------------


class SyntheticTree:
    """The tree of any size N whose leaf ``i`` is ``leaf_hash(b"synthetic leaf %d" % (i % 256))``.

    Every perfect subtree of 2^h leaves repeats with period ``256 / 2^h`` (and is one hash for
    h >= 8), so a node, a tile, a frontier or a root of any size costs O(levels) hashes."""

    def __init__(self) -> None:
        self._leaves = [merkle.leaf_hash(b"synthetic leaf %d" % r) for r in range(TILE_WIDTH)]
        self._memo: dict[tuple[int, int], bytes] = {}

    def node(self, height: int, index: int) -> bytes:
        """``MTH`` of leaves ``index * 2^height .. (index + 1) * 2^height - 1``."""
        key = (height, index % max(1, TILE_WIDTH >> height))
        found = self._memo.get(key)
        if found is None:
            if height == 0:
                found = self._leaves[key[1]]
            else:
                found = merkle.node_hash(
                    self.node(height - 1, 2 * key[1]), self.node(height - 1, 2 * key[1] + 1)
                )
            self._memo[key] = found
        return found

    def tile(self, tile: TileId) -> bytes:
        height = TILE_HEIGHT * tile.level
        return b"".join(self.node(height, tile.index * TILE_WIDTH + k) for k in range(tile.width))

    def frontier(self, size: int) -> list[bytes]:
        """The roots of the perfect subtrees of ``[0, size)``, largest first (a compact range)."""
        nodes: list[bytes] = []
        start = 0
        for height in reversed(range(size.bit_length())):
            if size & (1 << height):
                nodes.append(self.node(height, start >> height))
                start += 1 << height
        return nodes

    def root(self, size: int) -> bytes:
        return merkle.CompactRange(size, self.frontier(size)).root()


class _AskedTiles:
    """A ``TileSource`` that notes which tiles are asked for and answers zeros of the right width."""

    def __init__(self) -> None:
        self.asked: set[TileId] = set()

    def tiles(self, ids: Iterable[TileId], *, consistent: bool = False) -> dict[TileId, bytes]:
        found = {}
        for tile in ids:
            self.asked.add(tile)
            found[tile] = bytes(merkle.HASH_SIZE * tile.width)
        return found


def tiles_to_seed(size: int, new: int, proof_indexes: Sequence[int]) -> list[TileId]:
    """The tiles of the first ``size`` leaves that the measured run and proofs read: the edge
    tiles of ``size`` (the checkpoint), and the full tiles wholly below ``size`` on the inclusion
    proofs' paths and the consistency proof's (at ``size + new``); the commit writes the rest."""
    asked = _AskedTiles()
    hashes = TileHashes(asked, size + new)
    hashes.prefetch_inclusion(proof_indexes)
    hashes.prefetch_consistency(size)
    below = {
        tile
        for tile in asked.asked
        if tile.full and (tile.index + 1) * TILE_WIDTH ** (tile.level + 1) <= size
    }
    return sorted(below | set(edge_tiles(size)))


# -- metering ------------------------------------------------------------------------------------------


class AuditMeter(Meter):
    """``bench.cpu_flow``'s meter, plus BatchGetItem (billed per item, rounded up to 4 KiB, half
    for eventually consistent reads) and the CPU and wall time of its own bookkeeping in total."""

    def __init__(self) -> None:
        super().__init__()
        self.overhead_cpu = 0.0
        self.overhead_wall = 0.0

    def _overhead(self, cpu: float, wall: float) -> None:
        super()._overhead(cpu, wall)
        self.overhead_cpu += cpu
        self.overhead_wall += wall

    def _account(
        self,
        usage: Usage,
        operation: str,
        params: dict[str, Any],
        result: Any,
        targets: list[tuple[str, str, dict[str, Any], bool]],
        before: list[dict[str, Any] | None],
    ) -> None:
        if operation != "BatchGetItem":
            super()._account(usage, operation, params, result, targets, before)
            return
        if result is None:
            return
        for table, request in params["RequestItems"].items():
            consistent = 1.0 if request.get("ConsistentRead") else 0.5
            for item in result.get("Responses", {}).get(table, []):
                units = max(1, math.ceil(item_size(item) / 4096)) * consistent
                usage.rru += units
                usage.op_rru[operation] += units
                usage.reads[str(item["pk"]["S"]).split("#", 1)[0]] += 1


def _shape(dynamodb: Any, table: str) -> TableShape:
    described = dynamodb.describe_table(TableName=table)["Table"]
    return TableShape(
        keys=tuple(k["AttributeName"] for k in described["KeySchema"]),
        indexes=tuple(
            TableIndex(
                index["IndexName"],
                tuple(k["AttributeName"] for k in index["KeySchema"]),
                index["Projection"]["ProjectionType"],
            )
            for index in described.get("GlobalSecondaryIndexes", [])
        ),
    )


def _projections(dynamodb: Any, table: str) -> dict[str, tuple[str, ...] | None]:
    """Per index, the attributes its items carry (None: all of them)."""
    described = dynamodb.describe_table(TableName=table)["Table"]
    keys = tuple(k["AttributeName"] for k in described["KeySchema"])
    found: dict[str, tuple[str, ...] | None] = {}
    for index in described.get("GlobalSecondaryIndexes", []):
        projection = index["Projection"]
        own = tuple(k["AttributeName"] for k in index["KeySchema"])
        if projection["ProjectionType"] == "ALL":
            found[index["IndexName"]] = None
        else:
            found[index["IndexName"]] = (*keys, *own, *projection.get("NonKeyAttributes", ()))
    return found


@contextlib.contextmanager
def _patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    original = owner.__dict__[name]
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def memory_kib() -> dict[str, int]:
    """``VmHWM`` (peak) and ``VmRSS`` (now) of this process, KiB (``ru_maxrss`` where no /proc)."""
    import resource

    found = {"ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    with contextlib.suppress(OSError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                found[name] = int(value.split()[0])
    return found


def reset_peak() -> int:
    """Start a new peak (``VmHWM``) at the present resident set (Linux ``clear_refs`` 5); the
    present resident set, KiB."""
    gc.collect()
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
        refs.write("5")
    now = memory_kib()
    return now.get("VmRSS", now["ru_maxrss"])


def peak_kib() -> int:
    now = memory_kib()
    return now.get("VmHWM", now["ru_maxrss"])


# -- the measured checkpoint (a child process per size) --------------------------------------------------


class _Clock:
    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now


def _token(kind: str, number: int, length: int) -> str:
    digest = hashlib.sha256(f"{kind}-{number}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:length]


def batch_records(count: int, start: datetime, flows: int) -> list[Any]:
    """``count`` audit records one second apart from ``start``, of ``flows`` onboardings
    interleaved (record ``j`` is flow ``j mod flows``'s next step), like a busy minute's."""
    from chalicelib.domain.audit import AuditEvent, AuditRecord

    records = []
    for j in range(count):
        flow, step = j % flows, j // flows
        event = AuditEvent(HAPPY_PATH[step % len(HAPPY_PATH)])
        at = start + timedelta(seconds=j)
        records.append(
            AuditRecord(
                record_id=_token("record", j, 16),
                occurred_at=at,
                event=event,
                interaction_id=_token("flow", flow, 22),
                requester_id="bench-partner",
                requester_name="ベンチマーク銀行",
                resident_pseudonym=_token("resident", flow, 43),
                municipalities=("東京都千代田区",),
                dataset="local_tax",
                dataset_code="TM000000000002",
                dataset_name_ja="地方税関係情報",
                purpose_id="loan-screening",
                requested_at=start + timedelta(seconds=flow % 60),
                provided_at=at if step >= HAPPY_PATH.index("result_received") else None,
                outcome="ok",
            )
        )
    return records


def _seed(
    dynamodb: Any, table: str, tree: SyntheticTree, size: int, signer: Any, tiles: Sequence[TileId]
) -> int:
    """Checkpoint 1 over the synthetic tree of ``size`` leaves, as a committed and published run
    would have left it; the tiles given. Returns how many tiles were written."""
    from chalicelib.domain.sealing import sign_jwt

    edge = {tile: tree.tile(tile) for tile in edge_tiles(size)}
    frontier = TileWriter(size, edge).compact_range()  # as the checkpoint derives it
    assert list(frontier.hashes) == tree.frontier(size)
    assert frontier.root() == tree.root(size)
    created = THROUGH_AT + timedelta(minutes=2)
    root = frontier.root()
    head = TreeHead(
        seq=1,
        tree_size=size,
        root=root,
        through=SYNTHETIC_THROUGH,
        previous="",
        frontier=frontier.hashes,
        first_index=0,
        created_at=created,
        signed_head=sign_jwt(
            head_claims(ISSUER, 1, size, root, SYNTHETIC_THROUGH, "", created),
            signer=signer,
            typ=CHECKPOINT_TYP,
        ),
    )
    seq = f"{1:012d}"
    items: list[dict[str, Any]] = [
        {
            "pk": {"S": CHECKPOINT_PK},
            "sk": {"S": seq},
            "document": {"S": head_document(head)},
            "signed_head": {"S": head.signed_head},
        },
        {"pk": {"S": PUBLISHED_PK}, "sk": {"S": seq}},
        {
            "pk": {"S": SCAN_PK},
            "sk": {"S": "-"},
            "through": {"S": SYNTHETIC_THROUGH},
            "day": {"S": SYNTHETIC_THROUGH[:10]},
        },
        *(
            {
                "pk": {"S": f"{TILE_PREFIX}{tile.level}#{tile.index}"},
                "sk": {"S": f"{tile.width:03d}"},
                "hashes": {"B": tree.tile(tile)},
            }
            for tile in tiles
        ),
    ]
    for item in items:
        dynamodb.put_item(TableName=table, Item=item)
    return len(tiles)


def _usage_summary(usage: Usage) -> dict[str, Any]:
    return {
        "rru": usage.rru,
        "wru": usage.wru,
        "calls": dict(sorted(usage.calls.items())),
        "op_rru": dict(usage.op_rru),
        "tile_reads": usage.reads.get("TILE", 0),
        "moto_cpu_s": sum(usage.moto_cpu_s.values()),
    }


def _checkpoint_once(size: int, new: int, meter: AuditMeter, first: bool) -> dict[str, Any]:
    import boto3
    from moto import mock_aws

    from chalicelib.adapters.dynamodb_audit import DynamoAuditLog
    from chalicelib.adapters.dynamodb_state import DynamoStateStore
    from chalicelib.adapters.kms_signer import KmsSigner
    from chalicelib.adapters.s3_anchor import S3HeadAnchor
    from chalicelib.domain.checkpoints import CheckpointService
    from infra.bootstrap import ensure_resources

    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        dynamodb, kms, s3 = session.client("dynamodb"), session.client("kms"), session.client("s3")
        resources = ensure_resources(STAGE, dynamodb, kms, s3)
        table = resources["RELAY_AUDIT_TABLE"]
        meter.shapes = {table: _shape(dynamodb, table)}
        meter.peek_client = dynamodb
        signer = KmsSigner(kms, resources["RELAY_SIGNING_KEY_ID"])
        signer.public_jwk()  # fetched once per container: a warm one has it
        store = DynamoAuditLog(dynamodb, table)
        anchor = S3HeadAnchor(s3, resources["RELAY_HEADS_BUCKET"])
        tree = SyntheticTree()

        records = batch_records(new, THROUGH_AT + timedelta(seconds=1), min(FLOWS_IN_BATCH, new))
        receipt_flow = records[0].interaction_id
        receipt_indexes = [size + j for j, r in enumerate(records) if r.interaction_id == receipt_flow]
        proof_index = size // 3
        seeded = _seed(
            dynamodb, table, tree, size, signer, tiles_to_seed(size, new, [proof_index, *receipt_indexes])
        )
        # the records as ``append_audit`` writes them (its items), in batches: setup, not measured
        state = DynamoStateStore(dynamodb, resources["RELAY_STATE_TABLE"], audit_table=table)
        items = [state._audit_put(record)["Put"]["Item"] for record in records]
        for i in range(0, len(items), 25):
            dynamodb.batch_write_item(
                RequestItems={table: [{"PutRequest": {"Item": item}} for item in items[i : i + 25]]}
            )
        service = CheckpointService(
            store=store, signer=signer, clock=_Clock(NOW), issuer=ISSUER, anchor=anchor
        )

        # the run
        usage = Usage()
        rss_before = reset_peak()
        meter.target(usage)
        cpu_overhead, wall_overhead = meter.overhead_cpu, meter.overhead_wall
        cpu, wall = time.process_time(), time.perf_counter()
        head = meter.timed(service.checkpoint)
        cpu = time.process_time() - cpu - (meter.overhead_cpu - cpu_overhead)
        wall = time.perf_counter() - wall - (meter.overhead_wall - wall_overhead)
        run_peak = peak_kib()

        # the new head is the tree of the synthetic leaves and the 2,000 records, computed apart
        assert head is not None
        assert (head.seq, head.first_index, head.tree_size) == (2, size, size + new)
        expected = merkle.CompactRange(size, tree.frontier(size))
        for record in records:  # one second apart: key order is this order
            expected.append(merkle.leaf_hash(record.model_dump_json().encode()))
        assert head.root == expected.root(), "the new head's root is not the tree's"
        assert head.frontier == expected.hashes

        # one inclusion proof of an old leaf, a signed receipt's (one flow's records), a consistency proof
        proof_usage = Usage()
        meter.target(proof_usage)
        proof = meter.timed(lambda: service.inclusion_proofs({"leaf": proof_index}))["leaf"]
        assert merkle.verify_inclusion(
            tree.node(0, proof_index), proof_index, head.tree_size, proof.path, head.root
        )
        trail_usage = Usage()
        meter.target(trail_usage)
        trail, indexes = meter.timed(lambda: store.flow_trail(receipt_flow))
        assert sorted(indexes.values()) == receipt_indexes
        assert len(trail) == len(receipt_indexes)
        receipt_usage = Usage()
        meter.target(receipt_usage)
        proofs = meter.timed(lambda: service.inclusion_proofs(indexes))
        for stored in trail:
            found = proofs[stored.key]
            assert merkle.verify_inclusion(
                stored.leaf, found.leaf_index, head.tree_size, found.path, head.root
            )
        consistency_usage = Usage()
        meter.target(consistency_usage)
        consistency = meter.timed(lambda: service.consistency(1))
        assert merkle.verify_consistency(size, head.tree_size, tree.root(size), head.root, consistency.path)

        run: dict[str, Any] = {
            "cpu_s": cpu,
            "wall_s": wall,
            "rss_before_kib": rss_before,
            "peak_kib": run_peak,
            **_usage_summary(usage),
            "writes": [
                {"operation": w.operation, "kind": w.kind, "bytes": w.new_bytes, "wru": w.units}
                for w in usage.writes
            ],
            "tiles_seeded": seeded,
            "proof": {**_usage_summary(proof_usage), "path": len(proof.path)},
            "receipt_trail": _usage_summary(trail_usage),
            "receipt": {**_usage_summary(receipt_usage), "leaves": len(indexes)},
            "consistency": {**_usage_summary(consistency_usage), "path": len(consistency.path)},
        }
        if first:
            run["record_bytes"] = _record_sizes(dynamodb, table, state, records)
        return run


def _record_sizes(dynamodb: Any, table: str, state: Any, records: Sequence[Any]) -> dict[str, Any]:
    """The stored size of the records and of their index items (what an index write is billed on)."""
    items = [state._audit_put(record)["Put"]["Item"] for record in records]
    sizes = [item_size(item) for item in items]
    indexes: dict[str, int] = {}
    for index, attributes in _projections(dynamodb, table).items():
        projected = [
            item if attributes is None else {k: v for k, v in item.items() if k in attributes}
            for item in items
        ]
        indexes[index] = max(item_size(item) for item in projected)
    return {"mean": statistics.fmean(sizes), "max": max(sizes), "index_max": indexes}


def checkpoint_run(size: int, new: int = NEW_RECORDS, repeats: int = REPEATS) -> dict[str, Any]:
    """``repeats`` checkpoints of ``new`` records on a log of ``size`` leaves, each in a fresh moto."""
    from botocore.client import BaseClient
    from moto.core.botocore_stubber import BotocoreStubber

    from infra.local_aws import make_emulator_faithful

    saved = dict(os.environ)
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ENDPOINT_URL_KMS",
        "AWS_ENDPOINT_URL_S3",
    ):
        os.environ.pop(name, None)  # with one, mock_aws would be bypassed
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }
    )
    make_emulator_faithful()
    meter = AuditMeter()
    original_call = BaseClient.__dict__["_make_api_call"]
    original_stub = BotocoreStubber.__dict__["__call__"]

    def api_call(self: Any, operation: str, params: Any) -> Any:
        return meter.api_call(original_call, self, operation, params)

    def stub_call(self: Any, event_name: str, request: Any, **kw: Any) -> Any:
        return meter.moto_call(original_stub, self, event_name, request, **kw)

    try:
        with (
            _patched(BaseClient, "_make_api_call", api_call),
            _patched(BotocoreStubber, "__call__", stub_call),
        ):
            runs = [_checkpoint_once(size, new, meter, first=i == 0) for i in range(repeats)]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    median = runs[sorted(range(repeats), key=lambda i: runs[i]["cpu_s"])[repeats // 2]]
    return {
        "size": size,
        "new": new,
        "repeats": repeats,
        "cpu_s_runs": [r["cpu_s"] for r in runs],
        "cpu_s": median["cpu_s"],
        "wall_s": median["wall_s"],
        "moto_cpu_s": median["moto_cpu_s"],
        "cpu_without_moto_s": statistics.median(r["cpu_s"] - r["moto_cpu_s"] for r in runs),
        "run_memory_kib": max(r["peak_kib"] - r["rss_before_kib"] for r in runs),
        "process_peak_kib": max(r["peak_kib"] for r in runs),
        "last": {k: v for k, v in runs[-1].items() if k not in ("cpu_s", "wall_s")},
        "record_bytes": runs[0]["record_bytes"],
    }


# -- the verified log: a synthetic AuditSource (a child process per size) ------------------------------


class LocalSigner:
    """An ES256 key held here (the benchmark's stand-in for the KMS key)."""

    def __init__(self) -> None:
        from joserfc.jwk import ECKey

        self._key = ECKey.generate_key("P-256")
        self._jwk = {
            **self._key.as_dict(private=False),
            "kid": self._key.thumbprint(),
            "use": "sig",
            "alg": "ES256",
        }

    def public_jwk(self) -> dict[str, Any]:
        return dict(self._jwk)

    def sign(self, message: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        private = self._key.private_key
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(private.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


class _Template:
    """Record documents as ``AuditRecord.model_dump_json()`` writes them, from a template."""

    def __init__(self) -> None:
        from chalicelib.domain.audit import AuditEvent, AuditRecord

        marker = datetime(1999, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
        text = AuditRecord(
            record_id="@RECORD@",
            occurred_at=marker,
            event=AuditEvent.CONTINUED,
            interaction_id="@FLOW@",
            requester_id="bench-partner",
            requester_name="ベンチマーク銀行",
            resident_pseudonym="@RESIDENT@",
            municipalities=("東京都千代田区",),
            dataset="local_tax",
            dataset_code="TM000000000002",
            dataset_name_ja="地方税関係情報",
            purpose_id="loan-screening",
            requested_at=marker,
            outcome="ok",
        ).model_dump_json()
        marker_text = json.dumps(marker.isoformat().replace("+00:00", "Z"))[1:-1]
        text = text.replace('"event":"continued"', '"event":"@EVENT@"').replace(marker_text, "@AT@")
        fields = ("@RECORD@", "@FLOW@", "@RESIDENT@", "@EVENT@", "@AT@")
        assert all(field in text for field in fields), text
        pattern = re.compile("|".join(fields))
        self._order = operator.itemgetter(*(fields.index(found) for found in pattern.findall(text)))
        self._text = pattern.sub("%s", text.replace("%", "%%"))

    def document(self, record: str, flow: str, resident: str, event: str, at: str) -> str:
        return str(self._text % self._order((record, flow, resident, event, at)))


class SyntheticLog:
    """``relayctl.audit.AuditSource`` over ``size`` records under checkpoints of ``per`` leaves, as
    a table that ``DynamoStateStore`` and ``CheckpointService`` filled would hold them. Documents
    are generated when read; what is kept is the hashes above level 0 (one per 256 leaves), the
    heads, and a few level-0 blocks. ``spent`` is the CPU it spent answering (not the verifier's)."""

    def __init__(self, size: int, per: int, signer: Any) -> None:
        from chalicelib.domain.sealing import sign_jwt

        self.size = size
        self.sizes = [min(size, k * per) for k in range(1, -(-size // per) + 1)]
        self.now = VERIFY_START + VERIFY_STEP * size + timedelta(days=1)
        self.spent = 0.0
        self._template = _Template()
        self._step_us = VERIFY_STEP // timedelta(microseconds=1)
        self._seconds: dict[int, str] = {}  # one per second of records: 28 KiB at 10^6
        # the leaf hashes on disk, as the table holds its level-0 tiles (not in this process's memory)
        self._leaves = tempfile.TemporaryFile(prefix="bench-audit-leaves-")  # noqa: SIM115  # closed by close()
        # one pass over the leaves: the level-1 hashes, each head's frontier and root
        compact = merkle.CompactRange()
        level1: list[bytes] = []
        block: list[bytes] = []
        self._heads: list[dict[str, Any]] = []
        previous = ""
        boundaries = iter(self.sizes)
        boundary = next(boundaries)
        for i in range(size):
            leaf = merkle.leaf_hash(self.document(i).encode())
            self._leaves.write(leaf)
            compact.append(leaf)
            block.append(leaf)
            if len(block) == TILE_WIDTH:
                level1.append(merkle.root(block))
                block = []
            if i + 1 == boundary:
                seq = len(self._heads) + 1
                created = self._moment(i) + timedelta(seconds=90)
                through = self.sort_key(i)
                root = compact.root()
                first = self.sizes[seq - 2] if seq > 1 else 0
                head = TreeHead(
                    seq=seq,
                    tree_size=boundary,
                    root=root,
                    through=through,
                    previous=previous,
                    frontier=compact.hashes,
                    first_index=first,
                    created_at=created,
                    signed_head=sign_jwt(
                        head_claims(ISSUER, seq, boundary, root, through, previous, created),
                        signer=signer,
                        typ=CHECKPOINT_TYP,
                    ),
                )
                previous = head_hash(head.signed_head)
                self._heads.append(
                    {
                        "pk": {"S": CHECKPOINT_PK},
                        "sk": {"S": f"{seq:012d}"},
                        "document": {"S": head_document(head)},
                        "signed_head": {"S": head.signed_head},
                    }
                )
                boundary = next(boundaries, 0)
        self._leaves.flush()
        self._levels: list[list[bytes]] = [[], level1]
        while len(self._levels[-1]) >= TILE_WIDTH:
            below = self._levels[-1]
            self._levels.append(
                [
                    merkle.root(below[k : k + TILE_WIDTH])
                    for k in range(0, len(below) - TILE_WIDTH + 1, TILE_WIDTH)
                ]
            )
        self._partial = {tile for s in self.sizes for tile in edge_tiles(s)}

    # -- the records -------------------------------------------------------------------------------

    def _moment(self, i: int) -> datetime:
        return VERIFY_START + VERIFY_STEP * i

    def _at(self, i: int) -> str:
        """``_moment(i)`` as a sort key writes it (strftime once per second)."""
        second, micro = divmod(i * self._step_us, 1_000_000)
        prefix = self._seconds.get(second)
        if prefix is None:
            prefix = self._seconds[second] = f"{VERIFY_START + timedelta(seconds=second):%Y-%m-%dT%H:%M:%S}"
        return f"{prefix}.{micro:06d}Z"

    @staticmethod
    def _flow(i: int) -> str:
        return f"f{i // RECORDS_PER_ONBOARDING:021d}"

    def sort_key(self, i: int) -> str:
        return f"{self._at(i)}#00#r{i:015d}"

    def key(self, i: int) -> str:
        return f"FLOW#{self._flow(i)}|{self.sort_key(i)}"

    def document(self, i: int) -> str:
        return self._template.document(
            record=f"r{i:015d}",
            flow=self._flow(i),
            resident=f"p{i // RECORDS_PER_ONBOARDING:042d}",
            event=HAPPY_PATH[i % RECORDS_PER_ONBOARDING % len(HAPPY_PATH)],
            at=self._at(i),
        )

    def _index_of(self, key: str) -> int:
        return int(key.rpartition("#r")[2])

    def close(self) -> None:
        self._leaves.close()

    def _stored(self, tile: TileId) -> bool:
        if tile.full:
            return tile.index < entries_at(tile.level, self.size) // TILE_WIDTH
        return tile in self._partial

    def _tile(self, tile: TileId) -> bytes:
        if tile.level == 0:
            self._leaves.seek(tile.index * TILE_WIDTH * merkle.HASH_SIZE)
            return self._leaves.read(tile.width * merkle.HASH_SIZE)
        start = tile.index * TILE_WIDTH
        return b"".join(self._levels[tile.level][start : start + tile.width])

    def _all_tiles(self) -> Iterator[TileId]:
        level = 0
        while entries_at(level, self.size):
            for index in range(entries_at(level, self.size) // TILE_WIDTH):
                yield TileId(level, index, TILE_WIDTH)
            level += 1
        yield from sorted(self._partial)

    # -- AuditSource -------------------------------------------------------------------------------

    def heads(self, *, after_seq: int = 0) -> Iterator[dict[str, Any]]:
        yield from self._heads[after_seq:]

    def leaf_keys(self, seq: int) -> list[str]:
        started = time.process_time()
        first = self.sizes[seq - 2] if seq > 1 else 0
        keys = [self.key(i) for i in range(first, self.sizes[seq - 1])] if seq <= len(self.sizes) else []
        self.spent += time.process_time() - started
        return keys

    def tiles(self, ids: Iterable[TileId], *, consistent: bool = False) -> dict[TileId, bytes]:
        started = time.process_time()
        found = {tile: self._tile(tile) for tile in ids if self._stored(tile)}
        self.spent += time.process_time() - started
        return found

    def documents(self, keys: Sequence[str]) -> dict[str, str]:
        started = time.process_time()
        found = {key: self.document(self._index_of(key)) for key in keys}
        self.spent += time.process_time() - started
        return found

    def is_published(self, seq: int) -> bool:
        return 0 < seq <= len(self.sizes)

    def entries_of_day(
        self, day: date, *, after: str = "", before: str | None = None, page: int = 100
    ) -> Iterator[LeafEntry]:
        for i in range(self.size):
            sort_key = self.sort_key(i)
            if (
                sort_key[:10] == f"{day:%Y-%m-%d}"
                and sort_key > after
                and (before is None or sort_key < before)
            ):
                key = self.key(i)
                yield LeafEntry(key, sort_key, merkle.leaf_hash(self.document(i).encode()))

    def scan(self, *, page: int = 1000) -> Iterator[dict[str, Any]]:
        """Every item, a page at a time, in no useful order (records by a fixed permutation)."""
        items = self._items()
        while True:
            started = time.process_time()
            batch = list(itertools.islice(items, page))
            self.spent += time.process_time() - started
            if not batch:
                return
            yield from batch

    def _items(self) -> Iterator[dict[str, Any]]:
        stride = 2_654_435_761  # coprime with every size here (odd, not a multiple of 5)
        assert math.gcd(stride, self.size) == 1
        for j in range(self.size):
            i = j * stride % self.size
            pk, _, sk = self.key(i).partition("|")
            yield {"pk": {"S": pk}, "sk": {"S": sk}, "document": {"S": self.document(i)}}
        for seq, end in enumerate(self.sizes, start=1):
            first = self.sizes[seq - 2] if seq > 1 else 0
            by_flow: dict[str, dict[str, Any]] = {}
            for i in range(first, end):
                pk, _, sk = self.key(i).partition("|")
                by_flow.setdefault(pk, {})[sk] = {"N": str(i)}
            for pk, leaves in by_flow.items():
                yield {
                    "pk": {"S": pk},
                    "sk": {"S": f"{LEAF_INDEX_PREFIX}{seq:012d}"},
                    "leaves": {"M": leaves},
                }
            yield {
                "pk": {"S": LEAVES_PK},
                "sk": {"S": f"{seq:012d}"},
                "keys": {"S": "\n".join(self.leaf_keys(seq))},
            }
            yield {"pk": {"S": PUBLISHED_PK}, "sk": {"S": f"{seq:012d}"}}
        yield from self._heads
        for tile in self._all_tiles():
            yield {
                "pk": {"S": f"{TILE_PREFIX}{tile.level}#{tile.index}"},
                "sk": {"S": f"{tile.width:03d}"},
                "hashes": {"B": self._tile(tile)},
            }


def verify_run(size: int, per: int = NEW_RECORDS) -> dict[str, Any]:
    from relayctl.audit import Verifier, keys_from_jwks

    signer = LocalSigner()
    started = time.perf_counter()
    log = SyntheticLog(size, per, signer)
    built_s = time.perf_counter() - started
    keys = keys_from_jwks({"keys": [signer.public_jwk()]}, "the benchmark's key")
    before = reset_peak()
    log.spent = 0.0
    try:
        with tempfile.TemporaryDirectory(prefix="bench-audit-verify-") as scratch:
            cpu, wall = time.process_time(), time.perf_counter()
            result = Verifier(log, keys, "the benchmark's key", now=log.now, scratch=scratch).run()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        peak = peak_kib()
    finally:
        log.close()
    assert (result.checkpoints, result.covered) == (len(log.sizes), size), result
    assert (result.pending, result.expired) == (0, 0), result
    return {
        "size": size,
        "checkpoints": result.checkpoints,
        "cpu_s": cpu,
        "wall_s": wall,
        "source_cpu_s": log.spent,
        "rss_before_kib": before,
        "peak_kib": peak,
        "build_s": built_s,
    }


# -- the section (the parent process) --------------------------------------------------------------------


def _child(kind: str, size: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.audit_scale", kind, str(size)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode or not lines:
        raise RuntimeError(
            f"bench.audit_scale {kind} {size} failed ({done.returncode}):\n{done.stderr[-4000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1].removeprefix(RESULT_MARK))
    return result


def function_config(function: str) -> tuple[int, int, str]:
    """The prod stage's timeout (s) and memory (MB) of a Lambda function, and where they were found."""
    memory, memory_source = lambda_memory_mb(function)
    config = json.loads((ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))
    prod = config.get("stages", {}).get("prod", {})
    for where, value in (
        (f"stages.prod.lambda_functions.{function}", prod.get("lambda_functions", {}).get(function, {})),
        ("stages.prod", prod),
        (f"lambda_functions.{function}", config.get("lambda_functions", {}).get(function, {})),
        ("top level", config),
    ):
        timeout = value.get("lambda_timeout")
        if isinstance(timeout, int):
            return timeout, memory, f"{where}.lambda_timeout, {memory_source}"
    return 60, memory, f"timeout not configured (Chalice's default 60 s), {memory_source}"


def partner_capacity(record_bytes: Mapping[str, Any]) -> dict[str, Any]:
    """Onboardings a second the two write-sharded indexes take: each index spreads its writes over
    ``AUDIT_SHARDS`` partition key values, each taking 1,000 WCU/s."""
    from bench.cpu_flow import write_units

    per_index = {
        index: {
            "item_bytes": size,
            "wcu_per_record": write_units(size),
            "wcu_per_onboarding": RECORDS_PER_ONBOARDING * write_units(size),
            "onboardings_per_s": AUDIT_SHARDS
            * PARTITION_KEY_WCU_PER_S
            / (RECORDS_PER_ONBOARDING * write_units(size)),
        }
        for index, size in sorted(record_bytes["index_max"].items())
    }
    lower = min(per_index, key=lambda index: per_index[index]["onboardings_per_s"])
    return {
        "indexes": per_index,
        "bound_by": lower,
        "onboardings_per_s": per_index[lower]["onboardings_per_s"],
    }


def _mib(kib: float) -> float:
    return kib / 1024


def measure() -> Section:
    started = time.monotonic()
    checkpoints: dict[int, dict[str, Any]] = {}
    for size in SIZES:
        print(f"bench: audit_scale: checkpoint at {size:,} leaves ...", flush=True)
        checkpoints[size] = _child("checkpoint", size)
    verifies: dict[int, dict[str, Any]] = {}
    for size in VERIFY_SIZES:
        print(f"bench: audit_scale: verify of {size:,} records ...", flush=True)
        verifies[size] = _child("verify", size)

    small, large = checkpoints[SIZES[0]], checkpoints[SIZES[-1]]
    growth = large["cpu_s"] / small["cpu_s"]
    timeout, memory, config_source = function_config(FUNCTION)
    share = min(1.0, memory / prices.LAMBDA_MB_PER_VCPU)
    calls = sum(large["last"]["calls"].values())
    modelled = large["cpu_without_moto_s"] / share + calls * AWS_ROUND_TRIP_MS / 1000
    pessimistic = large["cpu_s"] / share + calls * AWS_ROUND_TRIP_MS / 1000
    headroom = {
        "timeout_s": timeout,
        "memory_mb": memory,
        "config": config_source,
        "vcpu_share": share,
        "aws_calls": calls,
        "modelled_s": modelled,
        "pessimistic_s": pessimistic,
        "run_memory_mib": _mib(large["run_memory_kib"]),
        "process_peak_mib": _mib(large["process_peak_kib"]),
    }
    capacity = partner_capacity(small["record_bytes"])
    figures = {
        "audit_checkpoint_growth": round(growth, 3),
        "audit_checkpoint_rru_at_1e7": large["last"]["rru"],
        "audit_proof_rru_at_1e7": large["last"]["proof"]["rru"],
        "audit_verify_peak_mib_at_1e6": round(_mib(verifies[VERIFY_SIZES[-1]]["peak_kib"]), 1),
        "audit_partner_max_onboardings_per_s": math.floor(capacity["onboardings_per_s"]),
    }
    elapsed = time.monotonic() - started
    data = {
        "checkpoint": {str(k): v for k, v in checkpoints.items()},
        "verify": {str(k): v for k, v in verifies.items()},
        "headroom": headroom,
        "capacity": capacity,
        "elapsed_s": round(elapsed, 1),
    }
    return Section(
        title="Audit at scale",
        figures=figures,
        detail=_detail(checkpoints, verifies, headroom, capacity, growth, elapsed),
        data=data,
    )


def _n(size: int) -> str:
    return f"10^{round(math.log10(size))}"


def _detail(
    checkpoints: Mapping[int, dict[str, Any]],
    verifies: Mapping[int, dict[str, Any]],
    headroom: Mapping[str, Any],
    capacity: Mapping[str, Any],
    growth: float,
    elapsed: float,
) -> str:
    small, large = checkpoints[SIZES[0]], checkpoints[SIZES[-1]]
    record_bytes = small["record_bytes"]
    last = large["last"]
    commit = [w for w in last["writes"] if w["operation"] == "TransactWriteItems"]
    leaf_indexes = [w for w in last["writes"] if w["operation"] == "BatchWriteItem"]
    lines = [
        "What a checkpoint, an inclusion proof and `relayctl audit verify` cost as the audit log grows, "
        "measured with the production code paths. Each size runs in a fresh child process.",
        "",
        f"**Checkpoints and proofs** (`CheckpointService` + `DynamoAuditLog` + `S3HeadAnchor` + `KmsSigner` "
        "against moto in process). The N existing leaves are synthesised straight into tiles: leaf *i* is "
        '`leaf_hash("synthetic leaf <i mod 256>")`, so every full tile of a level is one and the same and any '
        "tile, frontier or root of any N costs O(levels) hashes. Only what a run reads is written: checkpoint 1 "
        "(size N, its frontier and root derived from those tiles, signed with the KMS key), its published and "
        "first-day markers, the edge tiles of N and the full tiles on the measured proofs' paths. Then "
        f"{NEW_RECORDS:,} real records ({FLOWS_IN_BATCH} onboardings of ~{RECORDS_PER_ONBOARDING} records, "
        "interleaved, one second apart; the items `DynamoStateStore.append_audit` writes, put in batches as "
        "setup) follow the head's `through`, and one `checkpoint()` runs. Its new head is checked against the root computed apart (`CompactRange` "
        "over the synthetic frontier and the new leaves); every proof below verifies. CPU is `time.process_time` "
        f"of the run, the meter's own bookkeeping excluded, the median of {REPEATS} runs (each in a fresh moto); "
        "moto's backend runs in the same thread and counts, alike at every N: its table holds the same "
        f"{NEW_RECORDS:,} records and a few dozen tiles whatever N is. The single proof is of leaf N/3 "
        "(`inclusion_proofs`, one latest-head query and its tiles); the receipt is one onboarding's "
        f"{last['receipt']['leaves']} records (spread over the whole batch), their leaf indexes from the flow's "
        "query; the consistency proof is from checkpoint 1 to 2.",
        "",
        "DynamoDB units from the real item sizes (attribute names and values): Query billed on the summed size "
        "of the items it returns, rounded up to 4 KiB per call; GetItem and BatchGetItem per item, rounded up to "
        "4 KiB; 1 RRU per 4 KiB strongly consistent, half eventually consistent (the index queries, the tile "
        "reads of a proof), at least 0.5 or 1 per call or item. Writes 1 WRU per KiB, twice in a transaction.",
        "",
        "| N leaves | checkpoint CPU s | of which moto | wall s | RRU | WRU | AWS calls | tile reads "
        "| proof RRU (tiles) | receipt RRU (tiles) | consistency RRU (tiles) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size in SIZES:
        run = checkpoints[size]
        got = run["last"]
        lines.append(
            f"| {_n(size)} | {run['cpu_s']:.3f} | {run['moto_cpu_s']:.3f} | {run['wall_s']:.3f} | "
            f"{got['rru']:g} | {got['wru']:g} | {sum(got['calls'].values())} | {got['tile_reads']} | "
            f"{got['proof']['rru']:g} ({got['proof']['tile_reads']}) | {got['receipt']['rru']:g} "
            f"({got['receipt']['tile_reads']}) | {got['consistency']['rru']:g} ({got['consistency']['tile_reads']}) |"
        )
    runs = ", ".join(
        f"{_n(size)}: " + "/".join(f"{c:.3f}" for c in checkpoints[size]["cpu_s_runs"]) for size in SIZES
    )
    lines += [
        "",
        f"**Growth: {growth:.3f}x** the CPU at {_n(SIZES[-1])} leaves vs {_n(SIZES[0])} (target {limit_text('audit_checkpoint_growth')}; CPU "
        f"without moto's backend {large['cpu_without_moto_s']:.3f} s vs {small['cpu_without_moto_s']:.3f} s). "
        f"The runs, s: {runs}. What grows with N is the frontier (one hash per set bit of N), the edge tiles "
        "(one per 8 levels) and the tiles a proof reads: O(log N).",
        "",
        f"At {_n(SIZES[-1])}: the run's {last['rru']:g} RRU are "
        + ", ".join(f"{op} {units:g}" for op, units in sorted(last["op_rru"].items()))
        + " (the queries: the latest head, then the pages of the 32 `by_day` shards, which return the new "
        "records' keys and leaf hashes, not their documents); "
        + "its AWS calls: "
        + ", ".join(f"{op} {n}" for op, n in last["calls"].items())
        + ". "
        f"It wrote {len(commit)} items in its transaction (the head, its covered keys and "
        f"{len(commit) - 2} tiles; {sum(w['wru'] for w in commit):g} WRU, of which the covered keys, one item "
        f"of {commit[1]['bytes'] / 1024:.0f} KiB under DynamoDB's 400 KB limit, {commit[1]['wru']:g}) and "
        f"{len(leaf_indexes)} leaf-index items beside the records ({sum(w['wru'] for w in leaf_indexes):g} "
        "WRU): the run's writes do not grow with N either. A receipt also queries its "
        f"flow's partition first ({last['receipt_trail']['rru']:g} RRU, records and leaf indexes).",
        "",
        f"**Headroom of the AuditCheckpoint function at {_n(SIZES[-1])}** ({headroom['config']}: "
        f"{headroom['timeout_s']} s, {headroom['memory_mb']} MB, so {headroom['vcpu_share']:.3f} of a vCPU at "
        f"{prices.LAMBDA_MB_PER_VCPU:,} MB per vCPU, a vCPU assumed as fast as this machine's core): a full run "
        f"({NEW_RECORDS:,} records) takes {large['cpu_s']:.2f} s of CPU here, {large['cpu_without_moto_s']:.2f} s "
        f"without moto's backend (DynamoDB's own work, not Lambda's); scaled to the share, plus "
        f"{AWS_ROUND_TRIP_MS:g} ms for each of its {headroom['aws_calls']} AWS calls, about "
        f"**{headroom['modelled_s']:.1f} s of the {headroom['timeout_s']} s timeout** "
        f"({headroom['timeout_s'] / headroom['modelled_s']:.0f}x headroom; {headroom['pessimistic_s']:.1f} s even "
        "counting moto's CPU as Lambda's). Memory: the run raised the resident set by "
        f"{headroom['run_memory_mib']:.1f} MiB; the whole child process (interpreter, boto3, moto and its tables, "
        f"the run) peaked at {headroom['process_peak_mib']:.0f} MiB, against {headroom['memory_mb']} MB.",
        "",
        "**relayctl audit verify** (`relayctl.audit.Verifier.run`, the full run: the table scanned once, record "
        "keys sorted on disk, every head's signature, link, tiles, frontier, root and consistency proof checked, "
        "every record's document hashed against its leaf) over `SyntheticLog`, a synthetic `AuditSource`: N "
        f"records (~{RECORDS_PER_ONBOARDING} per onboarding, one every 10 ms) under checkpoints of {NEW_RECORDS:,}, "
        "documents generated on demand from an `AuditRecord` template (the scan returns records in a fixed "
        "permutation, then the leaf-index, covered-keys, head and tile items), heads signed with a local ES256 "
        "key, tiles computed from the documents (kept: the hashes above level 0, 32 bytes per 256 leaves). Peak "
        "resident set (`VmHWM`, reset just before the run) of the child process, the synthetic log and the "
        "interpreter included. No anchor bucket (its checks are S3 reads, a few per head).",
        "",
        "| N records | checkpoints | peak RSS MiB | before the run MiB | wall s | CPU s | of which the synthetic log |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in VERIFY_SIZES:
        got = verifies[size]
        lines.append(
            f"| {_n(size)} | {got['checkpoints']} | {_mib(got['peak_kib']):.1f} | {_mib(got['rss_before_kib']):.1f} "
            f"| {got['wall_s']:.1f} | {got['cpu_s']:.1f} | {got['source_cpu_s']:.1f} |"
        )
    indexes = capacity["indexes"]
    index_text = "; ".join(
        f"`{name}` items are at most {got['item_bytes']} bytes ({got['wcu_per_record']} WCU a record, "
        f"{got['wcu_per_onboarding']} an onboarding: {got['onboardings_per_s']:,.0f}/s)"
        for name, got in indexes.items()
    )
    per_shard_rate = PARTITION_KEY_WCU_PER_S
    lines += [
        "",
        f"**Onboardings per second the audit indexes take: {math.floor(capacity['onboardings_per_s']):,}** "
        f"(computed, not measured; target {limit_text('audit_partner_max_onboardings_per_s')}). Records are keyed by flow in the table (no hot key); the two "
        f"indexes a checkpoint and a partner read by are write-sharded: `by_day` (all partners' records of a "
        f"day) and `by_partner` (one partner's month), each over {AUDIT_SHARDS} partition key values "
        f"(`AUDIT_SHARDS`, uniform by a hash of the record id), each value taking {PARTITION_KEY_WCU_PER_S:,} "
        f"WCU/s. An onboarding writes up to {RECORDS_PER_ONBOARDING} records (the longest trail; the measured "
        "happy path in the CPU section writes fewer), each one item in each index, 1 WCU per KiB of its "
        f"projection (sizes measured on the {NEW_RECORDS:,} records above, {record_bytes['mean']:.0f} bytes "
        f"stored on average, {record_bytes['max']} at most): {index_text}. `by_partner` bounds one partner, "
        "`by_day` all partners together, so the lower of the two, "
        f"`{capacity['bound_by']}`'s, is the service's ceiling: {AUDIT_SHARDS} x {PARTITION_KEY_WCU_PER_S:,} / "
        f"{capacity['indexes'][capacity['bound_by']]['wcu_per_onboarding']}. Near it each shard takes "
        f"~{per_shard_rate:,} writes a second, and arrivals vary by about √{per_shard_rate:,} ≈ "
        f"{math.sqrt(per_shard_rate):.0f} a second (3 %); keeping the busiest shard three standard deviations "
        f"under its ceiling means planning on about "
        f"{capacity['onboardings_per_s'] / (1 + 3 / math.sqrt(per_shard_rate)):,.0f}/s (DynamoDB's burst and "
        "adaptive capacity absorb short peaks above it).",
        "",
        f"This part took {elapsed:.0f} s.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    kind, size = argv[0], int(argv[1])
    result = checkpoint_run(size) if kind == "checkpoint" else verify_run(size)
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
