"""Merkle trees exactly as RFC 9162 §2: tree hash, inclusion proofs, consistency proofs.

One implementation of the maths, used by the server to build the receipt log and by an auditor to
check it offline (no Django here, as for ``tracemem_verify.chain``).

* leaf hash ``SHA-256(0x00 || leaf)``, node hash ``SHA-256(0x01 || left || right)``;
* ``MTH({}) = SHA-256("")``; a list of ``n > 1`` leaves splits at ``k``, the largest power of two
  smaller than ``n`` (§2.1.1), so any size works, powers of two or not;
* inclusion proofs (§2.1.3) and consistency proofs (§2.1.4) are lists of 32-byte hashes, ordered
  from the leaf (or the old tree) upwards, as the RFC's ``PATH`` and ``SUBPROOF`` produce them.

Generating a proof reads **perfect subtree hashes** through a *node source*, a callable
``nodes(level, index) -> bytes`` returning the hash of the ``2**level`` leaves that start at
``index * 2**level`` (level 0 = the leaf hashes). Those nodes never change once the log has grown
past them, so a server may store them (a ``(level, index) -> hash`` table filled as leaves are
appended, as :class:`MemoryTree` does in memory), cache them, or recompute them from the leaves.
A proof in a tree of ``n`` leaves needs at most ``⌈log2 n⌉`` sibling hashes, every one of them a
perfect subtree except at most one (the first sibling to the right of the path), which is folded
from at most ``⌈log2 n⌉`` perfect subtrees: at most ``2⌈log2 n⌉`` node reads and as many
SHA-256 computations per proof (40 for a million leaves), whatever the store behind the source.
The source is never asked for a node outside the tree size the proof is for.

Verification follows the RFC's algorithms (§2.1.3.2 and §2.1.4.2) after checking the proof's
shape, so a bad proof fails with a message saying what is wrong: :class:`MalformedProof` (index out
of range, wrong number of hashes, a hash that is not 32 bytes, sizes that do not allow a proof) or
:class:`RootMismatch` (well formed, but the hashes do not lead to the expected root).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeSource = Callable[[int, int], bytes]
"""``nodes(level, index)``: the hash of the perfect subtree of ``2**level`` leaves at ``index``."""


class MerkleError(ValueError):
    """Arguments that do not describe a tree operation (e.g. a leaf index beyond the tree)."""


class InvalidProof(MerkleError):
    """A proof that does not verify."""


class MalformedProof(InvalidProof):
    """The proof cannot be right whatever its hashes: wrong size, wrong length, index out of range."""


class RootMismatch(InvalidProof):
    """The proof is well formed but its hashes do not lead to the expected root."""


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def short(value: bytes) -> str:
    """A hash as messages show it: the first 12 characters of its base64."""
    return base64.b64encode(value).decode("ascii")[:12] + "…"


def _split(n: int) -> int:
    """``k`` of RFC 9162 §2.1.1: the largest power of two smaller than ``n`` (``n > 1``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_perfect(start: int, end: int) -> bool:
    size = end - start
    return size & (size - 1) == 0 and start % size == 0


def root_hash(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH of a whole list of leaf hashes: one pass, ``n - 1`` node hashes, ``log2 n`` memory."""
    stack: list[tuple[int, bytes]] = []  # perfect subtrees (height, hash), largest first
    for value in leaf_hashes:
        height, node = 0, value
        while stack and stack[-1][0] == height:
            node = node_hash(stack.pop()[1], node)
            height += 1
        stack.append((height, node))
    if not stack:
        return EMPTY_ROOT
    root = stack.pop()[1]
    while stack:
        root = node_hash(stack.pop()[1], root)
    return root


def subtree_hash(nodes: NodeSource, start: int, end: int) -> bytes:
    """MTH(D[start:end]) read from a node source (``start < end``).

    A perfect aligned range is one read; any other range splits as §2.1.1 says. The ranges a
    proof needs are perfect or end at the tree size, which costs at most ``log2`` reads.
    """
    if not 0 <= start < end:
        raise MerkleError(f"the leaf range [{start}, {end}) is empty or negative")
    if _is_perfect(start, end):
        height = (end - start).bit_length() - 1
        return nodes(height, start >> height)
    k = _split(end - start)
    return node_hash(subtree_hash(nodes, start, start + k), subtree_hash(nodes, start + k, end))


def tree_root(size: int, nodes: NodeSource) -> bytes:
    """MTH of the first ``size`` leaves (``EMPTY_ROOT`` for 0)."""
    if size < 0:
        raise MerkleError(f"a tree size cannot be negative (got {size})")
    return EMPTY_ROOT if size == 0 else subtree_hash(nodes, 0, size)


def inclusion_proof(index: int, size: int, nodes: NodeSource) -> list[bytes]:
    """``PATH(index, D[size])`` of RFC 9162 §2.1.3.1: sibling hashes from the leaf up."""
    if not 0 <= index < size:
        raise MerkleError(f"leaf index {index} is out of range for a tree of size {size}")
    siblings = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            siblings.append(subtree_hash(nodes, start + k, end))
            end = start + k
        else:
            siblings.append(subtree_hash(nodes, start, start + k))
            start += k
    siblings.reverse()
    return siblings


def consistency_proof(old_size: int, new_size: int, nodes: NodeSource) -> list[bytes]:
    """``PROOF(old_size, D[new_size])`` of RFC 9162 §2.1.4.1 (empty when the sizes are equal or 0)."""
    if not 0 <= old_size <= new_size:
        raise MerkleError(f"no consistency proof from tree size {old_size} to tree size {new_size}")
    if old_size in (0, new_size):
        return []
    proof = []
    m, start, end, whole = old_size, 0, new_size, True  # ``whole`` is SUBPROOF's flag b
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(subtree_hash(nodes, start + k, end))
            end = start + k
        else:
            proof.append(subtree_hash(nodes, start, start + k))
            start, m, whole = start + k, m - k, False
    if not whole:
        proof.append(subtree_hash(nodes, start, end))
    proof.reverse()
    return proof


def inclusion_proof_length(index: int, size: int) -> int:
    """How many hashes the audit path of leaf ``index`` in a tree of ``size`` has."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def consistency_proof_length(old_size: int, new_size: int) -> int:
    """How many hashes a consistency proof has, for ``0 < old_size < new_size``."""
    shift = (old_size & -old_size).bit_length() - 1  # trailing zero bits of old_size
    fork = ((old_size - 1) ^ (new_size - 1)).bit_length()
    border = ((old_size - 1) >> fork).bit_count()
    seed = 0 if old_size == 1 << shift else 1  # the old root itself is not sent when it is perfect
    return seed + (fork - shift) + border


def _check_hashes(hashes: Sequence[bytes], what: str) -> None:
    for position, value in enumerate(hashes):
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            length = len(value) if isinstance(value, bytes) else type(value).__name__
            raise MalformedProof(f"{what} hash {position} is {length} bytes; a SHA-256 hash has {HASH_SIZE}")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root an audit path leads to (RFC 9162 §2.1.3.2 steps 1-4); raises MalformedProof."""
    if not 0 <= index < size:
        raise MalformedProof(f"leaf index {index} is out of range for a tree of size {size}")
    if not isinstance(leaf, bytes) or len(leaf) != HASH_SIZE:
        raise MalformedProof(f"the leaf hash must be {HASH_SIZE} bytes")
    expected = inclusion_proof_length(index, size)
    if len(proof) != expected:
        raise MalformedProof(
            f"the audit path has {len(proof)} hashes; leaf {index} of a tree of size {size} needs {expected}"
        )
    _check_hashes(proof, "audit path")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:  # cannot happen once the length is right; the RFC checks it, so do we
        raise MalformedProof(f"the audit path is too short for a tree of size {size}")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf`` (a leaf hash) is leaf ``index`` of the tree of ``size`` with ``root``."""
    computed = root_from_inclusion_proof(index, size, leaf, proof)
    if computed != root:
        raise RootMismatch(
            f"the audit path of leaf {index} leads to root {short(computed)}, not to the root "
            f"{short(root)} of the tree of size {size}"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``new_size`` with ``new_root`` extends the one of ``old_size``.

    RFC 9162 §2.1.4.2. Sizes that are equal need an empty proof and equal roots. A proof from the
    empty tree is refused (the RFC defines proofs for ``0 < old_size``, and such a proof would
    prove nothing: every tree extends the empty one).
    """
    if old_size < 0 or new_size < old_size:
        raise MalformedProof(f"the old tree size {old_size} is larger than the new tree size {new_size}")
    if old_size == 0:
        raise MalformedProof("a consistency proof from the empty tree (size 0) proves nothing")
    if old_size == new_size:
        if proof:
            raise MalformedProof(
                f"two trees of size {old_size} need an empty consistency proof, not {len(proof)} hashes"
            )
        if old_root != new_root:
            raise RootMismatch(
                f"two different roots for tree size {old_size}: {short(old_root)} and {short(new_root)}"
            )
        return
    expected = consistency_proof_length(old_size, new_size)
    if len(proof) != expected:
        raise MalformedProof(
            f"the consistency proof has {len(proof)} hashes; from tree size {old_size} to {new_size} "
            f"it needs {expected}"
        )
    _check_hashes(proof, "consistency proof")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise MalformedProof(f"the consistency proof is too short for a tree of size {new_size}")
    if fr != old_root:
        raise RootMismatch(
            f"the proof does not contain the old tree: it leads to root {short(fr)} for size {old_size}, "
            f"not {short(old_root)}"
        )
    if sr != new_root:
        raise RootMismatch(f"the proof leads to root {short(sr)} for size {new_size}, not {short(new_root)}")


class MemoryTree:
    """An append-only tree holding every perfect subtree hash in memory: a node source for proofs.

    About ``2n`` hashes for ``n`` leaves (a million leaves: 2 million 32-byte hashes, ~190 MB
    resident in CPython, built in ~1 s; ``python -m bench merkle``). ``append_*`` is amortised
    O(1) hashing; ``root``/``inclusion_proof``/``consistency_proof`` are O(log n). A server that keeps the same ``(level, index) -> hash``
    nodes in its database calls the module functions with its own node source instead.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for value in leaf_hashes:
            self.append_hash(value)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append_leaf(self, leaf: bytes) -> int:
        """Append a leaf (its data, hashed here); returns its index."""
        return self.append_hash(leaf_hash(leaf))

    def append_hash(self, value: bytes) -> int:
        """Append a leaf by its leaf hash; returns its index."""
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise MerkleError(f"a leaf hash has {HASH_SIZE} bytes")
        index = len(self._levels[0])
        self._levels[0].append(value)
        height, position = 0, index
        while position & 1:  # a right child completed its parent
            parent = node_hash(self._levels[height][position - 1], value)
            height, position, value = height + 1, position >> 1, parent
            if len(self._levels) == height:
                self._levels.append([])
            self._levels[height].append(parent)
        return index

    def node(self, level: int, index: int) -> bytes:
        """The node source: hash of the perfect subtree at ``(level, index)``."""
        if level < 0 or index < 0 or level >= len(self._levels) or index >= len(self._levels[level]):
            raise MerkleError(
                f"no complete subtree at level {level}, index {index} in a tree of size {self.size}"
            )
        return self._levels[level][index]

    def _size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise MerkleError(f"tree size {size} is beyond the {self.size} leaves appended")
        return size

    def root(self, size: int | None = None) -> bytes:
        return tree_root(self._size(size), self.node)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, self._size(size), self.node)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        return consistency_proof(old_size, self._size(new_size), self.node)
