"""Tamper evidence for the audit log: signed tree heads over an RFC 9162 Merkle tree stored as tiles.

Records are appended independently (one partition per flow, no hot key). Every few minutes a
checkpoint takes the records written since the last one, in key order, appends their leaf hashes
to the log's tree and signs the new tree head (seq, size, root, the last key covered, the hash of
the previous signed head) with the service's KMS key. Anyone holding the public key can then check,
offline, that no record was altered, dropped, inserted or reordered; a resident gets inclusion
proofs, and a partner that keeps the heads it was shown gets consistency proofs between them.

What it costs, and why it stays flat as the log grows for years:

- A run reads the latest head (its ``frontier``: at most log2 N subtree roots, checked against its
  signed root and against the edge tiles), the right-edge partial tiles (one per 8 levels), and
  only the records after the head's ``through`` (per shard, with ``Limit``). It writes the new head,
  the tiles it changed and the keys it covered in one transaction. O(new records + log N).
- A proof reads the tiles on its path (C2SP tlog-tiles, ``chalicelib.domain.tiles``): a handful,
  whatever N. A signed receipt fetches them once for all its records.
- After the commit, a run *publishes* the head: each covered record's leaf index (for receipts) and
  a copy of the signed head in a write-once (Object Lock) bucket the operator cannot rewrite. A run
  that crashes anywhere leaves either nothing or a committed head that the next run publishes.

The leaf of a record is its stored document, byte for byte (``leaf_hash(document.encode())``).
Checkpoints never include a record younger than ``SETTLE``: a write that started before the
checkpoint but lands after it (clock skew between containers, a slow transaction, an index that
lags) is not missed. Two concurrent runs cannot both commit a head: the sequence number is a
conditional write, and every later write is derived from committed heads only.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, ClassVar, Protocol

from chalicelib.domain import merkle
from chalicelib.domain.errors import ConcurrentUpdate, ErrorCategory, RelayError
from chalicelib.domain.ports import Clock, Signer
from chalicelib.domain.sealing import sign_jwt
from chalicelib.domain.tiles import TileHashes, TileId, TileSource, TileWriter, edge_tiles

SETTLE = timedelta(seconds=60)
MAX_LEAVES_PER_CHECKPOINT = 2000
CHECKPOINT_TYP = "myna-relay-checkpoint+jwt"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LogInconsistent(RelayError):
    """The stored tree does not match its own signed head: a checkpoint must not build on it."""

    code = "audit-log-inconsistent"
    category: ClassVar[ErrorCategory] = "unavailable"
    title = "The audit log does not match its signed head"


@dataclass(frozen=True)
class StoredRecord:
    """An audit record as stored: its key (``pk|sk``) and its document, exactly as written."""

    key: str
    sort_key: str
    document: str

    @property
    def leaf(self) -> bytes:
        return merkle.leaf_hash(self.document.encode())


@dataclass(frozen=True)
class LeafEntry:
    """A record as a checkpoint sees it: its key, sort key and leaf hash (no document)."""

    key: str
    sort_key: str
    hash: bytes


@dataclass(frozen=True)
class TreeHead:
    """A signed checkpoint: the tree over the first ``tree_size`` records, and how it was made."""

    seq: int
    tree_size: int
    root: bytes
    through: str  # the last record sort key covered (inclusive)
    previous: str  # b64url SHA-256 of the previous checkpoint's signed head ("" for the first)
    frontier: tuple[bytes, ...]  # the compact range of the tree (checked against root before use)
    first_index: int  # this checkpoint added leaves first_index .. tree_size - 1
    created_at: datetime
    signed_head: str  # compact JWS (ES256, KMS) over the head claims

    def head_claims(self, issuer: str) -> dict[str, Any]:
        return head_claims(
            issuer, self.seq, self.tree_size, self.root, self.through, self.previous, self.created_at
        )

    @property
    def head_hash(self) -> str:
        return head_hash(self.signed_head)

    def as_json(self) -> dict[str, Any]:
        """What a partner or an auditor is shown of a head (everything in it is signed)."""
        return {
            "seq": self.seq,
            "tree_size": self.tree_size,
            "root": b64(self.root),
            "signed_tree_head": self.signed_head,
        }


def head_hash(signed_head: str) -> str:
    return b64(hashlib.sha256(signed_head.encode()).digest())


def head_claims(
    issuer: str, seq: int, tree_size: int, root: bytes, through: str, previous: str, created_at: datetime
) -> dict[str, Any]:
    return {
        "iss": issuer,
        "seq": seq,
        "tree_size": tree_size,
        "root": b64(root),
        "through": through,
        "previous": previous,
        "iat": int(created_at.timestamp()),
    }


def head_document(head: TreeHead) -> str:
    """How a head is stored, beside its signed form (and copied to the anchor bucket)."""
    return json.dumps(
        {
            "seq": head.seq,
            "tree_size": head.tree_size,
            "root": b64(head.root),
            "through": head.through,
            "previous": head.previous,
            "frontier": [b64(node) for node in head.frontier],
            "first_index": head.first_index,
            "created_at": head.created_at.isoformat(),
        },
        separators=(",", ":"),
    )


def parse_head(document: str, signed_head: str) -> TreeHead:
    """A stored head; ``ValueError`` (or ``KeyError``/``TypeError``) if it is not one."""
    data = json.loads(document)
    head = TreeHead(
        seq=int(data["seq"]),
        tree_size=int(data["tree_size"]),
        root=unb64(data["root"]),
        through=str(data["through"]),
        previous=str(data["previous"]),
        frontier=tuple(unb64(node) for node in data["frontier"]),
        first_index=int(data["first_index"]),
        created_at=datetime.fromisoformat(data["created_at"]),
        signed_head=signed_head,
    )
    if len(head.root) != merkle.HASH_SIZE or not 0 <= head.first_index < head.tree_size:
        raise ValueError("not a tree head")
    return head


class CheckpointStore(TileSource, Protocol):
    def latest_head(self, *, consistent: bool = True) -> TreeHead | None:
        """The checkpoint with the highest sequence number (one small read)."""
        ...

    def head(self, seq: int) -> TreeHead | None: ...

    def first_day(self, through: str, *, today: date) -> date:
        """The earliest UTC day that can hold a record after ``through``: its own day, or a later
        day a quiet spell moved on to. With no ``through`` (no checkpoint yet) the day of the first
        record, found once (``today`` when there is none)."""
        ...

    def move_first_day(self, through: str, day: date) -> None:
        """Remember that no record after ``through`` lies before ``day`` (a quiet spell)."""
        ...

    def records_after(
        self, sort_key: str, *, first_day: date, until: datetime, limit: int
    ) -> list[LeafEntry]:
        """Records with a sort key above ``sort_key`` that occurred before ``until``, in key order,
        at most ``limit`` (more only to keep records of one sort key together)."""
        ...

    def commit(self, head: TreeHead, keys: Sequence[str], tiles: Mapping[TileId, bytes]) -> None:
        """The head, the keys of the records it added and the tiles it changed, in one write;
        ``ConcurrentUpdate`` if that sequence number exists."""
        ...

    def leaf_keys(self, seq: int) -> list[str]:
        """The keys of the records checkpoint ``seq`` added, in leaf order."""
        ...

    def is_published(self, seq: int) -> bool: ...

    def put_leaf_indexes(self, seq: int, first_index: int, keys: Sequence[str]) -> None:
        """Record each covered record's leaf index beside it (idempotent)."""
        ...

    def mark_published(self, seq: int) -> None: ...


class HeadAnchor(Protocol):
    """Somewhere the operator cannot rewrite or delete a signed head (S3 Object Lock)."""

    def anchor(self, head: TreeHead, document: str) -> None:
        """Keep the head (idempotent: the same head twice is one head)."""
        ...


@dataclass(frozen=True)
class InclusionProof:
    checkpoint_seq: int
    leaf_index: int
    tree_size: int
    path: tuple[bytes, ...]
    signed_head: str

    def as_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint_seq,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "audit_path": [b64(node) for node in self.path],
            "signed_tree_head": self.signed_head,
        }


@dataclass(frozen=True)
class ConsistencyProof:
    """RFC 9162 section 2.1.4: the ``first`` tree is a prefix of the ``second``."""

    first: TreeHead
    second: TreeHead
    path: tuple[bytes, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "first": self.first.as_json(),
            "second": self.second.as_json(),
            "consistency_path": [b64(node) for node in self.path],
        }


class CheckpointNotFound(RelayError):
    code = "checkpoint-not-found"
    category: ClassVar[ErrorCategory] = "not_found"
    title = "No such checkpoint"


@dataclass(kw_only=True)
class CheckpointService:
    store: CheckpointStore
    signer: Signer
    clock: Clock
    issuer: str
    anchor: HeadAnchor | None = None
    max_leaves: int = MAX_LEAVES_PER_CHECKPOINT

    # -- making checkpoints -------------------------------------------------------------------------

    def checkpoint(self) -> TreeHead | None:
        """Sign a new tree head over the records since the last checkpoint; None if there are none
        (or another run committed this sequence number first: its records are covered)."""
        latest = self.store.latest_head()
        if latest is not None:
            self.publish(latest)  # finish what a run that crashed after its commit left
        now = self.clock.now()
        until = now - SETTLE
        through = latest.through if latest else ""
        first_day = self.store.first_day(through, today=until.date())
        entries = self.store.records_after(through, first_day=first_day, until=until, limit=self.max_leaves)
        if not entries:
            quiet_since = (until - timedelta(days=1)).date()
            if quiet_since > first_day:  # the next run need not read the quiet days again
                self.store.move_first_day(through, quiet_since)
            return None
        size = latest.tree_size if latest else 0
        # The edge tiles were written with the latest head, perhaps a moment ago: read them consistently.
        writer = TileWriter(size, self.store.tiles(edge_tiles(size), consistent=True))
        frontier = writer.compact_range()
        if latest is not None:
            self._check_edge(latest, frontier)
        for entry in entries:
            writer.append(entry.hash)
        frontier = writer.compact_range()
        root = frontier.root()
        seq = latest.seq + 1 if latest else 1
        previous = latest.head_hash if latest else ""
        head = TreeHead(
            seq=seq,
            tree_size=writer.size,
            root=root,
            through=entries[-1].sort_key,
            previous=previous,
            frontier=frontier.hashes,
            first_index=size,
            created_at=now,
            signed_head=sign_jwt(
                head_claims(self.issuer, seq, writer.size, root, entries[-1].sort_key, previous, now),
                signer=self.signer,
                typ=CHECKPOINT_TYP,
            ),
        )
        keys = [entry.key for entry in entries]
        try:
            self.store.commit(head, keys, writer.tiles())
        except ConcurrentUpdate:
            return None
        self.publish(head, keys)
        return head

    def _check_edge(self, latest: TreeHead, frontier: merkle.CompactRange) -> None:
        """The stored frontier, the edge tiles and the signed root must agree before anything is
        built on them: a tile or frontier edited in the table stops the checkpoints (an alarm)."""
        if frontier.hashes != latest.frontier:
            raise LogInconsistent(
                f"checkpoint {latest.seq}: its edge tiles do not match its frontier", check="audit.tiles"
            )
        if frontier.root() != latest.root:
            raise LogInconsistent(
                f"checkpoint {latest.seq}: its frontier does not match its root", check="audit.frontier"
            )

    def publish(self, head: TreeHead, keys: Sequence[str] | None = None) -> None:
        """Leaf indexes beside the records, and the signed head in the anchor; then mark it done.
        Everything here follows from the committed head, so repeating it is harmless."""
        if self.store.is_published(head.seq):
            return
        covered = list(keys) if keys is not None else self.store.leaf_keys(head.seq)
        self.store.put_leaf_indexes(head.seq, head.first_index, covered)
        if self.anchor is not None:
            self.anchor.anchor(head, head_document(head))
        self.store.mark_published(head.seq)

    # -- proofs -------------------------------------------------------------------------------------

    def latest(self) -> TreeHead | None:
        return self.store.latest_head(consistent=False)

    def inclusion_proofs(
        self, leaf_indexes: Mapping[str, int], *, head: TreeHead | None = None
    ) -> dict[str, InclusionProof]:
        """Proofs that records (key -> leaf index) are in the latest tree, reading each tile once;
        records that tree does not cover yet are left out."""
        head = head or self.latest()
        if head is None:
            return {}
        covered = {key: index for key, index in leaf_indexes.items() if 0 <= index < head.tree_size}
        if not covered:
            return {}
        tiles = TileHashes(self.store, head.tree_size)
        tiles.prefetch_inclusion(covered.values())
        return {
            key: InclusionProof(
                head.seq, index, head.tree_size, tuple(tiles.inclusion_proof(index)), head.signed_head
            )
            for key, index in covered.items()
        }

    def head(self, seq: int | None) -> TreeHead:
        """Checkpoint ``seq`` (the latest if None), or ``CheckpointNotFound``."""
        found = self.latest() if seq is None else self.store.head(seq)
        if found is None:
            raise CheckpointNotFound(
                "no checkpoint has been signed yet" if seq is None else f"there is no checkpoint {seq}",
                check="checkpoint",
            )
        return found

    def consistency(self, first_seq: int, second_seq: int | None = None) -> ConsistencyProof:
        """The RFC 9162 consistency proof from checkpoint ``first_seq`` to ``second_seq`` (latest)."""
        second = self.head(second_seq)
        if first_seq > second.seq:
            raise CheckpointNotFound(
                f"checkpoint {first_seq} is later than checkpoint {second.seq}", check="from"
            )
        first = self.head(first_seq)
        if first.seq == second.seq:
            return ConsistencyProof(first, second, ())
        tiles = TileHashes(self.store, second.tree_size)
        tiles.prefetch_consistency(first.tree_size)
        return ConsistencyProof(first, second, tuple(tiles.consistency_proof(first.tree_size)))
