"""RFC 9162 (Certificate Transparency 2.0) Merkle tree consistency proofs, from the RFC alone.

The relay's audit log is an RFC 9162 Merkle tree over SHA-256; its signed tree heads
(checkpoints) name a size and a root. A partner that kept an older head asks for a consistency
proof to a newer one and checks it here: the older tree must be a prefix of the newer one, or the
log was rewritten, rolled back or forked.

Pure and offline: bytes in, a ``bool`` out. It must never raise on what a relay sent (malformed
input is simply ``False``), and it must never accept a proof it cannot check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32  # SHA-256
_NODE_PREFIX = b"\x01"  # RFC 9162 section 2.1.1: HASH(0x01 || left || right) for an interior node


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows the tree of ``old_size`` leaves with root ``old_root`` is a prefix of
    the tree of ``new_size`` leaves with root ``new_root``.

    RFC 9162 section 2.1.4.2, step by step; for equal sizes the proof is empty and the roots equal
    (RFC 6962 section 2.1.2, ``PROOF(n, D[n]) = {}``). A proof from the empty tree is ``False``: the
    RFCs define none, and a head over no records proves nothing. Never raises.
    """
    path = _hashes(proof)
    if path is None or not (_is_hash(old_root) and _is_hash(new_root)):
        return False
    # (old_size 0 is also where step 4 would never end: fn = -1 shifts to -1 for ever)
    if not (_is_size(old_size) and _is_size(new_size)) or old_size == 0 or old_size > new_size:
        return False
    if old_size == new_size:
        return not path and old_root == new_root
    # 1. An empty consistency_path fails.
    if not path:
        return False
    # 2. If first is an exact power of 2, prepend first_hash (the old tree is a complete subtree).
    if old_size & (old_size - 1) == 0:
        path = [old_root, *path]
    # 3. fn = first - 1, sn = second - 1; 4. while LSB(fn) is set, right-shift both.
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. fr = sr = the first value of the path.
    fr = sr = path[0]
    # 6. For each subsequent value c:
    for c in path[1:]:
        if sn == 0:  # the path is longer than the new tree allows
            return False
        if fn & 1 or fn == sn:
            fr = _node(c, fr)
            sr = _node(c, sr)
            while not fn & 1 and fn != 0:  # right-shift both until LSB(fn) is set or fn is 0
                fn >>= 1
                sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    # 7. fr must be first_hash, sr second_hash, and sn 0 (the whole path was used).
    return fr == old_root and sr == new_root and sn == 0


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _hashes(proof: object) -> list[bytes] | None:
    """The proof as a list of 32-byte hashes; None for anything else (a string is not a sequence of
    hashes, even though it is a ``Sequence``)."""
    if not isinstance(proof, list | tuple):
        return None
    if not all(_is_hash(node) for node in proof):
        return None
    return list(proof)
