"""RFC 9162 tree arithmetic: reference vectors, an independent implementation, proofs."""

from __future__ import annotations

import pytest
from pymerkle import InmemoryTree

from hub.ledger.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_path,
    hashes_from,
    inclusion_path,
    leaf_hash,
    list_source,
    root_of,
    verify_consistency,
    verify_inclusion,
)

# RFC 6962's reference test vectors (certificate-transparency): the 8 leaves and the
# root of each prefix.
LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


@pytest.mark.parametrize("n", range(1, 9))
def test_roots_match_the_rfc_6962_reference_vectors(n: int) -> None:
    assert root_of(hashes_from(LEAVES[:n])).hex() == ROOTS[n - 1]


def test_empty_tree_root_is_the_hash_of_nothing() -> None:
    assert Frontier().root() == EMPTY_ROOT == root_of([])


async def test_roots_and_inclusion_paths_match_pymerkle_for_every_size_to_70() -> None:
    for n in range(1, 71):
        data = [f"event {i}".encode() for i in range(n)]
        ref = InmemoryTree(algorithm="sha256")
        for d in data:
            ref.append_entry(d)
        leaves = hashes_from(data)
        assert root_of(leaves) == ref.get_root(), n
        for m in (0, n // 2, n - 1):
            ours = await inclusion_path(list_source(leaves), m, n)
            theirs = [bytes.fromhex(h) for h in ref.prove_inclusion(m + 1, n).serialize()["path"]]
            assert ours == theirs[1:], (m, n)  # pymerkle puts the leaf itself first


async def test_every_inclusion_and_consistency_proof_verifies_and_wrong_ones_do_not() -> None:
    for n in range(1, 40):
        leaves = hashes_from([bytes([i]) for i in range(n)])
        root, source = root_of(leaves), list_source(leaves)
        for m in range(n):
            path = await inclusion_path(source, m, n)
            assert verify_inclusion(leaves[m], m, n, path, root)
            assert not verify_inclusion(leaf_hash(b"forged"), m, n, path, root)
            if n > 1:
                assert not verify_inclusion(leaves[m], (m + 1) % n, n, path, root)
        for old in range(1, n + 1):
            proof = await consistency_path(source, old, n)
            old_root = root_of(leaves[:old])
            assert verify_consistency(old, n, proof, old_root, root)
            if old < n:
                assert not verify_consistency(old, n, proof, leaf_hash(b"x"), root)
                assert not verify_consistency(old, n, proof, old_root, leaf_hash(b"x"))


async def test_out_of_range_proofs_are_refused() -> None:
    source = list_source(hashes_from([b"a", b"b"]))
    with pytest.raises(ValueError, match="not in a tree"):
        await inclusion_path(source, 2, 2)
    with pytest.raises(ValueError, match="no consistency proof"):
        await consistency_path(source, 3, 2)


@pytest.mark.parametrize(
    "fields",
    [
        (1, "received", 1_732_400_000_000_000, "p1", None, "000.00.00.G22", "system:a", "{}"),
        (2**40, "fetched", 0, None, None, None, None, '{"x":"Tây Ninh"}'),
        (7, "accepted", 5, "p", "d", "o", "a", '{"k":"' + "é" * 3000 + '"}'),  # over 4 KB
        (8, "", 1, "", "", "", "", ""),
    ],
)
def test_an_events_leaf_bytes_are_the_documented_encoding(
    fields: tuple[int, str, int, str | None, str | None, str | None, str | None, str],
) -> None:
    """The hot path's encoding (hub/ledger/leaf.py) is ``encode`` of the tagged fields:
    length-prefixed UTF-8, 0xFFFFFFFF for an absent one, whatever the lengths."""
    from hub.ledger.leaf import encode, event_bytes  # noqa: PLC0415
    from hub.records import LedgerEvent  # noqa: PLC0415

    assert event_bytes(LedgerEvent(*fields)) == encode("lienthong-event/1", *fields)
