"""RFC 9162 §2 Merkle trees (tracemem_verify.merkle): reference vectors, properties, complexity.

The vectors in ``tests/vectors/transparency_dev_merkle.json`` are data copied verbatim from
https://github.com/transparency-dev/merkle (Apache-2.0; commit and files named in its ``_source``):
the RFC 6962 reference tree of ``testonly/constants.go`` (leaves "", 00, 10, 2021, 3031, 40414243,
…; node and root hashes for sizes 0..8), the hasher vectors of ``rfc6962/rfc6962_test.go``, the
known audit paths and consistency proofs of ``cmd/proofgen/main.go``, and every inclusion and
consistency probe of ``testdata/`` (happy paths and their mutations, with the expected verdict).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tracemem_verify import merkle
from tracemem_verify.merkle import (
    EMPTY_ROOT,
    InvalidProof,
    MalformedProof,
    MemoryTree,
    MerkleError,
    RootMismatch,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "transparency_dev_merkle.json").read_text()
)
LEAVES = [bytes.fromhex(h) for h in VECTORS["leaf_inputs_hex"]]
ROOTS = [bytes.fromhex(h) for h in VECTORS["root_hashes_hex"]]


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _b64_list(values: list[str] | None) -> list[bytes]:
    return [_b64(v) for v in values or []]


# --- the RFC's definitions, transcribed literally, as an independent reference ---------------------


def ref_mth(data: list[bytes]) -> bytes:
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + ref_mth(data[:k]) + ref_mth(data[k:])).digest()


def ref_path(m: int, data: list[bytes]) -> list[bytes]:
    n = len(data)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return ref_path(m, data[:k]) + [ref_mth(data[k:])]
    return ref_path(m - k, data[k:]) + [ref_mth(data[:k])]


def ref_subproof(m: int, data: list[bytes], b: bool) -> list[bytes]:
    n = len(data)
    if m == n:
        return [] if b else [ref_mth(data)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return ref_subproof(m, data[:k], b) + [ref_mth(data[k:])]
    return ref_subproof(m - k, data[k:], False) + [ref_mth(data[:k])]


# --- published vectors ---------------------------------------------------------------------------


def test_hasher_matches_the_rfc6962_vectors() -> None:
    hasher = VECTORS["hasher"]
    assert EMPTY_ROOT.hex() == hasher["empty_root_hex"]
    assert leaf_hash(b"").hex() == hasher["empty_leaf_hex"]
    assert leaf_hash(hasher["leaf"]["input"].encode()).hex() == hasher["leaf"]["hash_hex"]
    node = hasher["node"]
    assert node_hash(node["left"].encode(), node["right"].encode()).hex() == node["hash_hex"]


@pytest.mark.parametrize("size", range(9))
def test_tree_hash_of_every_size_0_to_8_matches_the_reference_roots(size: int) -> None:
    hashes = [leaf_hash(leaf) for leaf in LEAVES[:size]]

    assert root_hash(hashes) == ROOTS[size]
    assert MemoryTree(hashes).root() == ROOTS[size]
    assert MemoryTree([leaf_hash(leaf) for leaf in LEAVES]).root(size) == ROOTS[size]
    assert ref_mth(LEAVES[:size]) == ROOTS[size]


def test_every_stored_node_matches_the_reference_node_hashes() -> None:
    tree = MemoryTree()
    for leaf in LEAVES:
        tree.append_leaf(leaf)

    for level, row in enumerate(VECTORS["node_hashes_hex"]):
        for index, expected in enumerate(row):
            assert tree.node(level, index).hex() == expected, (level, index)
    with pytest.raises(MerkleError, match="no complete subtree at level 3, index 1"):
        tree.node(3, 1)


@pytest.mark.parametrize(
    "case", VECTORS["inclusion_paths"], ids=lambda c: f"{c['leaf_index']}@{c['tree_size']}"
)
def test_generated_audit_paths_equal_the_published_ones(case: dict[str, Any]) -> None:
    tree = MemoryTree([leaf_hash(leaf) for leaf in LEAVES])
    index, size = case["leaf_index"], case["tree_size"]
    expected = [bytes.fromhex(h) for h in case["proof_hex"]]

    assert tree.inclusion_proof(index, size) == expected
    verify_inclusion(index, size, leaf_hash(LEAVES[index]), expected, ROOTS[size])


@pytest.mark.parametrize("case", VECTORS["consistency_paths"], ids=lambda c: f"{c['size1']}-{c['size2']}")
def test_generated_consistency_proofs_equal_the_published_ones(case: dict[str, Any]) -> None:
    tree = MemoryTree([leaf_hash(leaf) for leaf in LEAVES])
    old, new = case["size1"], case["size2"]
    expected = [bytes.fromhex(h) for h in case["proof_hex"]]

    assert tree.consistency_proof(old, new) == expected
    verify_consistency(old, new, ROOTS[old], ROOTS[new], expected)


@pytest.mark.parametrize(
    "probe", VECTORS["inclusion_probes"], ids=lambda p: p["file"].removeprefix("testdata/")
)
def test_inclusion_probe(probe: dict[str, Any]) -> None:
    def run() -> None:
        verify_inclusion(
            probe["leafIdx"],
            probe["treeSize"],
            _b64(probe["leafHash"]),
            _b64_list(probe["proof"]),
            _b64(probe["root"]),
        )

    if probe["wantErr"]:
        with pytest.raises(InvalidProof):
            run()
    else:
        run()


@pytest.mark.parametrize(
    "probe", VECTORS["consistency_probes"], ids=lambda p: p["file"].removeprefix("testdata/")
)
def test_consistency_probe(probe: dict[str, Any]) -> None:
    def run() -> None:
        verify_consistency(
            probe["size1"],
            probe["size2"],
            _b64(probe["root1"]),
            _b64(probe["root2"]),
            _b64_list(probe["proof"]),
        )

    if probe["wantErr"]:
        with pytest.raises(InvalidProof):
            run()
    else:
        run()


def test_every_probe_file_was_copied() -> None:
    # 98 + 98 files in transparency-dev/merkle's testdata/inclusion and testdata/consistency.
    assert len(VECTORS["inclusion_probes"]) == 98
    assert len(VECTORS["consistency_probes"]) == 98
    assert sum(not p["wantErr"] for p in VECTORS["inclusion_probes"]) >= 5


# --- what a bad proof says ---------------------------------------------------------------------


def _tree(n: int) -> MemoryTree:
    return MemoryTree(leaf_hash(i.to_bytes(4, "big")) for i in range(n))


def test_bad_inclusion_proofs_say_what_is_wrong() -> None:
    tree = _tree(8)
    proof, root, leaf = tree.inclusion_proof(5), tree.root(), tree.node(0, 5)

    with pytest.raises(MalformedProof, match=r"^leaf index 8 is out of range for a tree of size 8$"):
        verify_inclusion(8, 8, leaf, proof, root)
    with pytest.raises(
        MalformedProof, match=r"^the audit path has 2 hashes; leaf 5 of a tree of size 8 needs 3$"
    ):
        verify_inclusion(5, 8, leaf, proof[:2], root)
    with pytest.raises(MalformedProof, match=r"^audit path hash 1 is 31 bytes; a SHA-256 hash has 32$"):
        verify_inclusion(5, 8, leaf, [proof[0], proof[1][:31], proof[2]], root)
    with pytest.raises(
        RootMismatch, match=r"^the audit path of leaf 4 leads to root .+, not to the root .+ of"
    ):
        verify_inclusion(4, 8, leaf, proof, root)


def test_bad_consistency_proofs_say_what_is_wrong() -> None:
    tree = _tree(8)
    proof = tree.consistency_proof(3, 8)

    with pytest.raises(MalformedProof, match=r"^the old tree size 8 is larger than the new tree size 3$"):
        verify_consistency(8, 3, tree.root(8), tree.root(3), proof)
    with pytest.raises(MalformedProof, match=r"from the empty tree \(size 0\) proves nothing"):
        verify_consistency(0, 8, EMPTY_ROOT, tree.root(), [])
    with pytest.raises(
        MalformedProof, match=r"^the consistency proof has 3 hashes; from tree size 3 to 8 it needs 4$"
    ):
        verify_consistency(3, 8, tree.root(3), tree.root(), proof[:3])
    with pytest.raises(RootMismatch, match=r"^two different roots for tree size 8"):
        verify_consistency(8, 8, tree.root(), tree.root(7), [])
    with pytest.raises(RootMismatch, match=r"^the proof does not contain the old tree"):
        verify_consistency(3, 8, tree.root(2), tree.root(), proof)
    with pytest.raises(RootMismatch, match=r"^the proof leads to root .+ for size 8, not"):
        verify_consistency(3, 8, tree.root(3), tree.root(7), proof)


def test_generation_refuses_what_no_tree_has() -> None:
    tree = _tree(5)
    with pytest.raises(MerkleError, match="leaf index 5 is out of range for a tree of size 5"):
        tree.inclusion_proof(5)
    with pytest.raises(MerkleError, match="tree size 6 is beyond the 5 leaves appended"):
        tree.inclusion_proof(0, 6)
    with pytest.raises(MerkleError, match="no consistency proof from tree size 4 to tree size 3"):
        tree.consistency_proof(4, 3)
    with pytest.raises(MerkleError, match="leaf hash has 32 bytes"):
        tree.append_hash(b"short")
    assert tree.consistency_proof(0, 5) == [] and tree.consistency_proof(5, 5) == []
    assert tree.root(0) == EMPTY_ROOT


# --- properties ----------------------------------------------------------------------------------

MAX_SIZE = 300


@cache
def _big_tree() -> MemoryTree:
    return _tree(MAX_SIZE)


def _data(n: int) -> list[bytes]:
    return [i.to_bytes(4, "big") for i in range(n)]


@st.composite
def _leaf_in_tree(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_SIZE))
    return draw(st.integers(0, size - 1)), size


@st.composite
def _two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(st.integers(2, MAX_SIZE))
    return draw(st.integers(1, new - 1)), new


def _flip(value: bytes, bit: int) -> bytes:
    bit %= len(value) * 8
    changed = bytearray(value)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


@settings(max_examples=300, deadline=None)
@given(_leaf_in_tree())
def test_every_generated_inclusion_proof_is_the_rfc_path_and_verifies(case: tuple[int, int]) -> None:
    index, size = case
    tree = _big_tree()
    proof = tree.inclusion_proof(index, size)

    assert proof == ref_path(index, _data(size))
    assert tree.root(size) == ref_mth(_data(size))
    verify_inclusion(index, size, tree.node(0, index), proof, tree.root(size))


@settings(max_examples=300, deadline=None)
@given(_two_sizes())
def test_every_generated_consistency_proof_is_the_rfc_proof_and_verifies(case: tuple[int, int]) -> None:
    old, new = case
    tree = _big_tree()
    proof = tree.consistency_proof(old, new)

    assert proof == ref_subproof(old, _data(new), True)
    verify_consistency(old, new, tree.root(old), tree.root(new), proof)


@settings(max_examples=300, deadline=None)
@given(
    _leaf_in_tree(), st.sampled_from(["leaf", "root", "proof"]), st.integers(0, 10**6), st.integers(0, 10**6)
)
def test_any_bit_flip_breaks_an_inclusion_proof(
    case: tuple[int, int], where: str, which: int, bit: int
) -> None:
    index, size = case
    tree = _big_tree()
    leaf, proof, root = tree.node(0, index), tree.inclusion_proof(index, size), tree.root(size)
    if where == "leaf":
        leaf = _flip(leaf, bit)
    elif where == "root":
        root = _flip(root, bit)
    elif proof:
        position = which % len(proof)
        proof[position] = _flip(proof[position], bit)
    else:
        leaf = _flip(leaf, bit)  # a one-leaf tree has no path to flip

    with pytest.raises(RootMismatch):
        verify_inclusion(index, size, leaf, proof, root)


@settings(max_examples=300, deadline=None)
@given(_two_sizes(), st.sampled_from(["old", "new", "proof"]), st.integers(0, 10**6), st.integers(0, 10**6))
def test_any_bit_flip_breaks_a_consistency_proof(
    case: tuple[int, int], where: str, which: int, bit: int
) -> None:
    old, new = case
    tree = _big_tree()
    old_root, new_root, proof = tree.root(old), tree.root(new), tree.consistency_proof(old, new)
    if where == "old":
        old_root = _flip(old_root, bit)
    elif where == "new":
        new_root = _flip(new_root, bit)
    else:
        position = which % len(proof)
        proof[position] = _flip(proof[position], bit)

    with pytest.raises(RootMismatch):
        verify_consistency(old, new, old_root, new_root, proof)


@settings(max_examples=300, deadline=None)
@given(_leaf_in_tree(), st.integers(1, MAX_SIZE), st.integers(0, MAX_SIZE - 1))
def test_an_inclusion_proof_fails_for_any_other_index_or_size(
    case: tuple[int, int], other_size: int, other_index: int
) -> None:
    index, size = case
    assume((other_index, other_size) != (index, size))
    tree = _big_tree()
    proof = tree.inclusion_proof(index, size)

    # The verifier takes the root of the size it was told (a checkpoint of that size).
    with pytest.raises(InvalidProof):
        verify_inclusion(other_index, other_size, tree.node(0, index), proof, tree.root(other_size))


@settings(max_examples=300, deadline=None)
@given(_two_sizes(), _two_sizes())
def test_a_consistency_proof_fails_for_any_other_pair_of_sizes(
    case: tuple[int, int], other: tuple[int, int]
) -> None:
    assume(other != case)
    tree = _big_tree()
    proof = tree.consistency_proof(*case)

    with pytest.raises(InvalidProof):
        verify_consistency(other[0], other[1], tree.root(other[0]), tree.root(other[1]), proof)


# --- cost: what a server holding a million leaves pays per proof ---------------------------------


class CountingNodes:
    """A stand-in for a server's node store: counts reads and refuses nodes beyond the tree."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.reads = 0

    def __call__(self, level: int, index: int) -> bytes:
        assert (index + 1) << level <= self.size, f"node ({level}, {index}) is outside a tree of {self.size}"
        self.reads += 1
        return hashlib.sha256(f"{level}/{index}".encode()).digest()


@pytest.mark.parametrize("size", [1_000_000, 2**20, 2**20 - 1, 999_983])
def test_proofs_in_a_million_leaf_tree_read_at_most_2_log2_n_nodes(size: int) -> None:
    bound = 2 * math.ceil(math.log2(size))
    for index in (0, 1, size // 3, size // 2, size - 2, size - 1):
        nodes = CountingNodes(size)
        proof = inclusion_proof(index, size, nodes)
        assert len(proof) == merkle.inclusion_proof_length(index, size) <= math.ceil(math.log2(size))
        assert nodes.reads <= bound, (index, nodes.reads)
    for old in (1, 2, 3, 1000, size // 2 + 1, size - 1):
        nodes = CountingNodes(size)
        proof = consistency_proof(old, size, nodes)
        assert len(proof) == merkle.consistency_proof_length(old, size)
        assert nodes.reads <= bound, (old, nodes.reads)
    nodes = CountingNodes(size)
    tree_root(size, nodes)
    assert nodes.reads <= math.ceil(math.log2(size))


def test_proofs_from_a_node_source_equal_those_from_the_whole_list() -> None:
    size = 1000
    tree = _tree(size)
    data = _data(size)
    for index in (0, 511, 512, 999):
        assert inclusion_proof(index, size, tree.node) == ref_path(index, data)
    for old in (1, 511, 512, 513, 999):
        assert consistency_proof(old, size, tree.node) == ref_subproof(old, data, True)
    assert root_hash(tree.node(0, i) for i in range(size)) == ref_mth(data) == tree.root()
