"""The Merkle Hash Tree of RFC 6962 section 2.1, for tamper-evident audit checkpoints.

Why it exists: audit records are the leaves of one append-only tree. A signed checkpoint holds a
tree head (size and root) over *all* records so far; a resident gets an inclusion proof that their
record is under a checkpoint (RFC 6962 section 2.1.1), and an auditor gets a consistency proof that
a later checkpoint extends an earlier one without rewriting it (section 2.1.2). Anyone holding two
checkpoints can therefore detect a record that was changed, removed or slipped into the past.

What it must never do: accept a proof it cannot verify. The verifiers return ``True`` only when the
proof recomputes exactly the given root(s) under RFC 9162 sections 2.1.3.2 and 2.1.4.2 (which
restate RFC 6962's proofs with verification algorithms); any malformed input (wrong types, hashes
that are not 32 bytes, impossible sizes or indices, proofs too long or too short) is ``False``,
never an exception. The generators raise ``ValueError`` on out-of-range arguments instead of
guessing. Domain only: no I/O, no clock, no randomness; SHA-256 from ``hashlib`` is the only
dependency.

Hashes are ``bytes`` of 32. ``leaf_hash`` takes the raw leaf data; every other function takes or
returns leaf *hashes* (``MTH({d(i)}) = leaf_hash(d(i))``), so callers hash each record once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32

# RFC 6962 section 2.1: distinct prefixes for leaves and interior nodes give second-preimage
# resistance (a leaf can never be passed off as an interior node, or the reverse).
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

# RFC 6962 section 2.1: "The hash of an empty list is the hash of an empty string: MTH({}) = SHA-256()."
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """``MTH({d(0)}) = SHA-256(0x00 || d(0))`` (RFC 6962 section 2.1)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)`` (RFC 6962 section 2.1); both children must be 32-byte hashes."""
    if not (_is_hash(left) and _is_hash(right)):
        raise ValueError(f"node children must be {HASH_SIZE}-byte hashes")
    return _node(left, right)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """``MTH(D[n])`` over the leaf hashes (RFC 6962 section 2.1); O(n) hashes."""
    _require_leaf_hashes(leaf_hashes)
    if not leaf_hashes:
        return EMPTY_ROOT
    return _mth(leaf_hashes, 0, len(leaf_hashes))


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path ``PATH(m, D[n])`` for leaf ``index`` (RFC 6962 section 2.1.1), leaf's sibling first.

    Raises ``ValueError`` unless ``0 <= index < len(leaf_hashes)``.
    """
    _require_leaf_hashes(leaf_hashes)
    if not _is_size(index) or index >= len(leaf_hashes):
        raise ValueError(f"leaf index {index!r} is outside a tree of {len(leaf_hashes)} leaves")
    # PATH(0, {d(0)}) = {}. For n > 1, with k the largest power of two smaller than n:
    #   m < k:  PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])
    #   m >= k: PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])
    # Walked from the root down; each level's sibling goes *after* the deeper path, hence the reverse.
    path: list[bytes] = []
    lo, hi = 0, len(leaf_hashes)
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(_mth(leaf_hashes, lo + k, hi))
            hi = lo + k
        else:
            path.append(_mth(leaf_hashes, lo, lo + k))
            lo += k
    path.reverse()
    return path


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root_hash: bytes
) -> bool:
    """Whether ``proof`` shows the leaf *hash* ``leaf`` at ``index`` under ``root_hash`` of a tree of ``tree_size``.

    RFC 9162 section 2.1.3.2. Never raises: malformed input is ``False``.
    """
    path = _as_hashes(proof)
    if path is None or not (_is_hash(leaf) and _is_hash(root_hash)):
        return False
    if not (_is_size(index) and _is_size(tree_size)) or index >= tree_size:
        return False
    fn, sn = index, tree_size - 1
    r = leaf
    for p in path:
        if sn == 0:  # the proof is longer than the path from this leaf to the root
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            # The last node of a level with no right sibling is promoted: climb until fn is a right child.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """``PROOF(m, D[n])`` that the first ``old_size`` leaves are a prefix of all of them (RFC 6962 section 2.1.2).

    Raises ``ValueError`` unless ``0 < old_size <= len(leaf_hashes)``; ``PROOF(n, D[n])`` is empty.
    """
    _require_leaf_hashes(leaf_hashes)
    if not _is_size(old_size) or old_size == 0 or old_size > len(leaf_hashes):
        raise ValueError(f"old size {old_size!r} is not in 1..{len(leaf_hashes)}")
    # PROOF(m, D[n]) = SUBPROOF(m, D[n], true), where
    #   SUBPROOF(m, D[m], true) = {}
    #   SUBPROOF(m, D[m], false) = {MTH(D[m])}
    # and for m < n, with k the largest power of two smaller than n:
    #   m <= k: SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
    #   m > k:  SUBPROOF(m, D[n], b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
    # Walked from the root down over D[lo:hi] with m relative to lo, then reversed as for PATH.
    proof: list[bytes] = []
    lo, hi, m, complete = 0, len(leaf_hashes), old_size, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(_mth(leaf_hashes, lo + k, hi))
            hi = lo + k
        else:
            proof.append(_mth(leaf_hashes, lo, lo + k))
            lo += k
            m -= k
            complete = False
    if not complete:
        proof.append(_mth(leaf_hashes, lo, hi))
    proof.reverse()
    return proof


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows the tree ``(old_size, old_root)`` is a prefix of ``(new_size, new_root)``.

    RFC 9162 section 2.1.4.2, plus ``PROOF(n, D[n]) = {}`` (RFC 6962 section 2.1.2) for equal sizes.
    An old size of 0 is ``False``: RFC 6962 defines no proof from the empty tree, and a checkpoint
    over no records proves nothing. Never raises: malformed input is ``False``.
    """
    path = _as_hashes(proof)
    if path is None or not (_is_hash(old_root) and _is_hash(new_root)):
        return False
    if not (_is_size(old_size) and _is_size(new_size)) or old_size == 0 or old_size > new_size:
        return False
    if old_size == new_size:
        return not path and old_root == new_root
    if not path:
        return False
    if old_size & (old_size - 1) == 0:
        # The old tree is a complete subtree of the new one, so its root is the proof's implicit start.
        path = [old_root, *path]
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:  # the proof is longer than the new tree allows
            return False
        if fn & 1 or fn == sn:
            fr = _node(c, fr)
            sr = _node(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n > 1``): RFC 6962 section 2.1's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(leaf_hashes: Sequence[bytes], lo: int, hi: int) -> bytes:
    """``MTH(D[lo:hi])`` for ``hi > lo`` (RFC 6962 section 2.1), without copying slices.

    Recursion depth is about log2(n); every leaf and interior node is hashed once, so O(hi - lo).
    """
    if hi - lo == 1:
        return leaf_hashes[lo]
    k = _split(hi - lo)
    return _node(_mth(leaf_hashes, lo, lo + k), _mth(leaf_hashes, lo + k, hi))


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _as_hashes(value: object) -> list[bytes] | None:
    """The proof as a list of 32-byte hashes, or ``None`` if it is anything else."""
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes, bytearray)):
        return None
    hashes: list[bytes] = []
    for item in value:
        if not isinstance(item, bytes) or len(item) != HASH_SIZE:
            return None
        hashes.append(item)
    return hashes


def _require_leaf_hashes(leaf_hashes: Sequence[bytes]) -> None:
    for position, item in enumerate(leaf_hashes):
        if not _is_hash(item):
            raise ValueError(f"leaf hash {position} is not a {HASH_SIZE}-byte hash (pass leaf_hash(data))")


class CompactRange:
    """The right edge ("frontier") of a tree of ``size`` leaves: the roots of its perfect, aligned
    subtrees, largest first, one per set bit of ``size`` (at most log2(size) + 1 hashes).

    It is all that appending needs: ``append`` merges equal-sized neighbours (O(1) amortised hashes)
    and ``root`` folds them from the right into ``MTH(D[0:size])`` (O(log n) hashes), so a
    checkpoint never rehashes the leaves of earlier checkpoints. Stored in every checkpoint and
    checked against its signed root before it is trusted.
    """

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if not _is_size(size):
            raise ValueError(f"a tree size must be a non-negative integer, not {size!r}")
        nodes = list(hashes)
        if len(nodes) != bin(size).count("1") or not all(_is_hash(node) for node in nodes):
            raise ValueError(f"a tree of {size} leaves has {bin(size).count('1')} frontier hashes")
        self._size = size
        self._nodes = nodes

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._nodes)

    def append(self, leaf: bytes) -> None:
        """Add one leaf *hash* at index ``size``."""
        if not _is_hash(leaf):
            raise ValueError(f"a leaf hash must be {HASH_SIZE} bytes")
        self._nodes.append(leaf)
        merged = self._size
        # Each trailing 1 bit of the old size is a subtree of the new leaf's size: merge them.
        while merged & 1:
            right = self._nodes.pop()
            left = self._nodes.pop()
            self._nodes.append(_node(left, right))
            merged >>= 1
        self._size += 1

    def root(self) -> bytes:
        if not self._nodes:
            return EMPTY_ROOT
        result = self._nodes[-1]
        for left in reversed(self._nodes[:-1]):
            result = _node(left, result)
        return result

    def copy(self) -> CompactRange:
        return CompactRange(self._size, self._nodes)
