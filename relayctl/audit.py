"""``relayctl audit``: check the tamper-evident audit log offline, and export its records.

``verify`` reads every checkpoint and every record of the audit table and recomputes what the
checkpoints signed (``chalicelib/domain/checkpoints.py``): the sequence has no gap, each signed head
verifies with the service's public key and says what its stored document says, each links to the
previous one, each root is the RFC 6962 root of all leaves so far and extends the previous tree,
every leaf's record is still there byte for byte, and no record was slipped in among the covered
ones. It stops at the first problem and names it. Only reading the table and (without ``--jwks``)
fetching the public key touch AWS; every check runs here.

``export`` writes the records of a date range (UTC) as JSON lines (the stored documents, byte for
byte, so leaf hashes can be recomputed from the export) or as CSV in the order of the
情報提供等記録 fields, with English or Japanese headers.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError
from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import ECKey
from pydantic import ValidationError

from chalicelib.adapters.aws import unavailable
from chalicelib.adapters.dynamodb_audit import CHECKPOINT_PK, DynamoAuditLog
from chalicelib.domain import merkle
from chalicelib.domain.audit import AuditRecord
from chalicelib.domain.checkpoints import (
    CHECKPOINT_TYP,
    Leaf,
    StoredRecord,
    b64,
    parse_checkpoint,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

RECORD_PREFIX = "FLOW#"
SIGNED_FIELDS = ("seq", "tree_size", "root", "through", "previous")

# The 情報提供等記録 fields, in order: (attribute of AuditRecord, English header, Japanese header).
EXPORT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("record_id", "record_id", "記録番号"),
    ("occurred_at", "occurred_at", "記録日時"),
    ("event", "event", "事象"),
    ("interaction_id", "interaction_id", "連携番号"),
    ("requester_id", "requester_id", "情報照会者"),
    ("requester_name", "requester_name", "情報照会者名"),
    ("provider", "provider", "情報提供者"),
    ("municipalities", "municipalities", "提供元市区町村"),
    ("dataset_name_ja", "dataset_name_ja", "特定個人情報の項目"),
    ("dataset_code", "dataset_code", "項目コード"),
    ("purpose_id", "purpose_id", "事務（利用目的）"),
    ("requested_at", "requested_at", "提供の求めの日時"),
    ("provided_at", "provided_at", "提供の日時"),
    ("outcome", "outcome", "結果"),
    ("resident_pseudonym", "resident_pseudonym", "仮名ID"),
)
MUNICIPALITY_SEPARATOR = "、"
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class AuditError(RuntimeError):
    """A refusal or a failed check; printed as one line, without a traceback."""


class VerificationFailed(AuditError):
    """The audit log does not match its checkpoints; the message names the first spot."""


# -- reading the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointItem:
    """A checkpoint exactly as stored, before anything about it is believed."""

    sort_key: str
    document: str | None
    signed_head: str | None

    @property
    def seq(self) -> int | None:
        return int(self.sort_key) if self.sort_key.isdigit() else None


@dataclass(frozen=True)
class AuditSnapshot:
    checkpoints: list[CheckpointItem]  # in sort key order
    records: list[StoredRecord]  # in (sort key, key) order
    foreign: list[str]  # keys of items that are neither a record nor a checkpoint
    broken: list[str]  # keys of records stored without a document


def _text(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name, {}).get("S")
    return value if isinstance(value, str) else None


def read_snapshot(client: DynamoDBClient, table: str) -> AuditSnapshot:
    """Checkpoints first, then records: a checkpoint written while the table is scanned is not
    seen, so every record a seen checkpoint covers was written before the scan started."""
    try:
        checkpoints = [
            CheckpointItem(item["sk"]["S"], _text(item, "document"), _text(item, "signed_head"))
            for page in client.get_paginator("query").paginate(
                TableName=table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": CHECKPOINT_PK}},
                ConsistentRead=True,
            )
            for item in page.get("Items", [])
        ]
    except (ClientError, BotoCoreError) as exc:
        raise unavailable("dynamodb", "Query", exc) from exc
    records: list[StoredRecord] = []
    foreign: list[str] = []
    broken: list[str] = []
    try:
        for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            for item in page.get("Items", []):
                pk, sk = item["pk"]["S"], item["sk"]["S"]
                key = f"{pk}|{sk}"
                document = _text(item, "document")
                if pk == CHECKPOINT_PK:
                    continue
                if not pk.startswith(RECORD_PREFIX):
                    foreign.append(key)
                elif document is None:
                    broken.append(key)
                else:
                    records.append(StoredRecord(key=key, sort_key=sk, document=document))
    except (ClientError, BotoCoreError) as exc:
        raise unavailable("dynamodb", "Scan", exc) from exc
    records.sort(key=lambda record: (record.sort_key, record.key))
    return AuditSnapshot(checkpoints, records, sorted(foreign), sorted(broken))


# -- public keys ------------------------------------------------------------------------------------


def keys_from_jwks(document: Any, source: str) -> dict[str, ECKey]:
    """The P-256 keys of a JWKS by ``kid`` (the RFC 7638 thumbprint when a key has no ``kid``);
    only their public half is kept."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise AuditError(f'{source} is not a JWKS (expected {{"keys": [...]}})')
    keys: dict[str, ECKey] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != "EC" or entry.get("crv") != "P-256":
            continue
        if entry.get("use", "sig") != "sig" or entry.get("alg", "ES256") != "ES256":
            continue
        public = {name: entry[name] for name in ("kty", "crv", "x", "y") if name in entry}
        try:
            key = ECKey.import_key(public)
        except (JoseError, ValueError, TypeError) as exc:
            raise AuditError(
                f"{source}: key {entry.get('kid', '?')!r} is not a valid P-256 key ({exc})"
            ) from None
        keys[str(entry.get("kid") or key.thumbprint())] = key
    if not keys:
        raise AuditError(f"{source} has no P-256 ES256 signing key")
    return keys


# -- the Merkle tree, incrementally -----------------------------------------------------------------


class MerkleLevels:
    """All leaves of the log and every complete, aligned subtree above them (RFC 6962 section 2.1).

    ``merkle.root`` and ``merkle.consistency_proof`` rehash everything on every call, which makes
    checking each checkpoint of a long log quadratic; here each interior node is hashed once, and the
    root of any prefix or a consistency proof costs O(log n) lookups. ``merkle.verify_consistency``
    (the library's verifier) still judges the proofs."""

    def __init__(self) -> None:
        self._levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf_hash: bytes) -> None:
        level = 0
        self._levels[0].append(leaf_hash)
        while len(self._levels[level]) % 2 == 0:
            left, right = self._levels[level][-2:]
            if level + 1 == len(self._levels):
                self._levels.append([])
            self._levels[level + 1].append(merkle.node_hash(left, right))
            level += 1

    def root(self, size: int) -> bytes:
        """``MTH(D[0:size])``."""
        if not 0 <= size <= self.size:
            raise ValueError(f"no tree of {size} leaves in a log of {self.size}")
        return self._mth(0, size) if size else merkle.EMPTY_ROOT

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """``PROOF(old_size, D[0:new_size])``: the walk of ``merkle.consistency_proof``."""
        if not 0 < old_size <= new_size <= self.size:
            raise ValueError(f"no consistency proof from {old_size} to {new_size} leaves")
        proof: list[bytes] = []
        lo, hi, m, complete = 0, new_size, old_size, True
        while m != hi - lo:
            k = _split(hi - lo)
            if m <= k:
                proof.append(self._mth(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._mth(lo, lo + k))
                lo += k
                m -= k
                complete = False
        if not complete:
            proof.append(self._mth(lo, hi))
        proof.reverse()
        return proof

    def _mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:  # a complete aligned subtree: already hashed
            height = n.bit_length() - 1
            return self._levels[height][lo >> height]
        k = _split(n)
        return merkle.node_hash(self._mth(lo, lo + k), self._mth(lo + k, hi))


def _split(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


# -- verification -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    checkpoints: int
    covered: int  # records under the latest checkpoint
    pending: int  # records newer than the latest checkpoint
    latest_head: str  # b64url SHA-256 of the latest signed head ("" without checkpoints)


@dataclass(frozen=True)
class CoveredLeaf:
    checkpoint: int
    index: int  # position in the log's tree (what an inclusion proof names)
    leaf: Leaf


def _fail(message: str) -> VerificationFailed:
    return VerificationFailed(message)


def _sort_key_of(record_key: str) -> str:
    return record_key.rpartition("|")[2]


def _signed_claims(seq: int, signed_head: str, keys: dict[str, ECKey], key_source: str) -> dict[str, Any]:
    try:
        header = jws.extract_compact(signed_head.encode()).headers()
    except (JoseError, ValueError, TypeError):
        raise _fail(f"checkpoint {seq}: signed head is not a compact JWS") from None
    if header.get("alg") != "ES256":
        raise _fail(f"checkpoint {seq}: signed head uses alg {header.get('alg')!r}, not ES256")
    if header.get("typ") != CHECKPOINT_TYP:
        raise _fail(f"checkpoint {seq}: signed head has typ {header.get('typ')!r}, not {CHECKPOINT_TYP}")
    kid = str(header.get("kid", ""))
    key = keys.get(kid)
    if key is None:
        raise _fail(f"checkpoint {seq}: signed by key {kid!r}, which is not {key_source}")
    try:
        payload = jws.deserialize_compact(signed_head, key, algorithms=["ES256"]).payload
    except BadSignatureError:
        raise _fail(f"checkpoint {seq}: signature does not verify") from None
    except (JoseError, ValueError, TypeError):
        raise _fail(f"checkpoint {seq}: signed head is malformed") from None
    try:
        claims = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        claims = None
    if not isinstance(claims, dict):
        raise _fail(f"checkpoint {seq}: signed head's claims are not a JSON object")
    return claims


def _stored_fields(seq: int, document: str) -> dict[str, Any]:
    try:
        data = json.loads(document)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        data["created_at"] = int(datetime.fromisoformat(data["created_at"]).timestamp())
        parsed = parse_checkpoint(document, "")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _fail(f"checkpoint {seq}: stored document is unreadable") from None
    data["leaves"] = parsed.leaves
    return data


def verify_snapshot(snapshot: AuditSnapshot, keys: dict[str, ECKey], key_source: str) -> VerifyResult:
    """Raises ``VerificationFailed`` naming the first record or checkpoint that does not match."""
    tree = MerkleLevels()
    covered: list[CoveredLeaf] = []
    previous_head = ""
    previous_through = ""
    previous_size = 0
    last_order: tuple[str, str] | None = None

    # 1. the chain of signed checkpoints, and the tree they sign
    for position, item in enumerate(snapshot.checkpoints):
        seq = position + 1
        if item.seq != seq or item.sort_key != f"{seq:012d}":
            if item.seq is not None and item.seq > seq:
                raise _fail(f"checkpoint sequence gap at {seq}")
            raise _fail(f"checkpoint item {item.sort_key!r}: not the next sequence number ({seq})")
        if item.document is None or item.signed_head is None:
            missing = "document" if item.document is None else "signed head"
            raise _fail(f"checkpoint {seq}: stored without its {missing}")
        stored = _stored_fields(seq, item.document)
        claims = _signed_claims(seq, item.signed_head, keys, key_source)
        differing = [name for name in SIGNED_FIELDS if claims.get(name) != stored.get(name)]
        if claims.get("iat") != stored["created_at"]:
            differing.append("created_at")
        if differing:
            raise _fail(
                f"checkpoint {seq}: signed head does not match its stored document ({', '.join(differing)})"
            )
        if claims["seq"] != seq:
            raise _fail(f"checkpoint {seq}: signed head is for checkpoint {claims['seq']}")
        if claims["previous"] != previous_head:
            if seq == 1:
                raise _fail("checkpoint 1: links to a previous checkpoint, but none precedes it")
            raise _fail(f"checkpoint {seq}: link to checkpoint {seq - 1} broken")
        leaves: tuple[Leaf, ...] = stored["leaves"]
        if not leaves:
            raise _fail(f"checkpoint {seq}: covers no records")
        for leaf in leaves:
            index = tree.size
            sort_key = _sort_key_of(leaf.key)
            if len(leaf.hash) != merkle.HASH_SIZE:
                raise _fail(f"checkpoint {seq}: leaf {index} ({leaf.key}) has no valid hash")
            if sort_key <= previous_through or (
                last_order is not None and (sort_key, leaf.key) <= last_order
            ):
                raise _fail(f"checkpoint {seq}: leaf {index} ({leaf.key}) is out of order")
            last_order = (sort_key, leaf.key)
            tree.append(leaf.hash)
            covered.append(CoveredLeaf(seq, index, leaf))
        if claims["through"] != _sort_key_of(leaves[-1].key):
            raise _fail(f"checkpoint {seq}: through does not match its last leaf")
        if claims["tree_size"] != tree.size or claims["root"] != b64(tree.root(tree.size)):
            raise _fail(f"checkpoint {seq}: root does not match its leaves")
        if previous_size and not merkle.verify_consistency(
            previous_size,
            tree.size,
            tree.root(previous_size),
            tree.root(tree.size),
            tree.consistency_proof(previous_size, tree.size),
        ):
            raise _fail(f"checkpoint {seq}: not consistent with checkpoint {seq - 1}")
        previous_head = b64(hashlib.sha256(item.signed_head.encode()).digest())
        previous_through = claims["through"]
        previous_size = tree.size

    # 2. every covered record, byte for byte
    records = {record.key: record for record in snapshot.records}
    broken = set(snapshot.broken)
    covered_keys = {entry.leaf.key for entry in covered}
    elsewhere = {record.leaf: record for record in snapshot.records if record.key not in covered_keys}
    for entry in covered:
        key, spot = entry.leaf.key, f"checkpoint {entry.checkpoint}, leaf {entry.index}"
        found = records.get(key)
        if found is None and key not in broken:
            moved = elsewhere.get(entry.leaf.hash)
            if moved is not None:
                raise _fail(f"record {key}: moved to {moved.key} ({spot})")
            raise _fail(f"record {key}: deleted ({spot})")
        if found is None or found.leaf != entry.leaf.hash:
            raise _fail(f"record {key}: altered ({spot})")

    # 3. nothing slipped in among the covered records, and nothing else in the table
    pending = 0
    for record in snapshot.records:
        if record.key in covered_keys:
            continue
        if record.sort_key <= previous_through:
            raise _fail(f"record {record.key}: not covered by any checkpoint (inserted or moved)")
        pending += 1
    undocumented = sorted(broken - covered_keys)
    if undocumented:
        raise _fail(f"record {undocumented[0]}: stored without a document")
    if snapshot.foreign:
        raise _fail(f"item {snapshot.foreign[0]}: neither an audit record nor a checkpoint")
    return VerifyResult(len(snapshot.checkpoints), previous_size, pending, previous_head)


# -- export -----------------------------------------------------------------------------------------


def parse_day(text: str, option: str) -> date:
    if not _DAY.fullmatch(text):
        raise AuditError(f"{option} {text!r} is not a date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise AuditError(f"{option} {text!r} is not a date (YYYY-MM-DD)") from None


def days(start: date, end: date) -> Iterator[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def records_between(log: DynamoAuditLog, start: date, end: date) -> list[StoredRecord]:
    """Records that occurred (UTC) on ``start`` .. ``end`` inclusive, in key order.

    The sort key's date is the UTC date of occurrence; ``day_shard`` is written from the record's
    own time, so one day on either side is read too and the sort key decides."""
    if start > end:
        raise AuditError(f"--from {start} is after --to {end}")
    first, last = f"{start:%Y-%m-%d}", f"{end:%Y-%m-%d}"
    found: dict[str, StoredRecord] = {}
    for day in days(start - timedelta(days=1), end + timedelta(days=1)):
        for record in log.records_of_day(day):
            if record.key.startswith(RECORD_PREFIX) and first <= record.sort_key[:10] <= last:
                found[record.key] = record
    return sorted(found.values(), key=lambda record: (record.sort_key, record.key))


def write_jsonl(records: Iterable[StoredRecord], stream: TextIO) -> int:
    """One stored document per line, unchanged (``leaf_hash`` of a line is the record's leaf)."""
    count = 0
    for record in records:
        stream.write(record.document + "\n")
        count += 1
    return count


def csv_row(record: StoredRecord) -> list[str]:
    try:
        fields = AuditRecord.model_validate_json(record.document).model_dump(mode="json")
    except ValidationError:
        raise AuditError(f"record {record.key}: stored document is not an audit record") from None
    row: list[str] = []
    for name, _, _ in EXPORT_COLUMNS:
        value = fields.get(name)
        if isinstance(value, list):
            row.append(MUNICIPALITY_SEPARATOR.join(str(item) for item in value))
        else:
            row.append("" if value is None else str(value))
    return row


def write_csv(records: Sequence[StoredRecord], stream: TextIO, *, japanese: bool) -> int:
    rows = [csv_row(record) for record in records]  # every document is checked before any is written
    writer = csv.writer(stream)
    writer.writerow([ja if japanese else en for _, en, ja in EXPORT_COLUMNS])
    writer.writerows(rows)
    return len(rows)
