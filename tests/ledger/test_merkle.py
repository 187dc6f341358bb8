"""Tests of `peergrid.ledger.merkle` (RFC 6962 Merkle tree).

Three independent checks: the published Certificate Transparency / Trillian test vectors (pinned
as hex, never computed here), a literal transcription of RFC 6962 §2.1's recursive definitions
(slow and obviously right) compared over every small tree, and Hypothesis properties of proofs
and of the accumulator.
"""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peergrid.ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MerkleAccumulator,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    leaf_hashes,
    node_hash,
    root,
    subtree_root,
    verify_consistency,
    verify_inclusion,
)

# Published vectors. The 8 leaf inputs, the node hashes of every perfect subtree (level 0 = the
# leaf hashes), the roots of the trees of sizes 0..8 and the compact ranges (frontiers) are from
# google/trillian merkle/testonly/constants.go (LeafInputs, NodeHashes, RootHashes, CompactTrees;
# commit 54870a44b0531d1bad40b7a1a1f926253e41be56). The same inputs and roots are the `leaves` and
# `roots` of transparency-dev/merkle proof/verify_test.go and getInputs/getRoots of
# google/certificate-transparency-go merkletree/merkle_verifier_test.go.
LEAF_INPUTS = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
NODE_HASHES = [
    [
        bytes.fromhex(h)
        for h in (
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        )
    ],
    [
        bytes.fromhex(h)
        for h in (
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        )
    ],
    [
        bytes.fromhex(h)
        for h in (
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        )
    ],
    [bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]
LEAVES = NODE_HASHES[0]
ROOT_HASHES = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # empty tree
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
# CompactTrees: the frontier of each tree size, as (level, index) into NODE_HASHES.
COMPACT_TREES: list[list[tuple[int, int]]] = [
    [],
    [(0, 0)],
    [(1, 0)],
    [(1, 0), (0, 2)],
    [(2, 0)],
    [(2, 0), (0, 4)],
    [(2, 0), (1, 2)],
    [(2, 0), (1, 2), (0, 6)],
    [(3, 0)],
]

# transparency-dev/merkle proof/verify_test.go `inclusionProofs` (commit 02194e9a…), identical to
# getInclusionTestVector in certificate-transparency-go merkletree/merkle_verifier_test.go. Those
# tables number leaves from 1; the index here is 0-based (their `p.leaf - 1`).
INCLUSION_PROOFS: list[tuple[int, int, list[str]]] = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# transparency-dev/merkle proof/verify_test.go `consistencyProofs` (same source; the first four
# are also certificate-transparency-go's getConsistencyProofs).
CONSISTENCY_PROOFS: list[tuple[int, int, list[str]]] = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

# Which nodes make up a proof, as (level, index) node IDs, from transparency-dev/merkle
# proof/proof_test.go TestInclusion / TestConsistency (commit 02a3e202…). Only the cases without
# a "rehash" (every element a perfect subtree) and within 8 leaves, so that NODE_HASHES above
# gives each element's published hash: two published sources checked against each other.
INCLUSION_NODE_IDS: list[tuple[int, int, list[tuple[int, int]]]] = [  # (size, index, nodes)
    (1, 0, []),
    (2, 0, [(0, 1)]),
    (2, 1, [(0, 0)]),
    (3, 1, [(0, 0), (0, 2)]),
    (7, 4, [(0, 5), (0, 6), (2, 0)]),
    (7, 5, [(0, 4), (0, 6), (2, 0)]),
    (7, 6, [(1, 2), (2, 0)]),
    (4, 2, [(0, 3), (1, 0)]),
    (5, 3, [(0, 2), (1, 0), (0, 4)]),
    (6, 3, [(0, 2), (1, 0), (1, 2)]),
    (6, 4, [(0, 5), (2, 0)]),
]
CONSISTENCY_NODE_IDS: list[tuple[int, int, list[tuple[int, int]]]] = [  # (size1, size2, nodes)
    (1, 2, [(0, 1)]),
    (1, 4, [(0, 1), (1, 1)]),
    (1, 6, [(0, 1), (1, 1), (1, 2)]),
    (2, 3, [(0, 2)]),
    (2, 8, [(1, 1), (2, 1)]),
    (5, 7, [(0, 4), (0, 5), (0, 6), (2, 0)]),
    (6, 7, [(1, 2), (0, 6), (2, 0)]),
    (7, 8, [(0, 6), (0, 7), (1, 2), (2, 0)]),
    (1, 1, []),
    (2, 2, []),
    (3, 3, []),
    (4, 4, []),
    (5, 5, []),
    (7, 7, []),
    (8, 8, []),
    (2, 4, [(1, 1)]),
    (3, 5, [(0, 2), (0, 3), (1, 0), (0, 4)]),
    (3, 6, [(0, 2), (0, 3), (1, 0), (1, 2)]),
    (4, 6, [(1, 2)]),
]

# transparency-dev/merkle rfc6962/rfc6962_test.go TestRFC6962Hasher.
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def _nodes(ids: list[tuple[int, int]]) -> list[bytes]:
    return [NODE_HASHES[level][index] for level, index in ids]


def _flip(data: bytes, position: int, mask: int) -> bytes:
    """`data` with byte `position` XOR `mask` (mask != 0)."""
    changed = bytearray(data)
    changed[position] ^= mask
    return bytes(changed)


def test_empty_tree_hash_is_rfc_6962s() -> None:
    assert HASH_SIZE == 32
    assert ROOT_HASHES[0] == EMPTY_ROOT
    assert root([]) == EMPTY_ROOT
    assert MerkleAccumulator().root() == EMPTY_ROOT
    assert MerkleAccumulator().state() == (0, ())


def test_hasher_matches_published_digests() -> None:
    # echo -n 004C313233343536 | xxd -r -p | sha256sum, and the node and empty-leaf cases
    assert leaf_hash(b"L123456") == bytes.fromhex(
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert node_hash(b"N123", b"N456") == bytes.fromhex(
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )
    assert leaf_hash(b"") == bytes.fromhex(
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert leaf_hash(b"") != EMPTY_ROOT  # an empty leaf is not an empty tree


def test_leaf_hashes_of_the_published_inputs() -> None:
    assert leaf_hashes(LEAF_INPUTS) == LEAVES
    assert leaf_hashes(iter(LEAF_INPUTS)) == LEAVES
    assert [leaf_hash(d) for d in LEAF_INPUTS] == LEAVES
    assert leaf_hashes([]) == []


@pytest.mark.parametrize("size", range(9))
def test_published_roots(size: int) -> None:
    assert root(LEAVES[:size]) == ROOT_HASHES[size]
    assert subtree_root(LEAVES, 0, size) == ROOT_HASHES[size]
    acc = MerkleAccumulator()
    acc.extend(LEAVES[:size])
    assert acc.size == size
    assert acc.root() == ROOT_HASHES[size]


def test_published_perfect_subtree_hashes() -> None:
    for level, hashes in enumerate(NODE_HASHES):
        width = 1 << level
        for index, expected in enumerate(hashes):
            assert subtree_root(LEAVES, index * width, (index + 1) * width) == expected


@pytest.mark.parametrize("size", range(9))
def test_accumulator_state_is_trillians_compact_tree(size: int) -> None:
    acc = MerkleAccumulator()
    for leaf in LEAVES[:size]:
        acc.append(leaf)
    expected = tuple(_nodes(COMPACT_TREES[size]))
    assert acc.state() == (size, expected)
    resumed = MerkleAccumulator.from_state(size, expected)
    assert resumed.root() == ROOT_HASHES[size]
    resumed.extend(LEAVES[size:])
    assert resumed.root() == ROOT_HASHES[8]


def _corrupted_inclusion_probes(
    index: int, size: int, proof: list[bytes], root_hash: bytes, leaf: bytes
) -> dict[str, tuple[bytes, int, int, list[bytes], bytes]]:
    """Trillian's corruptInclusionProof probes (transparency-dev/merkle proof/verify_test.go)."""
    probes = {
        "index - 1": (leaf, index - 1, size, proof, root_hash),
        "index + 1": (leaf, index + 1, size, proof, root_hash),
        "index ^ 2": (leaf, index ^ 2, size, proof, root_hash),
        "size * 2": (leaf, index, size * 2, proof, root_hash),
        "size / 2": (leaf, index, size // 2, proof, root_hash),
        "wrong leaf": (b"WrongLeaf", index, size, proof, root_hash),
        "empty root": (leaf, index, size, proof, EMPTY_ROOT),
        "random root": (leaf, index, size, proof, SOME_HASH),
        "trailing garbage": (leaf, index, size, [*proof, b""], root_hash),
        "trailing root": (leaf, index, size, [*proof, root_hash], root_hash),
        "preceding garbage": (leaf, index, size, [b"", *proof], root_hash),
        "preceding root": (leaf, index, size, [root_hash, *proof], root_hash),
    }
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = _flip(wrong[i], 0, 8)
        probes[f"modified proof[{i}] bit 3"] = (leaf, index, size, wrong, root_hash)
    if proof:
        probes["removed component"] = (leaf, index, size, proof[:-1], root_hash)
    if len(proof) > 1:
        probes["inserted component"] = (
            leaf,
            index,
            size,
            [proof[0], SOME_HASH, *proof[1:]],
            root_hash,
        )
    return probes


@pytest.mark.parametrize(("index", "size", "proof_hex"), INCLUSION_PROOFS)
def test_published_inclusion_proofs(index: int, size: int, proof_hex: list[str]) -> None:
    proof = [bytes.fromhex(h) for h in proof_hex]
    assert inclusion_proof(LEAVES, index, size) == proof
    assert inclusion_proof(LEAVES[:size], index, size) == proof  # later leaves do not matter
    assert verify_inclusion(LEAVES[index], index, size, proof, ROOT_HASHES[size])
    probes = _corrupted_inclusion_probes(index, size, proof, ROOT_HASHES[size], LEAVES[index])
    accepted = [name for name, args in probes.items() if verify_inclusion(*args)]
    assert accepted == []


@pytest.mark.parametrize(("size", "index", "ids"), INCLUSION_NODE_IDS)
def test_inclusion_proofs_are_the_published_nodes(
    size: int, index: int, ids: list[tuple[int, int]]
) -> None:
    proof = _nodes(ids)
    assert inclusion_proof(LEAVES, index, size) == proof
    assert verify_inclusion(LEAVES[index], index, size, proof, ROOT_HASHES[size])


@pytest.mark.parametrize(
    ("size", "index"),
    [(0, 0), (0, 1), (1, 2), (0, 3), (7, 8), (1, -1), (9, 0)],  # TestInclusion errors, and more
)
def test_inclusion_proof_rejects_out_of_range(size: int, index: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof(LEAVES, index, size)


def _corrupted_consistency_probes(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes]
) -> dict[str, tuple[int, int, bytes, bytes, list[bytes]]]:
    """Trillian's corruptConsistencyProof probes (transparency-dev/merkle proof/verify_test.go)."""
    probes = {
        "size1 - 1": (size1 - 1, size2, root1, root2, proof),
        "size1 + 1": (size1 + 1, size2, root1, root2, proof),
        "size1 ^ 2": (size1 ^ 2, size2, root1, root2, proof),
        "size2 * 2": (size1, size2 * 2, root1, root2, proof),
        "size2 / 2": (size1, size2 // 2, root1, root2, proof),
        "wrong root1": (size1, size2, b"WrongRoot", root2, proof),
        "wrong root2": (size1, size2, root1, b"WrongRoot", proof),
        "swapped roots": (size1, size2, root2, root1, proof),
        "empty proof": (size1, size2, root1, root2, []),
        "trailing garbage": (size1, size2, root1, root2, [*proof, b""]),
        "trailing root1": (size1, size2, root1, root2, [*proof, root1]),
        "trailing root2": (size1, size2, root1, root2, [*proof, root2]),
        "preceding garbage": (size1, size2, root1, root2, [b"", *proof]),
        "preceding root1": (size1, size2, root1, root2, [root1, *proof]),
        "preceding root2": (size1, size2, root1, root2, [root2, *proof]),
        "preceding proof[0]": (size1, size2, root1, root2, [proof[0], *proof]),
        "truncated proof": (size1, size2, root1, root2, proof[:-1]),
    }
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = _flip(wrong[i], 0, 16)
        probes[f"modified proof[{i}] bit 4"] = (size1, size2, root1, root2, wrong)
    return probes


@pytest.mark.parametrize(("size1", "size2", "proof_hex"), CONSISTENCY_PROOFS)
def test_published_consistency_proofs(size1: int, size2: int, proof_hex: list[str]) -> None:
    proof = [bytes.fromhex(h) for h in proof_hex]
    root1, root2 = ROOT_HASHES[size1], ROOT_HASHES[size2]
    assert consistency_proof(LEAVES, size1, size2) == proof
    assert verify_consistency(size1, size2, root1, root2, proof)
    if proof:  # as in Trillian: only non-trivial proofs are corrupted
        probes = _corrupted_consistency_probes(size1, size2, root1, root2, proof)
        accepted = [name for name, args in probes.items() if verify_consistency(*args)]
        assert accepted == []


@pytest.mark.parametrize(("size1", "size2", "ids"), CONSISTENCY_NODE_IDS)
def test_consistency_proofs_are_the_published_nodes(
    size1: int, size2: int, ids: list[tuple[int, int]]
) -> None:
    proof = _nodes(ids)
    assert consistency_proof(LEAVES, size1, size2) == proof
    assert verify_consistency(size1, size2, ROOT_HASHES[size1], ROOT_HASHES[size2], proof)


@pytest.mark.parametrize(
    ("size1", "size2", "match"),
    [
        (5, 0, "outside"),  # TestConsistency errors
        (9, 8, "old_size <= new_size"),
        (3, 9, "outside"),
        (0, 3, "empty tree"),
        (0, 0, "outside"),
        (-1, 3, "old_size"),
    ],
)
def test_consistency_proof_rejects_bad_sizes(size1: int, size2: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        consistency_proof(LEAVES, size1, size2)


def test_verify_inclusion_edge_cases() -> None:
    # transparency-dev/merkle TestVerifyInclusionSingleEntry and TestVerifyInclusion
    leaf = leaf_hash(b"data")
    assert verify_inclusion(leaf, 0, 1, [], leaf)  # a 1-leaf tree's root is its leaf hash
    assert not verify_inclusion(b"", 0, 1, [], leaf)
    assert not verify_inclusion(leaf, 0, 1, [], b"")
    assert not verify_inclusion(b"", 0, 1, [], b"")
    for index, size in [(0, 0), (0, 1), (1, 0), (2, 1)]:
        assert not verify_inclusion(SOME_HASH, index, size, [], b"")
        assert not verify_inclusion(b"", index, size, [], EMPTY_ROOT)
        assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)
    assert not verify_inclusion(leaf, -1, 1, [], leaf)
    assert not verify_inclusion(leaf, 0, 1, [leaf], leaf)  # proof too long


def test_verify_consistency_edge_cases() -> None:
    r1, r2 = ROOT_HASHES[3], ROOT_HASHES[5]
    assert verify_consistency(3, 3, r1, r1, [])  # same tree: equal roots, empty proof
    assert not verify_consistency(3, 3, r1, r2, [])
    assert not verify_consistency(3, 3, r1, r1, [EMPTY_ROOT])  # roots match, proof not empty
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(0, 0, r1, r1, [])  # the empty tree's root is EMPTY_ROOT
    assert not verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])
    # from the empty tree: not defined, as in transparency-dev/merkle (RFC 6962 needs 0 < m)
    assert not verify_consistency(0, 5, EMPTY_ROOT, r2, [])
    # time travel to the past, an empty proof, hashes of the wrong length
    assert not verify_consistency(1, 0, LEAVES[0], EMPTY_ROOT, [])
    assert not verify_consistency(5, 3, r2, r1, consistency_proof(LEAVES, 3, 5))
    assert not verify_consistency(1, 2, ROOT_HASHES[1], ROOT_HASHES[2], [])
    assert not verify_consistency(3, 3, b"don't care", b"don't care", [])


def test_a_proof_binds_the_tree_size_only_through_its_shape() -> None:
    # Leaf 0's path in the 3-leaf tree is (leaf 1, leaf 2); in a 4-leaf tree it would be
    # (leaf 1, MTH(leaves 2..3)): both siblings on the right, so the verifier, which cannot tell
    # a leaf hash from a node hash, accepts the pair for size 4 too. Why the size must come from
    # a signed tree head, not from the prover.
    proof = inclusion_proof(LEAVES, 0, 3)
    assert proof == [NODE_HASHES[0][1], NODE_HASHES[0][2]]
    assert verify_inclusion(LEAVES[0], 0, 4, proof, ROOT_HASHES[3])


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="32-byte leaf hashes"):
        root([*LEAVES, b"entry data, not a hash"])
    with pytest.raises(ValueError, match="32-byte leaf hashes"):
        inclusion_proof([*LEAF_INPUTS[:4], *LEAVES[4:]], 7, 8)
    with pytest.raises(ValueError, match="outside"):
        subtree_root(LEAVES, 5, 4)
    with pytest.raises(ValueError, match="outside"):
        subtree_root(LEAVES, 0, 9)
    acc = MerkleAccumulator()
    with pytest.raises(ValueError, match="leaf 0 is 2 bytes"):
        acc.append(b"ab")
    assert acc.state() == (0, ())
    with pytest.raises(ValueError, match="leaf 3 is 0 bytes"):
        acc.extend([*LEAVES[:3], b"", LEAVES[4]])
    assert acc.size == 3  # the leaves before the bad one stay appended: a valid prefix
    assert acc.root() == ROOT_HASHES[3]


@pytest.mark.parametrize(
    ("size", "hashes", "match"),
    [
        (3, [SOME_HASH], "has 2 perfect subtrees"),
        (0, [SOME_HASH], "has 0 perfect subtrees"),
        (4, [SOME_HASH, SOME_HASH], "has 1 perfect subtrees"),
        (-1, [], "non-negative"),
        (1, [b"short"], "5 bytes"),
    ],
)
def test_from_state_rejects_inconsistent_state(size: int, hashes: list[bytes], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MerkleAccumulator.from_state(size, hashes)


# A literal transcription of RFC 6962 §2.1 (MTH, PATH, PROOF/SUBPROOF) over leaf hashes, with
# hashlib directly: slow, recursive, and obviously the specification.
def _ref_split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = _ref_split(len(d))
    return hashlib.sha256(b"\x01" + _ref_mth(d[:k]) + _ref_mth(d[k:])).digest()


def _ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _ref_split(len(d))
    if m < k:
        return [*_ref_path(m, d[:k]), _ref_mth(d[k:])]
    return [*_ref_path(m - k, d[k:]), _ref_mth(d[:k])]


def _ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [_ref_mth(d)]
    k = _ref_split(n)
    if m <= k:
        return [*_ref_subproof(m, d[:k], b), _ref_mth(d[k:])]
    return [*_ref_subproof(m - k, d[k:], False), _ref_mth(d[:k])]


def _ref_path_shape(m: int, n: int) -> tuple[bool, ...]:
    """PATH(m, D[n])'s sides, bottom up: True where the sibling is on the right."""
    if n == 1:
        return ()
    k = _ref_split(n)
    if m < k:
        return (*_ref_path_shape(m, k), True)
    return (*_ref_path_shape(m - k, n - k), False)


def _distinct_leaves(n: int, salt: bytes = b"") -> list[bytes]:
    """n distinct 32-byte leaf hashes (distinct: otherwise a mirrored index could verify)."""
    return [hashlib.sha256(salt + i.to_bytes(4, "big")).digest() for i in range(n)]


def test_every_small_tree_matches_the_rfc_transcription() -> None:
    leaves = _distinct_leaves(33, b"rfc")
    for n in range(34):
        d = leaves[:n]
        assert root(d) == _ref_mth(d)
        for m in range(n):
            assert inclusion_proof(leaves, m, n) == _ref_path(m, d)
        for m in range(1, n + 1):
            assert consistency_proof(leaves, m, n) == _ref_subproof(m, d, True)


trees = st.builds(_distinct_leaves, st.integers(1, 70), st.binary(max_size=8))
hashes32 = st.binary(min_size=HASH_SIZE, max_size=HASH_SIZE)


@given(st.lists(hashes32, max_size=300))
def test_accumulator_root_equals_root(leaves: list[bytes]) -> None:
    acc = MerkleAccumulator()
    acc.extend(leaves)
    one_by_one = MerkleAccumulator()
    for leaf in leaves:
        one_by_one.append(leaf)
    assert acc.size == one_by_one.size == len(leaves)
    assert acc.root() == one_by_one.root() == root(leaves)
    assert acc.state() == one_by_one.state()
    assert len(acc.state()[1]) == len(leaves).bit_count()


@given(st.lists(hashes32, max_size=64))
def test_accumulator_root_after_every_append(leaves: list[bytes]) -> None:
    acc = MerkleAccumulator()
    for n, leaf in enumerate(leaves, start=1):
        acc.append(leaf)
        assert acc.root() == root(leaves[:n])


@given(st.lists(hashes32, max_size=300), st.data())
def test_accumulator_state_round_trip(leaves: list[bytes], data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(leaves)), label="cut")
    first = MerkleAccumulator()
    first.extend(leaves[:cut])
    size, stored = first.state()
    resumed = MerkleAccumulator.from_state(size, list(stored))
    assert resumed.state() == (size, stored)
    assert resumed.root() == first.root()
    resumed.extend(leaves[cut:])
    assert resumed.root() == root(leaves)


@given(st.integers(0, 2**70), st.integers(-3, 3))
def test_from_state_needs_one_hash_per_set_bit(size: int, miscount: int) -> None:
    hashes = [SOME_HASH] * max(0, size.bit_count() + miscount)
    if len(hashes) == size.bit_count():
        assert MerkleAccumulator.from_state(size, hashes).size == size
    else:
        with pytest.raises(ValueError, match="perfect subtrees"):
            MerkleAccumulator.from_state(size, hashes)


@settings(deadline=None)
@given(trees)
def test_every_inclusion_proof_verifies_and_no_other_index_does(leaves: list[bytes]) -> None:
    n = len(leaves)
    root_hash = root(leaves)
    for index in range(n):
        proof = inclusion_proof(leaves, index, n)
        assert verify_inclusion(leaves[index], index, n, proof, root_hash)
        wrong = [
            j for j in range(-1, n + 1) if verify_inclusion(leaves[index], j, n, proof, root_hash)
        ]
        assert wrong == [index]


@settings(deadline=None)
@given(trees, st.data())
def test_inclusion_with_another_size_verifies_only_for_the_same_shape(
    leaves: list[bytes], data: st.DataObject
) -> None:
    # Not "always fails": see test_a_proof_binds_the_tree_size_only_through_its_shape.
    n = len(leaves)
    index = data.draw(st.integers(0, n - 1), label="index")
    other = data.draw(st.integers(0, 2 * n + 2).filter(lambda s: s != n), label="other")
    proof = inclusion_proof(leaves, index, n)
    accepted = verify_inclusion(leaves[index], index, other, proof, root(leaves))
    same_shape = index < other and _ref_path_shape(index, other) == _ref_path_shape(index, n)
    assert accepted == same_shape


@settings(deadline=None)
@given(trees, st.data())
def test_inclusion_fails_after_flipping_any_byte(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    index = data.draw(st.integers(0, n - 1), label="index")
    proof = inclusion_proof(leaves, index, n)
    root_hash = root(leaves)
    leaf = leaves[index]
    part = data.draw(st.integers(-2, len(proof) - 1), label="part")  # -2 leaf, -1 root, else proof
    position = data.draw(st.integers(0, HASH_SIZE - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="mask")
    if part == -2:
        leaf = _flip(leaf, position, mask)
    elif part == -1:
        root_hash = _flip(root_hash, position, mask)
    else:
        proof[part] = _flip(proof[part], position, mask)
    assert not verify_inclusion(leaf, index, n, proof, root_hash)


@settings(deadline=None)
@given(trees)
def test_consistency_proofs_verify_for_every_older_size(leaves: list[bytes]) -> None:
    n = len(leaves)
    roots = [root(leaves[:m]) for m in range(n + 1)]
    for m in range(1, n + 1):
        proof = consistency_proof(leaves, m, n)
        assert verify_consistency(m, n, roots[m], roots[n], proof)
        if m < n:
            assert not verify_consistency(m, n, roots[m], roots[n], proof[:-1])
            assert not verify_consistency(m, n, roots[m], roots[n], [*proof, roots[m]])
            assert not verify_consistency(m, n, roots[m - 1], roots[n], proof)
            assert not verify_consistency(m, n, roots[m], roots[n - 1], proof)


@settings(deadline=None)
@given(trees, st.data())
def test_consistency_fails_after_flipping_any_byte(
    leaves: list[bytes], data: st.DataObject
) -> None:
    n = len(leaves)
    m = data.draw(st.integers(1, n), label="old_size")
    proof = consistency_proof(leaves, m, n)
    old_root, new_root = root(leaves[:m]), root(leaves)
    part = data.draw(st.integers(-2, len(proof) - 1), label="part")  # -2 old, -1 new, else proof
    position = data.draw(st.integers(0, HASH_SIZE - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="mask")
    if part == -2:
        old_root = _flip(old_root, position, mask)
    elif part == -1:
        new_root = _flip(new_root, position, mask)
    else:
        proof[part] = _flip(proof[part], position, mask)
    assert not verify_consistency(m, n, old_root, new_root, proof)


garbage_hash = st.one_of(hashes32, st.binary(max_size=40))
garbage_size = st.one_of(st.integers(-3, 300), st.integers(-(2**70), 2**70))
garbage_proof = st.lists(garbage_hash, max_size=70)


@given(garbage_hash, garbage_size, garbage_size, garbage_proof, garbage_hash)
def test_verify_inclusion_never_raises(
    leaf: bytes, index: int, size: int, proof: list[bytes], root_hash: bytes
) -> None:
    assert verify_inclusion(leaf, index, size, proof, root_hash) in (True, False)


@given(garbage_size, garbage_size, garbage_hash, garbage_hash, garbage_proof)
def test_verify_consistency_never_raises(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> None:
    assert verify_consistency(old_size, new_size, old_root, new_root, proof) in (True, False)


def test_two_hundred_thousand_leaves() -> None:
    # A quick scale check (~1 s): the ledger holds millions of entries.
    n = 200_000
    blob = random.Random(6962).randbytes(n * HASH_SIZE)
    leaves = [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)]
    root_hash = root(leaves)
    acc = MerkleAccumulator()
    acc.extend(leaves)
    assert acc.root() == root_hash
    proof = inclusion_proof(leaves, n - 1, n)
    assert len(proof) == len(_ref_path_shape(n - 1, n))
    assert verify_inclusion(leaves[-1], n - 1, n, proof, root_hash)
    assert not verify_inclusion(leaves[-2], n - 1, n, proof, root_hash)
