"""The audit tree as C2SP tlog-tiles: tiles written checkpoint by checkpoint give exactly the roots,
inclusion proofs and consistency proofs of the RFC 6962 definitions (``chalicelib.domain.merkle``),
reading a handful of tiles; the frontier derived from the edge tiles is the tree's compact range."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping

import pytest

from chalicelib.domain import merkle
from chalicelib.domain.tiles import (
    TILE_WIDTH,
    TileHashes,
    TileId,
    TileMissing,
    TileWriter,
    edge_tiles,
    tile_for,
)


def leaves(n: int, salt: str = "") -> list[bytes]:
    return [merkle.leaf_hash(f"{salt}{i}".encode()) for i in range(n)]


class Tiles:
    """Tiles in a dict, counting reads (the adapter's ``tiles``)."""

    def __init__(self) -> None:
        self.stored: dict[TileId, bytes] = {}
        self.read: list[TileId] = []

    def tiles(self, ids: Iterable[TileId], *, consistent: bool = False) -> Mapping[TileId, bytes]:
        wanted = list(ids)
        self.read.extend(wanted)
        return {tile: self.stored[tile] for tile in wanted if tile in self.stored}


def grow(store: Tiles, hashes: list[bytes], checkpoints: list[int]) -> None:
    """Append ``hashes`` checkpoint by checkpoint (sizes in ``checkpoints``), as the service does."""
    size = 0
    for target in checkpoints:
        writer = TileWriter(size, store.tiles(edge_tiles(size)))
        for leaf in hashes[size:target]:
            writer.append(leaf)
        store.stored.update(writer.tiles())
        size = target


def test_tile_paths_follow_c2sp() -> None:
    assert TileId(0, 1234067, 256).path() == "tile/0/x001/x234/067"
    assert TileId(1, 5, 17).path() == "tile/1/005.p/17"
    assert TileId(2, 0, 1).path() == "tile/2/000.p/1"


def test_the_spec_example_tree_of_70000_has_the_tiles_it_lists() -> None:
    # tlog-tiles: 273 full level 0 tiles, a partial level 0 of 112, a full level 1, a partial level
    # 1 of 17 and a partial level 2 of 1.
    store = Tiles()
    grow(store, leaves(70_000), [70_000])
    level0 = [t for t in store.stored if t.level == 0]
    assert sum(t.full for t in level0) == 273
    assert TileId(0, 273, 112) in store.stored
    assert TileId(1, 0, 256) in store.stored
    assert TileId(1, 1, 17) in store.stored
    assert TileId(2, 0, 1) in store.stored
    assert edge_tiles(70_000) == [TileId(0, 273, 112), TileId(1, 1, 17), TileId(2, 0, 1)]
    assert edge_tiles(256) == [TileId(1, 0, 1)]


@pytest.mark.parametrize("size", [*range(1, 40), 255, 256, 257, 511, 512, 513, 1000, 65_536, 65_537, 70_000])
def test_root_and_frontier_match_the_rfc_for_every_size(size: int) -> None:
    hashes = leaves(size)
    store = Tiles()
    grow(store, hashes, [size])
    assert TileHashes(store, size).root() == merkle.root(hashes)
    frontier = TileWriter(size, store.tiles(edge_tiles(size))).compact_range()
    assert frontier.root() == merkle.root(hashes)
    reference = merkle.CompactRange()
    for leaf in hashes:
        reference.append(leaf)
    assert frontier.hashes == reference.hashes


def test_tiles_written_in_many_checkpoints_are_those_written_at_once() -> None:
    hashes = leaves(3_000)
    rng = random.Random(7)  # noqa: S311 - reproducible sizes, not a secret
    sizes = sorted({rng.randrange(1, 3_000) for _ in range(25)} | {3_000})
    in_steps, at_once = Tiles(), Tiles()
    grow(in_steps, hashes, sizes)
    grow(at_once, hashes, [3_000])
    for tile, data in at_once.stored.items():
        assert in_steps.stored[tile] == data
    # and every checkpoint size has the partial tiles a proof against it needs
    for size in sizes:
        assert all(tile in in_steps.stored for tile in edge_tiles(size))
        assert TileHashes(in_steps, size).root() == merkle.root(hashes[:size])


def test_every_inclusion_and_consistency_proof_matches_the_rfc() -> None:
    hashes = leaves(600)
    sizes = [1, 5, 8, 200, 256, 257, 300, 511, 512, 600]
    store = Tiles()
    grow(store, hashes, sizes)
    for size in sizes:
        tree = TileHashes(store, size)
        for index in range(0, size, 7):
            assert tree.inclusion_proof(index) == merkle.inclusion_proof(hashes[:size], index)
        for old in range(1, size + 1, 11):
            assert tree.consistency_proof(old) == merkle.consistency_proof(hashes[:size], old)


def test_a_proof_in_a_large_tree_reads_a_handful_of_tiles() -> None:
    size = 70_000
    hashes = leaves(size)
    store = Tiles()
    grow(store, hashes, [65_000, size])
    store.read.clear()
    tree = TileHashes(store, size)
    tree.prefetch_inclusion([12_345])
    proof = tree.inclusion_proof(12_345)
    assert merkle.verify_inclusion(hashes[12_345], 12_345, size, proof, merkle.root(hashes))
    assert len(store.read) <= 5
    store.read.clear()
    tree = TileHashes(store, size)
    proof = tree.consistency_proof(65_000)
    assert merkle.verify_consistency(65_000, size, merkle.root(hashes[:65_000]), merkle.root(hashes), proof)
    assert len(set(store.read)) <= 6


def test_a_receipt_reads_each_tile_once_for_all_its_records() -> None:
    hashes = leaves(1_000)
    store = Tiles()
    grow(store, hashes, [1_000])
    store.read.clear()
    tree = TileHashes(store, 1_000)
    indices = list(range(900, 914))
    tree.prefetch_inclusion(indices)
    reads = len(store.read)
    for index in indices:
        tree.inclusion_proof(index)
    assert len(store.read) == reads == len(set(store.read))


def test_a_missing_tile_is_named_not_guessed() -> None:
    hashes = leaves(300)
    store = Tiles()
    grow(store, hashes, [300])
    del store.stored[TileId(0, 1, 44)]
    with pytest.raises(TileMissing, match=r"tile/0/001\.p/44"):
        TileHashes(store, 300).inclusion_proof(299)
    with pytest.raises(TileMissing):
        TileWriter(300, store.tiles(edge_tiles(300)))


def test_a_tile_for_a_size_is_full_or_the_partial_of_that_size() -> None:
    assert tile_for(0, 0, 300) == TileId(0, 0, TILE_WIDTH)
    assert tile_for(0, 1, 300) == TileId(0, 1, 44)
    assert tile_for(1, 0, 300) == TileId(1, 0, 1)
    with pytest.raises(ValueError, match="no tile 2"):
        tile_for(0, 2, 300)


def test_the_compact_range_refuses_a_frontier_of_the_wrong_shape() -> None:
    node = hashlib.sha256(b"x").digest()
    with pytest.raises(ValueError, match="2 frontier hashes"):
        merkle.CompactRange(3, [node])  # a tree of 3 leaves has 2 frontier hashes
    assert merkle.CompactRange(3, [node, node]).size == 3
    assert merkle.CompactRange().root() == merkle.EMPTY_ROOT
