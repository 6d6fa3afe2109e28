"""The RFC 6962 section 2.1 Merkle tree behind tamper-evident audit checkpoints: the RFC's own
example (section 2.1.3), published known answers, an independent transcription of the RFC's
definitions, and properties showing that no altered leaf, proof, root or history verifies."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def flip(value: bytes, bit: int) -> bytes:
    """``value`` with one bit inverted."""
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# ---------------------------------------------------------------- RFC 6962 section 2.1, transcribed
# Written from the RFC text with slices and recursion, independently of the module under test.
# ``d`` holds leaf hashes, so MTH({d(0)}) is d[0].


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return sha(b"")
    if len(d) == 1:
        return d[0]
    k = 1
    while k * 2 < len(d):
        k *= 2
    return sha(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


# ---------------------------------------------------------------- RFC 6962 section 2.1.3 example
#
#                hash
#               /    \
#              k      l
#             / \    / \
#            g   h  i   j
#           / \ / \ / \ |
#           a b c d e f d6
#           | | | | | |
#          d0 d1 d2 d3 d4 d5
#
# and the same tree built incrementally: hash0 = (g, c) over 3 leaves, hash1 = k over 4, hash2 =
# (k, i) over 6.

RFC_DATA = [f"d{i}".encode() for i in range(7)]


def rfc_nodes() -> dict[str, bytes]:
    """The named nodes of the example, built from the leaves with SHA-256 directly."""
    a, b, c, d, e, f, j = (sha(b"\x00" + data) for data in RFC_DATA)
    nodes = {"a": a, "b": b, "c": c, "d": d, "e": e, "f": f, "j": j}
    nodes["g"] = sha(b"\x01" + a + b)
    nodes["h"] = sha(b"\x01" + c + d)
    nodes["i"] = sha(b"\x01" + e + f)
    nodes["k"] = sha(b"\x01" + nodes["g"] + nodes["h"])
    nodes["l"] = sha(b"\x01" + nodes["i"] + j)
    nodes["hash"] = sha(b"\x01" + nodes["k"] + nodes["l"])
    nodes["hash0"] = sha(b"\x01" + nodes["g"] + c)
    nodes["hash1"] = nodes["k"]
    nodes["hash2"] = sha(b"\x01" + nodes["k"] + nodes["i"])
    return nodes


def rfc_leaf_hashes() -> list[bytes]:
    return [leaf_hash(data) for data in RFC_DATA]


def test_hashes_use_the_rfc_domain_separation_prefixes() -> None:
    assert leaf_hash(b"d0") == sha(b"\x00d0")
    left, right = sha(b"left"), sha(b"right")
    assert node_hash(left, right) == sha(b"\x01" + left + right)
    assert leaf_hash(left + right) != node_hash(left, right)


def test_empty_tree_root_is_sha256_of_the_empty_string() -> None:
    assert root([]).hex() == EMPTY_SHA256


def test_rfc_example_tree_root() -> None:
    assert root(rfc_leaf_hashes()) == rfc_nodes()["hash"]


@pytest.mark.parametrize(
    ("index", "names"),
    [(0, ["b", "h", "l"]), (3, ["c", "g", "l"]), (4, ["f", "j", "k"]), (6, ["i", "k"])],
)
def test_rfc_example_audit_paths(index: int, names: list[str]) -> None:
    nodes = rfc_nodes()
    leaves = rfc_leaf_hashes()
    proof = inclusion_proof(leaves, index)
    assert proof == [nodes[name] for name in names]
    assert verify_inclusion(leaves[index], index, 7, proof, nodes["hash"])


@pytest.mark.parametrize(
    ("old_size", "old_name", "names"),
    [(3, "hash0", ["c", "d", "g", "l"]), (4, "hash1", ["l"]), (6, "hash2", ["i", "j", "k"])],
)
def test_rfc_example_consistency_proofs(old_size: int, old_name: str, names: list[str]) -> None:
    nodes = rfc_nodes()
    leaves = rfc_leaf_hashes()
    assert root(leaves[:old_size]) == nodes[old_name]
    proof = consistency_proof(leaves, old_size)
    assert proof == [nodes[name] for name in names]
    assert verify_consistency(old_size, 7, nodes[old_name], nodes["hash"], proof)


def test_a_tree_is_consistent_with_itself_by_the_empty_proof() -> None:
    leaves = rfc_leaf_hashes()
    assert consistency_proof(leaves, 7) == []
    assert verify_consistency(7, 7, root(leaves), root(leaves), [])


# ---------------------------------------------------------------- published known answers
# The Certificate Transparency reference implementation's SHA-256 test vectors (its Merkle tree
# tests, republished by many RFC 6962 implementations): roots of the first n leaves, and proofs.

CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    EMPTY_SHA256,
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# Subtree hashes of the 8-leaf tree, named by the leaves they cover (H_23 = MTH(D[2:4])).
H_1 = "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
H_23 = "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"
H_4567 = "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"
H_4 = "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"
H_67 = "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"
H_45 = "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"


def ct_leaf_hashes() -> list[bytes]:
    return [leaf_hash(data) for data in CT_LEAVES]


def test_named_vector_hashes_cover_the_leaves_their_names_say() -> None:
    d = ct_leaf_hashes()
    named = {H_1: d[1:2], H_23: d[2:4], H_4: d[4:5], H_45: d[4:6], H_67: d[6:8], H_4567: d[4:8]}
    assert {name: ref_mth(leaves).hex() for name, leaves in named.items()} == {name: name for name in named}


@pytest.mark.parametrize("size", range(9))
def test_known_answer_roots(size: int) -> None:
    assert root(ct_leaf_hashes()[:size]).hex() == CT_ROOTS[size]


@pytest.mark.parametrize(("index", "expected"), [(0, [H_1, H_23, H_4567]), (5, [H_4, H_67, CT_ROOTS[4]])])
def test_known_answer_inclusion_proofs(index: int, expected: list[str]) -> None:
    leaves = ct_leaf_hashes()
    proof = inclusion_proof(leaves, index)
    assert [p.hex() for p in proof] == expected
    assert verify_inclusion(leaves[index], index, 8, proof, bytes.fromhex(CT_ROOTS[8]))


@pytest.mark.parametrize(
    ("old_size", "new_size", "expected"),
    [(1, 1, []), (1, 8, [H_1, H_23, H_4567]), (6, 8, [H_45, H_67, CT_ROOTS[4]]), (2, 5, [H_23, H_4])],
)
def test_known_answer_consistency_proofs(old_size: int, new_size: int, expected: list[str]) -> None:
    leaves = ct_leaf_hashes()[:new_size]
    proof = consistency_proof(leaves, old_size)
    assert [p.hex() for p in proof] == expected
    old_root, new_root = bytes.fromhex(CT_ROOTS[old_size]), bytes.fromhex(CT_ROOTS[new_size])
    assert verify_consistency(old_size, new_size, old_root, new_root, proof)


def test_every_tree_up_to_40_leaves_matches_the_transcribed_definitions() -> None:
    all_leaves = [leaf_hash(i.to_bytes(2, "big")) for i in range(40)]
    for n in range(1, 41):
        leaves = all_leaves[:n]
        assert root(leaves) == ref_mth(leaves)
        for m in range(n):
            assert inclusion_proof(leaves, m) == ref_path(m, leaves)
        for m in range(1, n + 1):
            assert consistency_proof(leaves, m) == ref_subproof(m, leaves, True)


def test_ten_thousand_leaves_are_quick() -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(10_000)]
    started = time.perf_counter()
    head = root(leaves)
    path = inclusion_proof(leaves, 6_789)
    proof = consistency_proof(leaves, 4_321)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert verify_inclusion(leaves[6_789], 6_789, 10_000, path, head)
    assert verify_consistency(4_321, 10_000, root(leaves[:4_321]), head, proof)


# ---------------------------------------------------------------- generators refuse, verifiers say no


@pytest.mark.parametrize("index", [-1, 7, 8, True])
def test_inclusion_proof_refuses_an_index_outside_the_tree(index: Any) -> None:
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof(rfc_leaf_hashes(), index)


def test_inclusion_proof_refuses_an_empty_tree() -> None:
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof([], 0)


@pytest.mark.parametrize("old_size", [-1, 0, 8])
def test_consistency_proof_refuses_an_old_size_outside_the_tree(old_size: int) -> None:
    with pytest.raises(ValueError, match="old size"):
        consistency_proof(rfc_leaf_hashes(), old_size)


@pytest.mark.parametrize("bad", [b"d0", b"", sha(b"x")[:31], sha(b"x") + b"\x00", "not bytes"])
def test_generators_refuse_anything_but_32_byte_leaf_hashes(bad: Any) -> None:
    leaves: list[Any] = [*rfc_leaf_hashes(), bad]
    with pytest.raises(ValueError, match="leaf hash 7"):
        root(leaves)
    with pytest.raises(ValueError, match="leaf hash 7"):
        inclusion_proof(leaves, 0)
    with pytest.raises(ValueError, match="leaf hash 7"):
        consistency_proof(leaves, 1)


def test_node_hash_refuses_children_that_are_not_hashes() -> None:
    with pytest.raises(ValueError, match="32-byte"):
        node_hash(b"short", sha(b"x"))


def _valid_inclusion() -> dict[str, Any]:
    leaves = rfc_leaf_hashes()
    return {
        "leaf": leaves[4],
        "index": 4,
        "tree_size": 7,
        "proof": inclusion_proof(leaves, 4),
        "root_hash": root(leaves),
    }


@pytest.mark.parametrize(
    "change",
    [
        {"index": -1},
        {"index": 7},
        {"index": 4.0},
        {"tree_size": 0},
        {"tree_size": -7},
        {"tree_size": "7"},
        {"leaf": b"d4"},
        {"leaf": None},
        {"root_hash": sha(b"x")[:31]},
        {"root_hash": bytearray(32)},
        {"proof": None},
        {"proof": 42},
        {"proof": b"\x00" * 96},
        {"proof": "abc"},
        {"proof": [b"\x00" * 31, b"\x00" * 32, b"\x00" * 32]},
        {"proof": [None, None, None]},
    ],
    ids=repr,
)
def test_verify_inclusion_returns_false_on_malformed_input(change: dict[str, Any]) -> None:
    arguments = _valid_inclusion()
    assert verify_inclusion(**arguments)
    arguments.update(change)
    assert verify_inclusion(**arguments) is False


def test_verify_inclusion_rejects_a_proof_one_element_too_long_or_short() -> None:
    arguments = _valid_inclusion()
    proof = arguments["proof"]
    assert verify_inclusion(**{**arguments, "proof": [*proof, sha(b"extra")]}) is False
    assert verify_inclusion(**{**arguments, "proof": proof[:-1]}) is False
    assert verify_inclusion(**{**arguments, "proof": []}) is False


def test_a_single_leaf_tree_has_an_empty_audit_path() -> None:
    only = leaf_hash(b"only")
    assert inclusion_proof([only], 0) == []
    assert root([only]) == only
    assert verify_inclusion(only, 0, 1, [], only)
    assert verify_inclusion(only, 0, 1, [only], only) is False


def _valid_consistency() -> dict[str, Any]:
    leaves = rfc_leaf_hashes()
    return {
        "old_size": 3,
        "new_size": 7,
        "old_root": root(leaves[:3]),
        "new_root": root(leaves),
        "proof": consistency_proof(leaves, 3),
    }


@pytest.mark.parametrize(
    "change",
    [
        {"old_size": 0},
        {"old_size": -3},
        {"old_size": 8},
        {"old_size": 3.0},
        {"new_size": 2},
        {"new_size": None},
        {"old_root": b"short"},
        {"new_root": "f" * 32},
        {"proof": None},
        {"proof": []},
        {"proof": b"\x00" * 128},
        {"proof": [b"\x00" * 33] * 4},
        {"proof": [1, 2, 3, 4]},
    ],
    ids=repr,
)
def test_verify_consistency_returns_false_on_malformed_input(change: dict[str, Any]) -> None:
    arguments = _valid_consistency()
    assert verify_consistency(**arguments)
    arguments.update(change)
    assert verify_consistency(**arguments) is False


def test_verify_consistency_rejects_a_proof_one_element_too_long_or_short() -> None:
    arguments = _valid_consistency()
    proof = arguments["proof"]
    assert verify_consistency(**{**arguments, "proof": [*proof, sha(b"extra")]}) is False
    assert verify_consistency(**{**arguments, "proof": proof[:-1]}) is False


def test_equal_sizes_need_equal_roots_and_an_empty_proof() -> None:
    head = root(rfc_leaf_hashes())
    assert verify_consistency(7, 7, head, head, [head]) is False
    assert verify_consistency(7, 7, head, flip(head, 0), []) is False


def test_nothing_is_proved_from_the_empty_tree() -> None:
    empty, head = root([]), root(rfc_leaf_hashes())
    assert verify_consistency(0, 7, empty, head, []) is False
    assert verify_consistency(0, 0, empty, empty, []) is False


# ---------------------------------------------------------------- properties over random trees

trees = st.builds(
    lambda size, salt: [leaf_hash(salt + i.to_bytes(2, "big")) for i in range(size)],
    st.integers(min_value=1, max_value=200),
    st.binary(max_size=8),
)
bits = st.integers(min_value=0, max_value=255)


@settings(max_examples=30, deadline=None)
@given(leaves=trees, data=st.data())
def test_every_inclusion_proof_verifies_and_no_tampering_does(
    leaves: list[bytes], data: st.DataObject
) -> None:
    n = len(leaves)
    head = root(leaves)
    proofs = [inclusion_proof(leaves, i) for i in range(n)]
    assert all(verify_inclusion(leaves[i], i, n, proofs[i], head) for i in range(n))

    i = data.draw(st.integers(min_value=0, max_value=n - 1), label="index")
    proof = proofs[i]
    assert not any(verify_inclusion(leaves[i], j, n, proof, head) for j in range(n) if j != i)
    assert not verify_inclusion(flip(leaves[i], data.draw(bits, label="leaf bit")), i, n, proof, head)
    assert not verify_inclusion(leaves[i], i, n, proof, flip(head, data.draw(bits, label="root bit")))
    if proof:
        at = data.draw(st.integers(min_value=0, max_value=len(proof) - 1), label="proof element")
        tampered = [*proof[:at], flip(proof[at], data.draw(bits, label="proof bit")), *proof[at + 1 :]]
        assert not verify_inclusion(leaves[i], i, n, tampered, head)


@settings(max_examples=30, deadline=None)
@given(leaves=trees, bit=bits, element=st.integers(min_value=0, max_value=15))
def test_every_consistency_proof_verifies_and_no_tampering_does(
    leaves: list[bytes], bit: int, element: int
) -> None:
    n = len(leaves)
    head = root(leaves)
    for m in range(1, n + 1):
        old_root, proof = root(leaves[:m]), consistency_proof(leaves, m)
        assert verify_consistency(m, n, old_root, head, proof)
        assert not verify_consistency(m, n, flip(old_root, bit), head, proof)
        assert not verify_consistency(m, n, old_root, flip(head, bit), proof)
        if proof:
            at = element % len(proof)
            tampered = [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]]
            assert not verify_consistency(m, n, old_root, head, tampered)


@settings(max_examples=30, deadline=None)
@given(leaves=trees, data=st.data())
def test_a_rewritten_record_breaks_consistency_with_every_earlier_checkpoint(
    leaves: list[bytes], data: st.DataObject
) -> None:
    n = len(leaves)
    changed = data.draw(st.integers(min_value=0, max_value=n - 1), label="changed leaf")
    rewritten = [
        *leaves[:changed],
        flip(leaves[changed], data.draw(bits, label="bit")),
        *leaves[changed + 1 :],
    ]
    rewritten_head = root(rewritten)
    for m in range(changed + 1, n + 1):
        old_root = root(leaves[:m])
        # Neither the rewritten log's own proof nor the honest one links the old checkpoint to it.
        assert not verify_consistency(m, n, old_root, rewritten_head, consistency_proof(rewritten, m))
        assert not verify_consistency(m, n, old_root, rewritten_head, consistency_proof(leaves, m))


@settings(max_examples=30, deadline=None)
@given(leaves=trees, data=st.data())
def test_a_record_slipped_into_the_past_breaks_consistency(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    at = data.draw(st.integers(min_value=0, max_value=n - 1), label="insert before")
    grown = [*leaves[:at], leaf_hash(b"slipped in"), *leaves[at:]]
    grown_head = root(grown)
    for m in range(at + 1, n + 1):
        assert not verify_consistency(m, n + 1, root(leaves[:m]), grown_head, consistency_proof(grown, m))
    # Appending the same record at the end is, by contrast, an honest extension.
    appended = [*leaves, leaf_hash(b"slipped in")]
    assert verify_consistency(n, n + 1, root(leaves), root(appended), consistency_proof(appended, n))
