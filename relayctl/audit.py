"""``relayctl audit``: check the tamper-evident audit log offline, and export its records.

``verify`` streams the log once, in order, with memory bounded whatever its size:

1. the chain of signed heads (``chalicelib/domain/checkpoints.py``): numbered without a gap, each
   signed by the service's key and saying what its stored document says, each linked to the one
   before, each adding leaves in key order after the previous ``through``;
2. the tree, tile by tile (C2SP tlog-tiles, ``chalicelib/domain/tiles.py``): the level-0 tiles'
   leaf hashes are appended again, every tile above and every partial tile a checkpoint wrote must
   be what they imply, each head's frontier and signed root must follow, and the RFC 9162
   consistency proof between successive heads, served from the tiles, must verify;
3. the records: each covered record still hashes to its leaf (one expired by its retention may be
   gone: it is counted, not failed), no record is slipped in among the covered ones, and the table
   holds nothing else;
4. against a head the caller trusts (``--trusted-head``, e.g. one a partner kept): the log still
   holds that very head (not rolled back, not forked) and everything after it follows from it;
   verification then starts there and reads only what came after;
5. against the write-once anchor bucket: every head anchored there is the one in the table, and
   the table has not lost its latest heads.

It stops at the first problem and names it. The full run scans the table once and sorts the
record keys on disk (``tempfile``) to match them with the leaves; a run from a trusted head reads
only the records after it. Only reading AWS (and, without ``--jwks``, the public key) touches the
network; every check runs here.

``export`` writes the records of a date range (UTC) as JSON lines (the stored documents, byte for
byte, so leaf hashes can be recomputed from the export) or as CSV in the order of the
情報提供等記録 fields, with English or Japanese headers.
"""

from __future__ import annotations

import contextlib
import csv
import heapq
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, TextIO

from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import ECKey
from pydantic import ValidationError

from chalicelib.adapters.dynamodb_audit import (
    CHECKPOINT_PK,
    LEAF_INDEX_PREFIX,
    LEAVES_PK,
    PUBLISHED_PK,
    RECORD_PREFIX,
    SCAN_PK,
    TILE_PREFIX,
    occurred_of,
)
from chalicelib.adapters.s3_anchor import AnchorHistory
from chalicelib.domain import merkle
from chalicelib.domain.audit import AuditRecord
from chalicelib.domain.checkpoints import (
    CHECKPOINT_TYP,
    LeafEntry,
    StoredRecord,
    TreeHead,
    b64,
    head_document,
    parse_head,
    unb64,
)
from chalicelib.domain.tiles import (
    TILE_WIDTH,
    TileHashes,
    TileId,
    TileMissing,
    TileWriter,
    edge_tiles,
    split_hashes,
    tile_for,
)

SIGNED_FIELDS = ("seq", "tree_size", "root", "through", "previous")
KNOWN_PARTITIONS = frozenset({LEAVES_PK, PUBLISHED_PK, SCAN_PK})
SPILL_ENTRIES = 100_000  # record keys sorted in memory at a time before they go to disk
MAX_ANOMALIES = 1_000  # record problems kept to name the first one (moved, deleted, inserted)

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
    # true/false; a record stored before the flag existed reads false (chalicelib/domain/audit.py)
    ("withheld_from_disclosure", "withheld_from_disclosure", "不開示"),
)
MUNICIPALITY_SEPARATOR = "、"
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class AuditError(RuntimeError):
    """A refusal or a failed check; printed as one line, without a traceback."""


class VerificationFailed(AuditError):
    """The audit log does not match its checkpoints; the message names the first spot."""


def _fail(message: str) -> VerificationFailed:
    return VerificationFailed(message)


# -- what verify reads ------------------------------------------------------------------------------


class AuditSource(Protocol):
    """The audit table as ``verify`` reads it (``DynamoAuditLog``; the benchmark's synthetic log)."""

    def heads(self, *, after_seq: int = 0) -> Iterator[dict[str, Any]]: ...

    def leaf_keys(self, seq: int) -> list[str]: ...

    def tiles(self, ids: Iterable[TileId], *, consistent: bool = False) -> Mapping[TileId, bytes]: ...

    def documents(self, keys: Sequence[str]) -> dict[str, str]: ...

    def is_published(self, seq: int) -> bool: ...

    def scan(self, *, page: int = 1000) -> Iterator[dict[str, Any]]: ...

    def entries_of_day(
        self, day: date, *, after: str = "", before: str | None = None, page: int = 100
    ) -> Iterator[LeafEntry]: ...


class AnchorSource(Protocol):
    """The write-once copies of the heads (``S3HeadAnchor``)."""

    @property
    def bucket(self) -> str: ...

    def history(self, seq: int) -> AnchorHistory | None: ...

    def sequence_numbers(self, *, after: int = 0) -> Iterator[int]: ...


@dataclass(frozen=True)
class TrustedHead:
    """A head the caller kept (a partner's, an auditor's): its signature is checked like any."""

    seq: int
    tree_size: int
    root: bytes
    signed_head: str


def trusted_head_from(document: Any, source: str) -> str:
    """The signed head in a trusted-head file: a compact JWS, or JSON with ``signed_tree_head``
    (what ``GET /v1/audit/checkpoints/latest`` answers)."""
    if isinstance(document, str):
        return document.strip()
    if isinstance(document, dict) and isinstance(document.get("signed_tree_head"), str):
        return str(document["signed_tree_head"])
    raise AuditError(f"{source} holds no signed tree head (a JWS, or JSON with signed_tree_head)")


# -- public keys ------------------------------------------------------------------------------------


EVENT_KID_PREFIX = "event-"  # chalicelib.adapters.keyring.EVENT_KID_PREFIX


def keys_from_jwks(document: Any, source: str) -> dict[str, ECKey]:
    """The P-256 keys of a JWKS by ``kid`` (the RFC 7638 thumbprint when a key has no ``kid``);
    only their public half is kept. Webhook event keys (``kid`` ``event-…``, in the relay's JWKS
    beside the KMS key) never sign a checkpoint: they are left out (docs/security.md, "Key
    hierarchy")."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise AuditError(f'{source} is not a JWKS (expected {{"keys": [...]}})')
    keys: dict[str, ECKey] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != "EC" or entry.get("crv") != "P-256":
            continue
        if entry.get("use", "sig") != "sig" or entry.get("alg", "ES256") != "ES256":
            continue
        if str(entry.get("kid", "")).startswith(EVENT_KID_PREFIX):
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


def signed_claims(label: str, signed_head: str, keys: dict[str, ECKey], key_source: str) -> dict[str, Any]:
    try:
        header = jws.extract_compact(signed_head.encode()).headers()
    except (JoseError, ValueError, TypeError):
        raise _fail(f"{label}: signed head is not a compact JWS") from None
    if header.get("alg") != "ES256":
        raise _fail(f"{label}: signed head uses alg {header.get('alg')!r}, not ES256")
    if header.get("typ") != CHECKPOINT_TYP:
        raise _fail(f"{label}: signed head has typ {header.get('typ')!r}, not {CHECKPOINT_TYP}")
    kid = str(header.get("kid", ""))
    key = keys.get(kid)
    if key is None:
        raise _fail(f"{label}: signed by key {kid!r}, which is not {key_source}")
    try:
        payload = jws.deserialize_compact(signed_head, key, algorithms=["ES256"]).payload
    except BadSignatureError:
        raise _fail(f"{label}: signature does not verify") from None
    except (JoseError, ValueError, TypeError):
        raise _fail(f"{label}: signed head is malformed") from None
    try:
        claims = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        claims = None
    if not isinstance(claims, dict):
        raise _fail(f"{label}: signed head's claims are not a JSON object")
    return claims


def trusted(signed_head: str, keys: dict[str, ECKey], key_source: str) -> TrustedHead:
    claims = signed_claims("trusted head", signed_head, keys, key_source)
    try:
        return TrustedHead(
            int(claims["seq"]), int(claims["tree_size"]), unb64(str(claims["root"])), signed_head
        )
    except (KeyError, ValueError, TypeError):
        raise _fail("trusted head: its claims have no seq, tree_size and root") from None


# -- records, sorted on disk ------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class RecordMark:
    """A record as the join with the leaves sees it: ordered like the leaves, with its leaf hash."""

    sort_key: str
    key: str
    leaf: bytes


class SortedRecords:
    """Record marks sorted by (sort key, key) with bounded memory: runs of ``SPILL_ENTRIES`` are
    sorted in memory and written to temporary files, then merged."""

    def __init__(self, directory: str | None = None) -> None:
        self._directory = directory
        self._buffer: list[RecordMark] = []
        self._runs: list[str] = []

    def add(self, mark: RecordMark) -> None:
        self._buffer.append(mark)
        if len(self._buffer) >= SPILL_ENTRIES:
            self._spill()

    def _spill(self) -> None:
        self._buffer.sort()
        handle, path = tempfile.mkstemp(prefix="relayctl-verify-", suffix=".tsv", dir=self._directory)
        with os.fdopen(handle, "w", encoding="utf-8") as run:
            for mark in self._buffer:
                run.write(f"{mark.sort_key}\t{mark.key}\t{mark.leaf.hex()}\n")
        self._runs.append(path)
        self._buffer = []

    def __iter__(self) -> Iterator[RecordMark]:
        self._buffer.sort()
        return heapq.merge(iter(self._buffer), *(self._read(path) for path in self._runs))

    @staticmethod
    def _read(path: str) -> Iterator[RecordMark]:
        with open(path, encoding="utf-8") as run:
            for line in run:
                sort_key, key, leaf = line.rstrip("\n").split("\t")
                yield RecordMark(sort_key, key, bytes.fromhex(leaf))

    def close(self) -> None:
        for path in self._runs:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._runs = []


@dataclass
class Inventory:
    """What a full scan found besides records: the first foreign item and record without a document."""

    records: SortedRecords
    foreign: str | None = None
    broken: str | None = None
    count: int = 0


def take_inventory(source: AuditSource, directory: str | None = None) -> Inventory:
    inventory = Inventory(SortedRecords(directory))
    for item in source.scan():
        pk, sk = item["pk"]["S"], item["sk"]["S"]
        key = f"{pk}|{sk}"
        if pk == CHECKPOINT_PK or pk in KNOWN_PARTITIONS or pk.startswith(TILE_PREFIX):
            continue
        if not pk.startswith(RECORD_PREFIX):
            inventory.foreign = min(key, inventory.foreign or key)
            continue
        if sk.startswith(LEAF_INDEX_PREFIX):
            continue
        document = item.get("document", {}).get("S")
        if not isinstance(document, str):
            inventory.broken = min(key, inventory.broken or key)
            continue
        inventory.records.add(RecordMark(sk, key, merkle.leaf_hash(document.encode())))
        inventory.count += 1
    return inventory


# -- the tree, rebuilt tile by tile -----------------------------------------------------------------


class LeafHashes:
    """The leaf hashes of a tree of ``size`` leaves, read one level-0 tile at a time, in order."""

    def __init__(self, source: AuditSource, size: int) -> None:
        self._source = source
        self._size = size
        self._tile: TileId | None = None
        self._hashes: list[bytes] = []

    def __call__(self, index: int, label: str) -> bytes:
        tile = tile_for(0, index // TILE_WIDTH, self._size)
        if tile != self._tile:
            found = self._source.tiles([tile]).get(tile)
            if found is None:
                raise _fail(f"tile {tile.path()}: missing ({label})")
            hashes = split_hashes(found) if len(found) % merkle.HASH_SIZE == 0 else []
            if len(hashes) != tile.width:
                raise _fail(
                    f"tile {tile.path()}: holds {len(found)} bytes, not {tile.width} hashes ({label})"
                )
            self._tile, self._hashes = tile, hashes
        return self._hashes[index % TILE_WIDTH]


@dataclass
class Anomalies:
    """Record problems, kept (bounded) until the chain is proven, then named in leaf order."""

    altered: list[tuple[int, str, str]] = field(default_factory=list)  # (leaf index, key, spot)
    missing: list[tuple[int, str, str, bytes]] = field(default_factory=list)  # (index, key, spot, leaf)
    uncovered: list[RecordMark] = field(default_factory=list)  # records among the covered ones
    moved_to: dict[bytes, str] = field(default_factory=dict)  # leaf hash -> key, of uncovered records

    def full(self) -> bool:
        return len(self.altered) + len(self.missing) + len(self.uncovered) >= MAX_ANOMALIES

    def first(self) -> VerificationFailed | None:
        problems: list[tuple[int, int, VerificationFailed]] = []
        for index, key, spot in self.altered:
            problems.append((index, 0, _fail(f"record {key}: altered ({spot})")))
        for index, key, spot, leaf in self.missing:
            moved = self.moved_to.get(leaf)
            verb = f"moved to {moved}" if moved else "deleted"
            problems.append((index, 0, _fail(f"record {key}: {verb} ({spot})")))
        if problems:
            return min(problems, key=lambda problem: problem[:2])[2]
        leftover = self.uncovered  # (none of them explains a missing leaf: there is none)
        if leftover:
            return _fail(f"record {leftover[0].key}: not covered by any checkpoint (inserted or moved)")
        return None


@dataclass(frozen=True)
class VerifyResult:
    checkpoints: int  # heads verified (after the trusted one, if any)
    covered: int  # records under the latest checkpoint
    pending: int  # records newer than the latest checkpoint
    expired: int  # covered records gone after their retention
    latest_head: str  # b64url SHA-256 of the latest signed head ("" without checkpoints)
    latest_seq: int
    anchored: int  # heads found, identical, in the anchor bucket
    started_at: int  # the trusted head's seq, 0 from the start


@dataclass
class Verifier:
    source: AuditSource
    keys: dict[str, ECKey]
    key_source: str
    now: datetime
    retention: timedelta = timedelta(days=7 * 365)
    anchor: AnchorSource | None = None
    scratch: str | None = None

    def run(self, trusted_head: TrustedHead | None = None) -> VerifyResult:
        inventory = take_inventory(self.source, self.scratch) if trusted_head is None else None
        try:
            return self._run(trusted_head, inventory)
        finally:
            if inventory is not None:
                inventory.records.close()

    # -- the chain ----------------------------------------------------------------------------------

    def _start(self, trusted_head: TrustedHead | None) -> tuple[int, TreeHead | None]:
        if trusted_head is None:
            return 0, None
        stored = next(self.source.heads(after_seq=trusted_head.seq - 1), None)
        if stored is None or stored["sk"]["S"] != f"{trusted_head.seq:012d}":
            raise _fail(
                f"trusted head: the log has no checkpoint {trusted_head.seq} (rolled back, or the "
                "checkpoints after an earlier one were deleted)"
            )
        head = self._stored(trusted_head.seq, stored)
        if head.signed_head != trusted_head.signed_head:
            if head.tree_size != trusted_head.tree_size or head.root != trusted_head.root:
                raise _fail(
                    f"trusted head: checkpoint {trusted_head.seq} in the log has another tree "
                    f"(size {head.tree_size}, not {trusted_head.tree_size}): the log forked or was rewritten"
                )
            raise _fail(f"trusted head: checkpoint {trusted_head.seq} in the log was signed again")
        return trusted_head.seq, head

    @staticmethod
    def _stored(seq: int, item: Mapping[str, Any]) -> TreeHead:
        document = item.get("document", {}).get("S")
        signed = item.get("signed_head", {}).get("S")
        if not isinstance(document, str) or not isinstance(signed, str):
            missing = "document" if not isinstance(document, str) else "signed head"
            raise _fail(f"checkpoint {seq}: stored without its {missing}")
        try:
            return parse_head(document, signed)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise _fail(f"checkpoint {seq}: stored document is unreadable") from None

    def _check_head(self, seq: int, head: TreeHead, previous: TreeHead | None) -> None:
        claims = signed_claims(f"checkpoint {seq}", head.signed_head, self.keys, self.key_source)
        stored = json.loads(head_document(head))
        differing = [name for name in SIGNED_FIELDS if claims.get(name) != stored.get(name)]
        if claims.get("iat") != int(head.created_at.timestamp()):
            differing.append("created_at")
        if differing:
            raise _fail(
                f"checkpoint {seq}: signed head does not match its stored document ({', '.join(differing)})"
            )
        if head.seq != seq:
            raise _fail(f"checkpoint {seq}: signed head is for checkpoint {head.seq}")
        expected_previous = previous.head_hash if previous else ""
        if head.previous != expected_previous:
            if previous is None:
                raise _fail("checkpoint 1: links to a previous checkpoint, but none precedes it")
            raise _fail(f"checkpoint {seq}: link to checkpoint {seq - 1} broken")
        previous_size = previous.tree_size if previous else 0
        if head.tree_size <= previous_size:
            raise _fail(f"checkpoint {seq}: covers no records")
        if head.first_index != previous_size:
            raise _fail(f"checkpoint {seq}: starts at leaf {head.first_index}, not {previous_size}")

    def _run(self, trusted_head: TrustedHead | None, inventory: Inventory | None) -> VerifyResult:
        started, previous = self._start(trusted_head)
        size = previous.tree_size if previous else 0
        writer = TileWriter(size, self._edge(size, "the trusted head"))
        if previous is not None and (
            writer.compact_range().hashes != previous.frontier
            or writer.compact_range().root() != previous.root
        ):
            raise _fail(f"checkpoint {previous.seq}: its tiles do not match its signed root")
        # The leaves are read from the level-0 tiles as they stand at the latest size; find it first.
        latest_size = self._latest_size(started) or size
        leaves = LeafHashes(self.source, latest_size) if latest_size else None
        # The records, ordered like the leaves: from the full scan, or (from a trusted head) from
        # the day index after it; either way matched with the covered keys as both stream by.
        records: Iterator[RecordMark] = (
            iter(inventory.records) if inventory is not None else self._indexed_records(previous)
        )
        record = next(records, None)
        anomalies = Anomalies()
        expired = 0
        verified = 0
        seq = started
        through = previous.through if previous else ""
        last_order: tuple[str, str] | None = None
        anchored = 0
        cutoff = self.now - self.retention

        for item in self.source.heads(after_seq=started):
            seq += 1
            if item["sk"]["S"] != f"{seq:012d}":
                stored_seq = item["sk"]["S"]
                if stored_seq.isdigit() and int(stored_seq) > seq:
                    raise _fail(f"checkpoint sequence gap at {seq}")
                raise _fail(f"checkpoint item {stored_seq!r}: not the next sequence number ({seq})")
            head = self._stored(seq, item)
            self._check_head(seq, head, previous)
            keys = self.source.leaf_keys(seq)
            if len(keys) != head.tree_size - head.first_index:
                raise _fail(
                    f"checkpoint {seq}: lists {len(keys)} records for {head.tree_size - head.first_index} leaves"
                )
            label = f"checkpoint {seq}"
            if leaves is None:  # a head was stored while this run started: verify again
                raise _fail(f"{label}: written while the log was being verified; run verify again")
            hashes: list[bytes] = []
            read_from: list[str] = []
            for offset, key in enumerate(keys):
                index = head.first_index + offset
                sort_key = key.rpartition("|")[2]
                if sort_key <= through or (last_order is not None and (sort_key, key) <= last_order):
                    raise _fail(f"{label}: leaf {index} ({key}) is out of order")
                last_order = (sort_key, key)
                leaf = leaves(index, label)
                source_tile = tile_for(0, index // TILE_WIDTH, latest_size).path()
                if not read_from or read_from[-1] != source_tile:
                    read_from.append(source_tile)
                writer.append(leaf)
                hashes.append(leaf)
            if head.through != keys[-1].rpartition("|")[2]:
                raise _fail(f"{label}: through does not match its last leaf")
            # The signed root decides which side is wrong: the leaf tiles, or a tile built on them.
            frontier = writer.compact_range()
            if frontier.root() != head.root:
                raise _fail(f"{label}: root does not match its leaf tiles ({', '.join(read_from)})")
            if frontier.hashes != head.frontier:
                raise _fail(f"{label}: stored frontier does not match its tiles")
            self._check_tiles(writer, label)
            if previous is not None:
                self._check_consistency(previous, head)
            if self.anchor is not None and self._anchored(self.anchor, head):
                anchored += 1
            # the records this head covers: each must hash to its leaf
            documents = self.source.documents(keys) if inventory is None else {}
            for offset, key in enumerate(keys):
                index = head.first_index + offset
                spot = f"{label}, leaf {index}"
                while record is not None and (record.sort_key, record.key) < (key.rpartition("|")[2], key):
                    self._uncovered(record, anomalies)
                    record = next(records, None)
                actual: bytes | None = None
                if record is not None and record.key == key:
                    actual = record.leaf
                    record = next(records, None)
                if inventory is None:  # the table itself decides, not its index
                    document = documents.get(key)
                    actual = merkle.leaf_hash(document.encode()) if document is not None else None
                if actual is None:
                    if self._expired(key, cutoff):
                        expired += 1
                    else:
                        anomalies.missing.append((index, key, spot, hashes[offset]))
                elif actual != hashes[offset]:
                    anomalies.altered.append((index, key, spot))
            if anomalies.full():
                break
            previous, through, verified = head, head.through, verified + 1
        pending = 0
        while record is not None:
            if record.sort_key <= through:
                self._uncovered(record, anomalies)
            else:
                pending += 1
                anomalies.moved_to.setdefault(record.leaf, record.key)
            record = next(records, None)
        if self.anchor is not None:
            self._check_anchor_tail(self.anchor, seq)
        problem = anomalies.first()
        if problem is not None:
            raise problem
        if inventory is not None and inventory.broken:
            raise _fail(f"record {inventory.broken}: stored without a document")
        if inventory is not None and inventory.foreign:
            raise _fail(f"item {inventory.foreign}: neither an audit record nor a checkpoint")
        return VerifyResult(
            checkpoints=verified,
            covered=previous.tree_size if previous else 0,
            pending=pending,
            expired=expired,
            latest_head=previous.head_hash if previous else "",
            latest_seq=previous.seq if previous else 0,
            anchored=anchored,
            started_at=started,
        )

    def _latest_size(self, started: int) -> int:
        size = 0
        for item in self.source.heads(after_seq=started):
            document = item.get("document", {}).get("S")
            try:
                size = (
                    max(size, int(json.loads(document)["tree_size"])) if isinstance(document, str) else size
                )
            except (ValueError, KeyError, TypeError):
                continue  # named when the chain reaches it
        return size

    def _edge(self, size: int, label: str) -> dict[TileId, bytes]:
        wanted = edge_tiles(size)
        found = dict(self.source.tiles(wanted))
        for tile in wanted:
            if tile not in found:
                raise _fail(f"tile {tile.path()}: missing ({label})")
        return found

    def _check_tiles(self, writer: TileWriter, label: str) -> None:
        """Every tile the rebuilt tree has at this size, except the level-0 tiles the leaves were
        read from, must be stored exactly so: full tiles above level 0 and every partial tile."""
        made = {tile: data for tile, data in writer.take_tiles().items() if tile.level > 0 or not tile.full}
        stored = self.source.tiles(made)
        for tile, data in sorted(made.items()):
            if tile not in stored:
                raise _fail(f"tile {tile.path()}: missing ({label})")
            if stored[tile] != data:
                raise _fail(f"tile {tile.path()}: altered, it does not match the signed tree ({label})")

    def _check_consistency(self, previous: TreeHead, head: TreeHead) -> None:
        """What a partner holding the previous head would check, with the proof the service serves."""
        try:
            tree = TileHashes(self.source, head.tree_size)
            proof = tree.consistency_proof(previous.tree_size)
        except TileMissing as missing:
            raise _fail(f"checkpoint {head.seq}: {missing}") from None
        if not merkle.verify_consistency(previous.tree_size, head.tree_size, previous.root, head.root, proof):
            raise _fail(f"checkpoint {head.seq}: not consistent with checkpoint {previous.seq}")

    def _anchored(self, anchor: AnchorSource, head: TreeHead) -> bool:
        history = anchor.history(head.seq)
        if history is None:
            if not self.source.is_published(head.seq):
                return False  # the newest head, not published yet (the next run will)
            raise _fail(f"checkpoint {head.seq}: missing from the anchor bucket {anchor.bucket}")
        if history.tampered:
            raise _fail(
                f"checkpoint {head.seq}: its key in {anchor.bucket} has {history.delete_markers} delete "
                f"marker(s) and {history.later_versions} later version(s) (deleted or overwritten)"
            )
        copy = history.first
        if copy.signed_head != head.signed_head or copy.document != head_document(head):
            raise _fail(
                f"checkpoint {head.seq}: differs from its write-once copy in {anchor.bucket} (rewritten)"
            )
        return True

    @staticmethod
    def _check_anchor_tail(anchor: AnchorSource, last_seq: int) -> None:
        later = next(anchor.sequence_numbers(after=last_seq), None)
        if later is not None:
            raise _fail(
                f"checkpoint {later}: in the anchor bucket {anchor.bucket} but not in the table "
                "(the latest checkpoints were deleted)"
            )

    def _expired(self, key: str, cutoff: datetime) -> bool:
        occurred = occurred_of(key.rpartition("|")[2])
        return occurred is not None and occurred < cutoff

    @staticmethod
    def _uncovered(record: RecordMark, anomalies: Anomalies) -> None:
        if len(anomalies.uncovered) < MAX_ANOMALIES:
            anomalies.uncovered.append(record)
        anomalies.moved_to.setdefault(record.leaf, record.key)

    def _indexed_records(self, start: TreeHead | None) -> Iterator[RecordMark]:
        """Records after ``start``'s ``through``, day by day from its day, in key order."""
        after = start.through if start else ""
        day = date.fromisoformat(after[:10]) if after else self.now.astimezone(UTC).date()
        while day <= self.now.astimezone(UTC).date():
            for entry in self.source.entries_of_day(day, after=after):
                yield RecordMark(entry.sort_key, entry.key, entry.hash)
            day += timedelta(days=1)


# -- export -----------------------------------------------------------------------------------------


def parse_day(text: str, option: str) -> date:
    if not _DAY.fullmatch(text):
        raise AuditError(f"{option} {text!r} is not a date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise AuditError(f"{option} {text!r} is not a date (YYYY-MM-DD)") from None


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
        elif isinstance(value, bool):
            row.append("true" if value else "false")
        else:
            row.append("" if value is None else str(value))
    return row


def write_csv(records: Iterable[StoredRecord], stream: TextIO, *, japanese: bool) -> int:
    rows = [csv_row(record) for record in records]  # every document is checked before any is written
    writer = csv.writer(stream)
    writer.writerow([ja if japanese else en for _, en, ja in EXPORT_COLUMNS])
    writer.writerows(rows)
    return len(rows)


__all__ = ["AuditError", "VerificationFailed", "Verifier", "b64"]
