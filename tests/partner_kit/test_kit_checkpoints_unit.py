"""The kit as a witness of the audit log, without a relay: RFC 9162 consistency proofs checked against
the RFC 6962 section 2.1.2 reference written in tests/partner_kit/rfc6962.py (itself anchored to the
certificate-transparency test vectors), and ``latest_checkpoint`` / ``checkpoint`` / ``consistency``
against a fake relay that signs heads as docs/partner-audit.md says, honestly or not."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import ECKey

from partner_kit import (
    InconsistentLog,
    PartnerKeys,
    RelayClient,
    RelayError,
    VerificationError,
    generate_partner_keys,
    verify_consistency,
)
from tests.partner_kit import rfc6962
from tests.partner_kit.fake_relay import ISSUER, FakeLog, FakeRelay, answer, b64url, signed_head

# certificate-transparency's Merkle tree test data (also in Trillian and Go's sumdb tests)
CT_ENTRIES = [
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
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_PROOFS = {
    (1, 1): [],
    (1, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}

ENTRIES = [f"audit record {index}".encode() for index in range(40)]
ROOTS = [b""] + [rfc6962.mth(ENTRIES[:size]) for size in range(1, len(ENTRIES) + 1)]  # ROOTS[size]


def reference_proof(m: int, n: int) -> list[bytes]:
    return rfc6962.proof(m, ENTRIES[:n])


def flipped(node: bytes, bit: int) -> bytes:
    return node[: bit // 8] + bytes([node[bit // 8] ^ (1 << bit % 8)]) + node[bit // 8 + 1 :]


# verify_consistency: RFC 9162 section 2.1.4.2 ----------------------------------------------------


def test_the_reference_reproduces_the_certificate_transparency_test_vectors() -> None:
    assert [rfc6962.mth(CT_ENTRIES[:size]).hex() for size in range(1, 9)] == CT_ROOTS
    for (m, n), expected in CT_PROOFS.items():
        assert [node.hex() for node in rfc6962.proof(m, CT_ENTRIES[:n])] == expected


@pytest.mark.parametrize(("m", "n"), sorted(CT_PROOFS))
def test_verify_consistency_accepts_the_certificate_transparency_proofs(m: int, n: int) -> None:
    old_root, new_root = bytes.fromhex(CT_ROOTS[m - 1]), bytes.fromhex(CT_ROOTS[n - 1])
    proof = [bytes.fromhex(node) for node in CT_PROOFS[(m, n)]]
    assert verify_consistency(m, n, old_root, new_root, proof) is True


def test_verify_consistency_accepts_every_reference_proof_up_to_40_leaves() -> None:
    refused = [
        (m, n)
        for n in range(1, len(ENTRIES) + 1)
        for m in range(1, n + 1)
        if verify_consistency(m, n, ROOTS[m], ROOTS[n], reference_proof(m, n)) is not True
    ]
    assert refused == []


def test_verify_consistency_refuses_a_proof_with_any_bit_flipped() -> None:
    accepted = [
        (m, n, index, bit)
        for n in range(2, 18)
        for m in range(1, n)
        for index, node in enumerate(reference_proof(m, n))
        for bit in range(0, 256, 7)
        if verify_consistency(
            m, n, ROOTS[m], ROOTS[n], _replaced(reference_proof(m, n), index, flipped(node, bit))
        )
    ]
    assert accepted == []


def _replaced(proof: list[bytes], index: int, node: bytes) -> list[bytes]:
    return [*proof[:index], node, *proof[index + 1 :]]


def test_verify_consistency_refuses_a_proof_cut_short_lengthened_or_reordered() -> None:
    accepted = []
    for n in range(2, 24):
        for m in range(1, n):
            proof = reference_proof(m, n)
            variants = [
                proof[:-1],
                proof[1:],
                [*proof, proof[-1]],
                [ROOTS[m], *proof],
                [*proof, ROOTS[n]],
                list(reversed(proof))
                if len(proof) > 1 and proof != list(reversed(proof))
                else [b"\x00" * 32],
                [],
            ]
            accepted += [
                (m, n, i) for i, v in enumerate(variants) if verify_consistency(m, n, ROOTS[m], ROOTS[n], v)
            ]
    assert accepted == []


def test_verify_consistency_refuses_roots_of_other_trees() -> None:
    accepted = []
    for n in range(2, 24):
        for m in range(1, n):
            proof = reference_proof(m, n)
            other_old = [ROOTS[size] for size in (m - 1, m + 1) if size >= 1 and size != n] + [ROOTS[n]]
            other_new = [ROOTS[size] for size in (n - 1, n + 1) if size < len(ROOTS) and size != m] + [
                ROOTS[m]
            ]
            accepted += [
                (m, n, "old") for root in other_old if verify_consistency(m, n, root, ROOTS[n], proof)
            ]
            accepted += [
                (m, n, "new") for root in other_new if verify_consistency(m, n, ROOTS[m], root, proof)
            ]
            forked = rfc6962.mth([*ENTRIES[: n - 1], b"rewritten"])
            accepted += [(m, n, "fork")] if verify_consistency(m, n, ROOTS[m], forked, proof) else []
    assert accepted == []


def test_verify_consistency_holds_a_proof_to_the_sizes_it_was_made_for() -> None:
    # GIVEN a proof for (m, n), and the true roots of neighbouring sizes (m', n')
    # THEN it verifies for (m', n') only where the reference proof for (m', n') is that same proof
    mismatches = []
    for n in range(2, 30):
        for m in range(1, n):
            proof = reference_proof(m, n)
            for m2, n2 in ((m - 1, n), (m + 1, n), (m, n - 1), (m, n + 1), (m + 1, n + 1), (m - 1, n - 1)):
                if not 1 <= m2 <= n2 <= len(ENTRIES) or (m2, n2) == (m, n):
                    continue
                expected = reference_proof(m2, n2) == proof
                if verify_consistency(m2, n2, ROOTS[m2], ROOTS[n2], proof) is not expected:
                    mismatches.append((m, n, m2, n2))
    assert mismatches == []


def test_verify_consistency_of_equal_sizes_needs_an_empty_proof_and_equal_roots() -> None:
    assert verify_consistency(5, 5, ROOTS[5], ROOTS[5], []) is True
    assert verify_consistency(5, 5, ROOTS[5], ROOTS[5], [ROOTS[5]]) is False
    assert verify_consistency(5, 5, ROOTS[5], ROOTS[4], []) is False


@pytest.mark.parametrize(
    ("old_size", "new_size", "old_root", "new_root", "proof"),
    [
        (0, 3, ROOTS[1], ROOTS[3], reference_proof(1, 3)),  # from the empty tree: no proof exists
        (4, 3, ROOTS[4], ROOTS[3], reference_proof(3, 4)),  # backwards
        (-1, 3, ROOTS[1], ROOTS[3], reference_proof(1, 3)),
        (True, 3, ROOTS[1], ROOTS[3], reference_proof(1, 3)),  # a bool is not a size
        (1.0, 3, ROOTS[1], ROOTS[3], reference_proof(1, 3)),
        ("1", 3, ROOTS[1], ROOTS[3], reference_proof(1, 3)),
        (None, 3, ROOTS[1], ROOTS[3], reference_proof(1, 3)),
        (1, 2**200, ROOTS[1], ROOTS[3], reference_proof(1, 3)),  # huge: the path runs out first
        (1, 3, ROOTS[1].hex(), ROOTS[3], reference_proof(1, 3)),  # a root as text
        (1, 3, ROOTS[1][:31], ROOTS[3], reference_proof(1, 3)),
        (1, 3, ROOTS[1], ROOTS[3] + b"\x00", reference_proof(1, 3)),
        (1, 3, ROOTS[1], None, reference_proof(1, 3)),
        (1, 3, ROOTS[1], ROOTS[3], None),
        (1, 3, ROOTS[1], ROOTS[3], b"".join(reference_proof(1, 3))),  # bytes is not a list of hashes
        (1, 3, ROOTS[1], ROOTS[3], "".join(node.hex() for node in reference_proof(1, 3))),
        (1, 3, ROOTS[1], ROOTS[3], [node.hex() for node in reference_proof(1, 3)]),
        (1, 3, ROOTS[1], ROOTS[3], [reference_proof(1, 3)[0][:31], *reference_proof(1, 3)[1:]]),
        (1, 3, ROOTS[1], ROOTS[3], [None, *reference_proof(1, 3)[1:]]),
        (1, 3, ROOTS[1], ROOTS[3], iter(reference_proof(1, 3))),
    ],
)
def test_verify_consistency_answers_false_to_malformed_input_and_never_raises(
    old_size: Any, new_size: Any, old_root: Any, new_root: Any, proof: Any
) -> None:
    assert verify_consistency(old_size, new_size, old_root, new_root, proof) is False


# RelayClient: signed tree heads -------------------------------------------------------------------

CHECKPOINTS = "/v1/audit/checkpoints"


@pytest.fixture
def relay() -> FakeRelay:
    return FakeRelay()


@pytest.fixture
def keys() -> PartnerKeys:
    return generate_partner_keys("demo-bank")


@pytest.fixture
def client(relay: FakeRelay, keys: PartnerKeys) -> RelayClient:
    return RelayClient(ISSUER, "demo-bank", keys, session=relay)


@pytest.fixture
def log(relay: FakeRelay) -> FakeLog:
    """An honest log with three checkpoints: 5, 9 and 17 records."""
    log = FakeLog(relay.service_key)
    for count in (5, 4, 8):
        log.append(count)
        log.sign()
    return log


def assertion_claims(sent_headers: dict[str, str], keys: PartnerKeys) -> dict[str, Any]:
    scheme, token = sent_headers["Authorization"].split(" ", 1)
    assert scheme == "Bearer"
    return dict(json.loads(jws.deserialize_compact(token, keys.signing_key, algorithms=["ES256"]).payload))


def test_latest_checkpoint_returns_the_verified_head_asked_for_with_a_fresh_assertion_to_the_issuer(
    relay: FakeRelay, client: RelayClient, keys: PartnerKeys, log: FakeLog
) -> None:
    relay.script("GET", f"{CHECKPOINTS}/latest", answer(200, log.head(3)))
    relay.script("GET", f"{CHECKPOINTS}/2", answer(200, log.head(2)))
    assert client.latest_checkpoint() == log.head(3)
    assert client.checkpoint(2) == log.head(2)
    sent = relay.to(f"{CHECKPOINTS}/latest") + relay.to(f"{CHECKPOINTS}/2")
    claims = [assertion_claims(request.headers, keys) for request in sent]
    assert [c["aud"] for c in claims] == [ISSUER, ISSUER]  # exactly the issuer, a string
    assert all(c["iss"] == c["sub"] == "demo-bank" for c in claims)
    assert claims[0]["jti"] != claims[1]["jti"]


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda head, key: {**head, "root": b64url(b"\x07" * 32)}, "root"),
        (lambda head, key: {**head, "tree_size": head["tree_size"] + 1}, "tree_size"),
        (lambda head, key: {**head, "seq": True}, "seq"),
        (lambda head, key: {**head, "signed_tree_head": None}, "signed_tree_head"),
        (
            lambda head, key: {**head, "signed_tree_head": signed_head(key, _claims(head), typ="JWT")},
            "typ",
        ),
        (
            lambda head, key: {
                **head,
                "signed_tree_head": signed_head(key, {**_claims(head), "iss": "http://other.test"}),
            },
            "iss",
        ),
        (
            lambda head, key: {
                **head,
                "signed_tree_head": signed_head(
                    ECKey.generate_key("P-256", parameters={"kid": key.kid}), _claims(head)
                ),
            },
            "does not verify",
        ),
        (
            lambda head, key: {
                **head,
                "signed_tree_head": signed_head(key, {**_claims(head), "root": "AAAA"}),
            },
            "root",
        ),
    ],
)
def test_a_head_whose_signature_issuer_type_or_numbers_do_not_hold_is_refused(
    relay: FakeRelay, client: RelayClient, log: FakeLog, tamper: Any, message: str
) -> None:
    relay.script("GET", f"{CHECKPOINTS}/latest", answer(200, tamper(log.head(3), relay.service_key)))
    with pytest.raises(VerificationError, match=message):
        client.latest_checkpoint()


def _claims(head: dict[str, Any]) -> dict[str, Any]:
    payload = head["signed_tree_head"].split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_a_checkpoint_other_than_the_one_asked_for_is_refused(
    relay: FakeRelay, client: RelayClient, log: FakeLog
) -> None:
    relay.script("GET", f"{CHECKPOINTS}/2", answer(200, log.head(3)))
    with pytest.raises(VerificationError, match="asked for checkpoint 2"):
        client.checkpoint(2)


def test_no_checkpoint_yet_and_bad_credentials_raise_what_the_relay_said(
    relay: FakeRelay, client: RelayClient
) -> None:
    relay.script(
        "GET",
        f"{CHECKPOINTS}/latest",
        answer(404, {"type": "urn:myna-relay:problem:checkpoint-not-found", "check": "checkpoint"}),
        answer(
            401,
            {"error": "invalid_token", "error_description": "client_assertion.aud: …"},
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ),
    )
    with pytest.raises(RelayError) as missing:
        client.latest_checkpoint()
    assert (missing.value.status, missing.value.error, missing.value.check) == (
        404,
        "checkpoint-not-found",
        "checkpoint",
    )
    assert not isinstance(missing.value, VerificationError)
    with pytest.raises(RelayError) as refused:
        client.latest_checkpoint()
    assert (refused.value.status, refused.value.error) == (401, "invalid_token")


# RelayClient.consistency -------------------------------------------------------------------------


def test_consistency_returns_the_newer_head_once_the_proof_verifies(
    relay: FakeRelay, client: RelayClient, keys: PartnerKeys, log: FakeLog
) -> None:
    # GIVEN a partner that kept checkpoint 1
    kept = log.head(1)
    relay.script("GET", f"{CHECKPOINTS}/latest/consistency?from=1", answer(200, log.consistency(1, 3)))
    relay.script("GET", f"{CHECKPOINTS}/2/consistency?from=1", answer(200, log.consistency(1, 2)))
    # WHEN it asks for consistency with the latest, and with checkpoint 2
    newer = client.consistency(kept)
    middle = client.consistency(kept, seq=2)
    # THEN each is the verified newer head, asked with a fresh assertion to the issuer
    assert newer == log.head(3)
    assert middle == log.head(2)
    sent = relay.to(f"{CHECKPOINTS}/latest/consistency?from=1")[0]
    assert assertion_claims(sent.headers, keys)["aud"] == ISSUER


def test_consistency_with_the_kept_head_itself_is_that_head(
    relay: FakeRelay, client: RelayClient, log: FakeLog
) -> None:
    relay.script("GET", f"{CHECKPOINTS}/latest/consistency?from=3", answer(200, log.consistency(3, 3)))
    assert log.consistency(3, 3)["consistency_path"] == []
    assert client.consistency(log.head(3)) == log.head(3)


def test_a_relay_showing_another_tree_under_the_kept_number_is_a_fork(
    relay: FakeRelay, client: RelayClient, log: FakeLog
) -> None:
    # GIVEN a partner that kept checkpoint 2 of the log it was shown
    kept = log.head(2)
    # AND a relay that shows another partner another log, signed with the same key
    other = FakeLog(relay.service_key)
    other.append(5)
    other.sign()
    other.append(4, tag=b"rewritten")
    other.sign()
    other.append(8)
    other.sign()
    relay.script("GET", f"{CHECKPOINTS}/latest/consistency?from=2", answer(200, other.consistency(2, 3)))
    # WHEN the partner asks that relay for consistency from its kept head
    with pytest.raises(InconsistentLog) as forked:
        client.consistency(kept)
    # THEN it is a fork, and the message names both heads
    assert forked.value.kind == "fork"
    assert f"root {kept['root']}" in str(forked.value)
    assert f"root {other.head(2)['root']}" in str(forked.value)


def test_a_newer_head_built_on_a_rewritten_tree_fails_the_proof(
    relay: FakeRelay, client: RelayClient, log: FakeLog
) -> None:
    # GIVEN a relay that shows the kept checkpoint 1 honestly, but signs checkpoint 3 over a log in
    # which one of the records checkpoint 1 covered was altered
    altered = [*log.entries[:2], b"altered record", *log.entries[3:5]]
    rewritten = FakeLog(relay.service_key, entries=altered, heads=[log.head(1)])
    rewritten.append(4)
    rewritten.sign()
    rewritten.append(8)
    rewritten.sign()
    assert rewritten.head(3)["tree_size"] == log.head(3)["tree_size"]
    forged = {**rewritten.consistency(1, 3), "consistency_path": log.consistency(1, 3)["consistency_path"]}
    relay.script(
        "GET",
        f"{CHECKPOINTS}/latest/consistency?from=1",
        answer(200, rewritten.consistency(1, 3)),
        answer(200, forged),
    )
    # WHEN the partner asks for consistency: with the rewritten tree's own path, or the honest one
    # THEN neither proves the kept tree is a prefix of the new one
    for _ in range(2):
        with pytest.raises(InconsistentLog) as failed:
            client.consistency(log.head(1))
        assert failed.value.kind == "proof"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda path: [*path[:-1], b64url(b"\x00" * 32)],
        lambda path: path[:-1],
        lambda path: [*path, path[0]],
        lambda path: (
            [path[0].upper(), *path[1:]] if path[0] != path[0].upper() else [path[0].lower(), *path[1:]]
        ),
        lambda path: [*path[:-1], path[-1] + "="],
        lambda path: "".join(path),
    ],
)
def test_a_tampered_consistency_path_is_refused(
    relay: FakeRelay, client: RelayClient, log: FakeLog, tamper: Any
) -> None:
    proof = log.consistency(1, 3)
    relay.script(
        "GET",
        f"{CHECKPOINTS}/latest/consistency?from=1",
        answer(200, {**proof, "consistency_path": tamper(proof["consistency_path"])}),
    )
    with pytest.raises(InconsistentLog) as failed:
        client.consistency(log.head(1))
    assert failed.value.kind == "proof"


def test_a_next_head_that_does_not_link_to_the_kept_one_is_a_fork(
    relay: FakeRelay, client: RelayClient, log: FakeLog
) -> None:
    # GIVEN checkpoint 2 signed over the right tree, but naming another head as its previous one
    relinked = FakeLog(relay.service_key, entries=log.entries[:9], heads=[log.head(1)])
    relinked.sign(previous=b64url(b"\x01" * 32))
    relay.script("GET", f"{CHECKPOINTS}/latest/consistency?from=1", answer(200, relinked.consistency(1, 2)))
    with pytest.raises(InconsistentLog, match="does not link") as failed:
        client.consistency(log.head(1))
    assert failed.value.kind == "fork"


def test_a_relay_whose_latest_checkpoint_is_behind_the_kept_one_is_a_rollback(
    relay: FakeRelay, client: RelayClient, log: FakeLog
) -> None:
    # GIVEN a partner that kept checkpoint 3, and a relay restored to before it (latest is 2)
    kept = log.head(3)
    relay.script(
        "GET",
        f"{CHECKPOINTS}/latest/consistency?from=3",
        answer(404, {"type": "urn:myna-relay:problem:checkpoint-not-found", "check": "from"}),
    )
    relay.script("GET", f"{CHECKPOINTS}/latest", answer(200, log.head(2)))
    # WHEN the partner asks for consistency
    with pytest.raises(InconsistentLog) as rolled_back:
        client.consistency(kept)
    # THEN it is a rollback, and says from where to where
    assert rolled_back.value.kind == "rollback"
    assert "latest checkpoint 2 (tree size 9" in str(rolled_back.value)
    assert "kept checkpoint 3 (tree size 17" in str(rolled_back.value)


def test_a_relay_that_lost_every_checkpoint_is_a_rollback(
    relay: FakeRelay, client: RelayClient, log: FakeLog
) -> None:
    not_found = answer(404, {"type": "urn:myna-relay:problem:checkpoint-not-found", "check": "checkpoint"})
    relay.script("GET", f"{CHECKPOINTS}/latest/consistency?from=1", not_found)
    relay.script("GET", f"{CHECKPOINTS}/latest", not_found)
    with pytest.raises(InconsistentLog, match="no checkpoint at all") as rolled_back:
        client.consistency(log.head(1))
    assert rolled_back.value.kind == "rollback"


def test_a_relay_that_denies_the_kept_checkpoint_but_has_later_ones_is_refused(
    relay: FakeRelay, client: RelayClient, log: FakeLog
) -> None:
    relay.script(
        "GET",
        f"{CHECKPOINTS}/latest/consistency?from=2",
        answer(404, {"type": "urn:myna-relay:problem:checkpoint-not-found", "check": "from"}),
    )
    relay.script("GET", f"{CHECKPOINTS}/latest", answer(200, log.head(3)))
    with pytest.raises(InconsistentLog, match="denies the kept checkpoint 2") as denied:
        client.consistency(log.head(2))
    assert denied.value.kind == "rollback"


@pytest.mark.parametrize(
    "second",
    [
        # an older head as the "newer" one
        lambda log, key: log.head(2),
        # a later number over a smaller tree
        lambda log, key: _resigned(log.head(3), key, seq=4, tree_size=9, root=log.head(2)["root"]),
    ],
)
def test_a_newer_head_that_is_older_or_smaller_than_the_kept_one_is_a_rollback(
    relay: FakeRelay, client: RelayClient, log: FakeLog, second: Any
) -> None:
    relay.script(
        "GET",
        f"{CHECKPOINTS}/latest/consistency?from=3",
        answer(200, {"first": log.head(3), "second": second(log, relay.service_key), "consistency_path": []}),
    )
    with pytest.raises(InconsistentLog) as rolled_back:
        client.consistency(log.head(3))
    assert rolled_back.value.kind == "rollback"


def _resigned(head: dict[str, Any], key: ECKey, **claims: Any) -> dict[str, Any]:
    signed = signed_head(key, {**_claims(head), **claims})
    return {
        "seq": claims["seq"],
        "tree_size": claims["tree_size"],
        "root": claims["root"],
        "signed_tree_head": signed,
    }


def test_a_checkpoint_not_signed_yet_is_an_ordinary_refusal(
    relay: FakeRelay, client: RelayClient, log: FakeLog
) -> None:
    relay.script(
        "GET",
        f"{CHECKPOINTS}/9/consistency?from=2",
        answer(404, {"type": "urn:myna-relay:problem:checkpoint-not-found", "check": "checkpoint"}),
    )
    relay.script("GET", f"{CHECKPOINTS}/latest", answer(200, log.head(3)))
    with pytest.raises(RelayError) as refused:
        client.consistency(log.head(2), seq=9)
    assert not isinstance(refused.value, VerificationError)
    assert (refused.value.status, refused.value.check) == (404, "checkpoint")


def test_consistency_refuses_what_is_not_a_kept_head_or_goes_backwards(
    client: RelayClient, log: FakeLog
) -> None:
    with pytest.raises(ValueError, match="not a signed tree head"):
        client.consistency({"seq": 1, "tree_size": 5, "root": "not base64url"})
    with pytest.raises(ValueError, match="not a signed tree head"):
        client.consistency({"seq": True, "tree_size": 5, "root": log.head(1)["root"]})
    with pytest.raises(ValueError, match="goes forward"):
        client.consistency(log.head(3), seq=2)
    with pytest.raises(ValueError, match="positive integer"):
        client.consistency(log.head(1), seq=0)
