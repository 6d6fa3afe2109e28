"""The audit-at-scale benchmark (bench/audit_scale.py) measures what it claims to: its synthetic tree
is the RFC 6962 tree of its leaves, its checkpoint run builds on it with the production code and
checks the new head, and its synthetic log is one ``relayctl audit verify`` accepts, and rejects
once a record is altered. Small sizes here, so that a change to the audit code breaks a test, not
the next `make bench`."""

from __future__ import annotations

import pytest

from bench import audit_scale
from chalicelib.domain import merkle
from chalicelib.domain.tiles import TileWriter, edge_tiles
from relayctl.audit import VerificationFailed, Verifier, keys_from_jwks


def test_the_synthetic_tree_is_the_tree_of_its_leaves_tile_for_tile() -> None:
    # GIVEN the leaves the synthetic tree stands for, hashed the slow way
    tree = audit_scale.SyntheticTree()
    leaves = [merkle.leaf_hash(b"synthetic leaf %d" % (i % 256)) for i in range(66_000)]
    # THEN its roots and frontiers are RFC 6962's, at sizes across tile and level boundaries
    for size in (1, 255, 256, 257, 1_000, 65_535, 65_536, 65_537, 66_000):
        assert tree.root(size) == merkle.root(leaves[:size])
    # AND every tile it makes is the one TileWriter writes from those leaves
    writer = TileWriter(0, {})
    for leaf in leaves:
        writer.append(leaf)
    for tile, hashes in writer.tiles().items():
        assert tree.tile(tile) == hashes
    # AND what it seeds for a run includes the edge tiles the checkpoint reads
    assert set(edge_tiles(10**7)) <= set(audit_scale.tiles_to_seed(10**7, 2_000, [10**7 // 3]))


def test_a_checkpoint_on_a_synthesised_log_is_measured_and_its_head_and_proofs_are_checked() -> None:
    # WHEN the benchmark runs one checkpoint of 300 records on a synthesised log of 70,000 leaves
    result = audit_scale.checkpoint_run(70_000, new=300, repeats=1)
    # THEN (its own assertions passed: the head's root, the proofs) it read a few tiles and billed its calls
    last = result["last"]
    assert last["tile_reads"] == len(edge_tiles(70_000))
    assert last["rru"] > 0
    assert last["wru"] > 0
    assert last["calls"]["dynamodb.TransactWriteItems"] == 1
    assert last["proof"]["tile_reads"] > 0
    assert result["cpu_s"] > 0
    assert result["record_bytes"]["index_max"].keys() == {"by_day", "by_partner"}


def test_the_synthetic_log_verifies_and_an_altered_record_fails_verification() -> None:
    # GIVEN a synthetic log of 5,000 records under checkpoints of 2,000
    signer = audit_scale.LocalSigner()
    keys = keys_from_jwks({"keys": [signer.public_jwk()]}, "bench")
    log = audit_scale.SyntheticLog(5_000, 2_000, signer)
    try:
        # THEN relayctl's verifier accepts it whole
        result = Verifier(log, keys, "bench", now=log.now).run()
        assert (result.checkpoints, result.covered, result.pending) == (3, 5_000, 0)
        # AND once a record's stored document differs, it names that record
        generated = log.document
        log.document = lambda i: generated(i).replace('"ok"', '"ng"') if i == 1234 else generated(i)  # type: ignore[method-assign]
        with pytest.raises(VerificationFailed, match="altered"):
            Verifier(log, keys, "bench", now=log.now).run()
    finally:
        log.close()


def test_the_verify_child_reports_its_peak_memory() -> None:
    result = audit_scale.verify_run(3_000)
    assert result["checkpoints"] == 2
    assert result["peak_kib"] >= result["rss_before_kib"] > 0
