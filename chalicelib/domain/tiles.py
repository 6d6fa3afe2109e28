"""The audit log's Merkle tree stored as immutable tiles (the C2SP tlog-tiles layout).

Why it exists: a proof against a tree of ten million leaves must not read ten million leaves. The
tree is cut into tiles of height 8: a tile at level ``L`` holds up to 256 consecutive hashes, each
the root of a perfect subtree of ``256**L`` leaves (level 0 holds the leaf hashes themselves). Any
node of the tree is then the root of at most 128 consecutive hashes of one tile, so an inclusion
or consistency proof (RFC 9162 sections 2.1.3, 2.1.4) reads about one tile per 8 levels of the
tree, plus the partial tiles at its right edge: a handful of reads, whatever the log's size.

The layout is exactly C2SP tlog-tiles (``tile/<L>/<N>[.p/<W>]``, 8,192-byte full tiles, partial
tiles of width ``floor(s / 256**L) mod 256`` for every tree size ``s`` a checkpoint was signed for,
never hashed into the level above). What differs is only where tiles live (DynamoDB items, not an
HTTP prefix) and the signed note (a JWS; see ``checkpoints``).

What it must never do: write a tile whose hashes do not follow from the leaves (``TileWriter`` only
derives tiles from hashes appended in order), or compute a proof from a tile it did not read for
the tree size asked about. Domain only: no I/O; reads go through a ``TileSource``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from chalicelib.domain import merkle

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # 256 hashes, 8,192 bytes when full
HASH_SIZE = merkle.HASH_SIZE


@dataclass(frozen=True, order=True)
class TileId:
    level: int
    index: int
    width: int  # 1..256; 256 is a full tile

    @property
    def full(self) -> bool:
        return self.width == TILE_WIDTH

    def path(self) -> str:
        """The tile's C2SP path: ``tile/<L>/<N>`` or ``tile/<L>/<N>.p/<W>``, ``N`` as ``x001/x234/067``."""
        digits = f"{self.index:d}"
        digits = digits.zfill(-(-len(digits) // 3) * 3)
        groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
        encoded = "/".join([*(f"x{group}" for group in groups[:-1]), groups[-1]])
        suffix = "" if self.full else f".p/{self.width}"
        return f"tile/{self.level}/{encoded}{suffix}"


class TileSource(Protocol):
    def tiles(self, ids: Iterable[TileId], *, consistent: bool = False) -> Mapping[TileId, bytes]:
        """The stored tiles among ``ids`` (a missing one is simply absent from the answer); tiles
        never change once written, so only a tile written moments ago needs a consistent read."""
        ...


class TileMissing(LookupError):
    """A tile a proof needs is not stored (the checkpoint that wrote it did not finish)."""


def entries_at(level: int, tree_size: int) -> int:
    """How many hashes tile level ``level`` holds for a tree of ``tree_size`` leaves."""
    return tree_size >> (TILE_HEIGHT * level)


def tile_for(level: int, index: int, tree_size: int) -> TileId:
    """The tile ``index`` of ``level`` as it stands in a tree of ``tree_size`` leaves."""
    entries = entries_at(level, tree_size)
    width = min(TILE_WIDTH, entries - index * TILE_WIDTH)
    if width <= 0:
        raise ValueError(f"a tree of {tree_size} leaves has no tile {index} at level {level}")
    return TileId(level, index, width)


def edge_tiles(tree_size: int) -> list[TileId]:
    """The partial tiles at the right edge of a tree of ``tree_size`` leaves (one per level with a
    remainder): what the next checkpoint must read to carry on writing."""
    found: list[TileId] = []
    level = 0
    while entries_at(level, tree_size):
        width = entries_at(level, tree_size) % TILE_WIDTH
        if width:
            found.append(TileId(level, entries_at(level, tree_size) // TILE_WIDTH, width))
        level += 1
    return found


def split_hashes(tile: bytes) -> list[bytes]:
    if len(tile) % HASH_SIZE:
        raise ValueError("a tile is a whole number of 32-byte hashes")
    return [tile[i : i + HASH_SIZE] for i in range(0, len(tile), HASH_SIZE)]


def _perfect_root(hashes: Sequence[bytes]) -> bytes:
    """``MTH`` of a power-of-two run of hashes (a perfect subtree)."""
    level = list(hashes)
    while len(level) > 1:
        level = [merkle.node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


class TileWriter:
    """Appends leaf hashes to a tree of ``size`` leaves whose right-edge partial tiles are known,
    and collects every tile that changes: each full tile once, and each level's partial tile at the
    final size (the ones the new checkpoint's size requires)."""

    def __init__(self, size: int, edge: Mapping[TileId, bytes]) -> None:
        self._size = size
        self._rows: list[list[bytes]] = []
        expected = edge_tiles(size)
        for tile in expected:
            if tile not in edge:
                raise TileMissing(f"edge tile {tile.path()} of tree size {size} is not stored")
            hashes = split_hashes(edge[tile])
            if len(hashes) != tile.width:
                raise ValueError(f"edge tile {tile.path()} holds {len(hashes)} hashes")
        widths = {tile.level: tile for tile in expected}
        level = 0
        while entries_at(level, size):
            partial = widths.get(level)
            self._rows.append(split_hashes(edge[partial]) if partial else [])
            level += 1
        self._written: dict[TileId, bytes] = {}
        self._unchanged = set(expected)

    @property
    def size(self) -> int:
        return self._size

    def compact_range(self) -> merkle.CompactRange:
        """The tree's frontier, derived from the edge rows alone: each level's partial row is
        ``width`` hashes of ``256**level`` leaves, split into perfect subtrees by the bits of
        ``width`` (higher levels hold the older leaves, so they come first)."""
        nodes: list[bytes] = []
        for level in reversed(range(len(self._rows))):
            row = self._rows[level]
            start = 0
            for bit in reversed(range(TILE_HEIGHT)):
                if len(row) & (1 << bit):
                    nodes.append(_perfect_root(row[start : start + (1 << bit)]))
                    start += 1 << bit
        return merkle.CompactRange(self._size, nodes)

    def append(self, leaf: bytes) -> None:
        if len(leaf) != HASH_SIZE:
            raise ValueError("a leaf hash is 32 bytes")
        carry = leaf
        level = 0
        while True:
            if level == len(self._rows):
                self._rows.append([])
            row = self._rows[level]
            row.append(carry)
            if len(row) < TILE_WIDTH:
                break
            index = (entries_at(level, self._size + 1) - 1) // TILE_WIDTH
            self._written[TileId(level, index, TILE_WIDTH)] = b"".join(row)
            carry = _perfect_root(row)
            self._rows[level] = []
            level += 1
        self._size += 1

    def take_tiles(self) -> dict[TileId, bytes]:
        """The full tiles completed since the last take, and every partial tile of the current
        size (what a verifier compares with the stored ones, checkpoint by checkpoint)."""
        taken = self._written
        self._written = {}
        for tile in edge_tiles(self._size):
            taken[tile] = b"".join(self._rows[tile.level])
        return taken

    def tiles(self) -> dict[TileId, bytes]:
        """The full tiles completed since the start, and the partial tiles of the current size
        (those that were already stored at the start, unchanged, are left out)."""
        written = dict(self._written)
        for tile in edge_tiles(self._size):
            if tile not in self._unchanged:
                written[tile] = b"".join(self._rows[tile.level])
        return written


class TileHashes:
    """Node hashes of the tree of ``tree_size`` leaves, read from its tiles.

    ``prefetch`` the tiles a set of proofs needs in one read, then compute: a signed receipt asks
    for every record of a flow and reads each tile once."""

    def __init__(self, source: TileSource, tree_size: int) -> None:
        if tree_size <= 0:
            raise ValueError("a tree with no leaves has no tiles")
        self._source = source
        self._size = tree_size
        self._tiles: dict[TileId, list[bytes]] = {}
        self.reads = 0  # how many tile reads were made (the benchmark's measure)

    @property
    def tree_size(self) -> int:
        return self._size

    # -- which tiles -------------------------------------------------------------------------------

    def _tile_of(self, height: int, index: int) -> tuple[TileId, int, int]:
        """The tile holding node (``height``, ``index``), and the run of its hashes under that node."""
        level = height // TILE_HEIGHT
        span = 1 << (height - level * TILE_HEIGHT)
        first = index * span
        tile = tile_for(level, first // TILE_WIDTH, self._size)
        start = first % TILE_WIDTH
        if start + span > tile.width:
            raise ValueError(f"node ({height}, {index}) is outside a tree of {self._size} leaves")
        return tile, start, span

    def _nodes(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """``MTH(D[lo:hi])`` as perfect, aligned subtrees (height, index), left to right."""
        nodes: list[tuple[int, int]] = []
        while lo < hi:
            height = min((lo & -lo).bit_length() - 1 if lo else 63, (hi - lo).bit_length() - 1)
            nodes.append((height, lo >> height))
            lo += 1 << height
        return nodes

    def _tiles_for(self, ranges: Iterable[tuple[int, int]]) -> set[TileId]:
        return {self._tile_of(h, i)[0] for lo, hi in ranges for h, i in self._nodes(lo, hi)}

    def prefetch_ranges(self, ranges: Iterable[tuple[int, int]]) -> None:
        wanted = self._tiles_for(ranges) - set(self._tiles)
        if not wanted:
            return
        found = self._source.tiles(sorted(wanted))
        self.reads += len(wanted)
        for tile in wanted:
            if tile not in found:
                raise TileMissing(f"tile {tile.path()} of tree size {self._size} is not stored")
            hashes = split_hashes(found[tile])
            if len(hashes) != tile.width:
                raise TileMissing(f"tile {tile.path()} holds {len(hashes)} hashes, not {tile.width}")
            self._tiles[tile] = hashes

    def prefetch_inclusion(self, indices: Iterable[int]) -> None:
        self.prefetch_ranges(r for index in indices for r in inclusion_ranges(index, self._size))

    def prefetch_consistency(self, old_size: int) -> None:
        self.prefetch_ranges(consistency_ranges(old_size, self._size))

    # -- hashes ------------------------------------------------------------------------------------

    def node(self, height: int, index: int) -> bytes:
        tile, start, span = self._tile_of(height, index)
        if tile not in self._tiles:
            self.prefetch_ranges([(index << height, (index + 1) << height)])
        hashes = self._tiles[tile]
        return _perfect_root(hashes[start : start + span])

    def mth(self, lo: int, hi: int) -> bytes:
        """``MTH(D[lo:hi])`` for a range the RFC 6962 proofs use (``lo`` aligned to its left split)."""
        nodes = [self.node(h, i) for h, i in self._nodes(lo, hi)]
        result = nodes[-1]
        for left in reversed(nodes[:-1]):
            result = merkle.node_hash(left, result)
        return result

    def leaf(self, index: int) -> bytes:
        return self.node(0, index)

    def root(self) -> bytes:
        return self.mth(0, self._size)

    def inclusion_proof(self, index: int) -> list[bytes]:
        """``PATH(index, D[tree_size])`` (RFC 6962 section 2.1.1), leaf's sibling first."""
        return [self.mth(lo, hi) for lo, hi in inclusion_ranges(index, self._size)]

    def consistency_proof(self, old_size: int) -> list[bytes]:
        """``PROOF(old_size, D[tree_size])`` (RFC 6962 section 2.1.2)."""
        return [self.mth(lo, hi) for lo, hi in consistency_ranges(old_size, self._size)]


def inclusion_ranges(index: int, tree_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose roots make up ``PATH(index, D[tree_size])``, in proof order."""
    if not 0 <= index < tree_size:
        raise ValueError(f"leaf index {index} is outside a tree of {tree_size} leaves")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, tree_size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, tree_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose roots make up ``PROOF(old_size, D[tree_size])``, in proof order."""
    if not 0 < old_size <= tree_size:
        raise ValueError(f"no consistency proof from {old_size} to {tree_size} leaves")
    ranges: list[tuple[int, int]] = []
    lo, hi, m, complete = 0, tree_size, old_size, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            m -= k
            complete = False
    if not complete:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def _split(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)
