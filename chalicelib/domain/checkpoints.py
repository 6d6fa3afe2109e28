"""Tamper evidence for the audit log: signed checkpoints over an RFC 6962 Merkle tree.

Records are appended independently (one partition per flow, no hot key). A checkpoint takes every
record written since the previous one, in key order, appends their leaf hashes to the log's tree,
and signs the tree head (size, root, the last key covered, and the hash of the previous signed
head) with the service's KMS key. Anyone holding the public key can then check, offline, that no
record was altered, dropped, inserted or reordered, and a resident can be given an inclusion proof.

The leaf of a record is its stored document, byte for byte (``leaf_hash(document.encode())``).
Checkpoints never include a record younger than ``SETTLE``: a write that started before the
checkpoint but lands after it (clock skew between containers, a slow transaction) is not missed.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from chalicelib.domain import merkle
from chalicelib.domain.errors import ConcurrentUpdate
from chalicelib.domain.ports import Clock, Signer
from chalicelib.domain.sealing import sign_jwt

SETTLE = timedelta(seconds=60)
MAX_LEAVES_PER_CHECKPOINT = 2000
CHECKPOINT_TYP = "myna-relay-checkpoint+jwt"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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
class Leaf:
    key: str
    hash: bytes


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    through: str  # the last record sort key covered (inclusive)
    tree_size: int  # cumulative: every record of every checkpoint so far
    root: bytes
    previous: str  # b64url SHA-256 of the previous checkpoint's signed head ("" for the first)
    leaves: tuple[Leaf, ...]  # the leaves this checkpoint added, in order
    signed_head: str  # compact JWS (ES256, KMS) over the head claims
    created_at: datetime

    def head_claims(self, issuer: str) -> dict[str, Any]:
        return head_claims(
            issuer, self.seq, self.tree_size, self.root, self.through, self.previous, self.created_at
        )

    @property
    def head_hash(self) -> str:
        return b64(hashlib.sha256(self.signed_head.encode()).digest())


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


class CheckpointStore(Protocol):
    def checkpoints(self) -> Iterator[Checkpoint]:
        """Every checkpoint, in sequence order."""
        ...

    def records_after(
        self, sort_key: str, *, until: datetime, limit: int, not_before: datetime | None = None
    ) -> list[StoredRecord]:
        """Audit records with a sort key above ``sort_key`` that occurred before ``until``, in key
        order (at most ``limit``); none can have occurred before ``not_before``."""
        ...

    def put_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store the next checkpoint; ``ConcurrentUpdate`` if that sequence number exists."""
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


class CheckpointService:
    def __init__(self, *, store: CheckpointStore, signer: Signer, clock: Clock, issuer: str) -> None:
        self._store = store
        self._signer = signer
        self._clock = clock
        self._issuer = issuer

    def all_leaves(self, checkpoints: Sequence[Checkpoint]) -> list[Leaf]:
        return [leaf for checkpoint in checkpoints for leaf in checkpoint.leaves]

    def checkpoint(self) -> Checkpoint | None:
        """Sign a new tree head over the records since the last checkpoint; None if there are none.
        Safe to run concurrently: the sequence number is a conditional write, the loser retries
        nothing and the next run picks its records up."""
        existing = list(self._store.checkpoints())
        previous = existing[-1] if existing else None
        now = self._clock.now()
        # Anything older than the previous run's settle line (less a day of margin) is covered.
        not_before = previous.created_at - SETTLE - timedelta(days=1) if previous else None
        records = self._store.records_after(
            previous.through if previous else "",
            until=now - SETTLE,
            limit=MAX_LEAVES_PER_CHECKPOINT,
            not_before=not_before,
        )
        if not records:
            return None
        leaves = self.all_leaves(existing) + [Leaf(record.key, record.leaf) for record in records]
        seq = previous.seq + 1 if previous else 1
        root = merkle.root([leaf.hash for leaf in leaves])
        through = records[-1].sort_key
        previous_hash = previous.head_hash if previous else ""
        signed = sign_jwt(
            head_claims(self._issuer, seq, len(leaves), root, through, previous_hash, now),
            signer=self._signer,
            typ=CHECKPOINT_TYP,
        )
        checkpoint = Checkpoint(
            seq=seq,
            through=through,
            tree_size=len(leaves),
            root=root,
            previous=previous_hash,
            leaves=tuple(Leaf(record.key, record.leaf) for record in records),
            signed_head=signed,
            created_at=now,
        )
        try:
            self._store.put_checkpoint(checkpoint)
        except ConcurrentUpdate:
            return None
        return checkpoint

    def inclusion_proof(self, record_key: str) -> InclusionProof | None:
        """The proof that a record is in the latest checkpointed tree, once it is checkpointed."""
        checkpoints = list(self._store.checkpoints())
        if not checkpoints:
            return None
        leaves = self.all_leaves(checkpoints)
        index = next((i for i, leaf in enumerate(leaves) if leaf.key == record_key), None)
        if index is None:
            return None
        latest = checkpoints[-1]
        path = merkle.inclusion_proof([leaf.hash for leaf in leaves], index)
        return InclusionProof(latest.seq, index, latest.tree_size, tuple(path), latest.signed_head)


def checkpoint_document(checkpoint: Checkpoint) -> str:
    """How a checkpoint is stored (everything but the signed head, which is stored beside it)."""
    return json.dumps(
        {
            "seq": checkpoint.seq,
            "through": checkpoint.through,
            "tree_size": checkpoint.tree_size,
            "root": b64(checkpoint.root),
            "previous": checkpoint.previous,
            "leaves": [{"key": leaf.key, "hash": b64(leaf.hash)} for leaf in checkpoint.leaves],
            "created_at": checkpoint.created_at.isoformat(),
        },
        separators=(",", ":"),
    )


def parse_checkpoint(document: str, signed_head: str) -> Checkpoint:
    data = json.loads(document)
    return Checkpoint(
        seq=int(data["seq"]),
        through=str(data["through"]),
        tree_size=int(data["tree_size"]),
        root=unb64(data["root"]),
        previous=str(data["previous"]),
        leaves=tuple(Leaf(str(leaf["key"]), unb64(leaf["hash"])) for leaf in data["leaves"]),
        signed_head=signed_head,
        created_at=datetime.fromisoformat(data["created_at"]),
    )
