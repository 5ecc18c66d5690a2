"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing, proofs and their checks.

SHA-256 comes from ``hashlib``; what is here is the tree arithmetic of RFC 9162
§2.1: distinct leaf (0x00) and node (0x01) prefixes, the largest-power-of-two split,
inclusion paths (§2.1.3) and consistency proofs (§2.1.4), and the verification
algorithms of §2.1.3.2 and §2.1.4.2 exactly as the RFC writes them. Tests check the
results against the RFC 6962 reference vectors and an independent implementation
(pymerkle).

Proof generation asks a ``SubtreeSource`` for the hash of any perfect, aligned
subtree, so the same code serves an in-memory list and the tiled store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable, Sequence

HASH_SIZE = 32
_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = _sha256(b"").digest()


def split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_root(hashes: Sequence[bytes]) -> bytes:
    """The root of a perfect subtree given its 2^k bottom hashes."""
    level = list(hashes)
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes (any length)."""
    frontier = Frontier()
    for h in leaf_hashes:
        frontier.append(h)
    return frontier.root()


class Frontier:
    """The right edge of a growing tree: one perfect subtree per set bit of its size.

    Appending is amortised one node hash per leaf; the root folds the subtrees from
    the right, which equals RFC 9162's MTH for the same leaves.
    """

    __slots__ = ("_hashes", "_heights", "size")

    def __init__(self) -> None:
        self._hashes: list[bytes] = []
        self._heights: list[int] = []
        self.size = 0

    def append(self, h: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; return the perfect subtrees it completed as (height, index, hash)."""
        self._hashes.append(h)
        self._heights.append(0)
        self.size += 1
        return self._merge([])

    def append_subtree(self, height: int, h: bytes) -> list[tuple[int, int, bytes]]:
        """Add the root of a perfect subtree of ``2**height`` leaves (the tree's size must
        be a multiple of that); return every perfect subtree now complete, this one
        first, as (height, index, hash). The same tree as appending its leaves one by
        one, without the per-leaf bookkeeping."""
        if self.size % (1 << height):
            raise ValueError(f"a subtree of height {height} cannot start at leaf {self.size}")
        self._hashes.append(h)
        self._heights.append(height)
        self.size += 1 << height
        return self._merge([(height, (self.size >> height) - 1, h)])

    def _merge(self, done: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
        """Join the two rightmost subtrees while they are of one height; add each joined
        one to ``done``."""
        hashes, heights, size = self._hashes, self._heights, self.size
        while len(heights) > 1 and heights[-1] == heights[-2]:
            right = hashes.pop()
            height = heights.pop() + 1
            hashes[-1] = node_hash(hashes[-1], right)
            heights[-1] = height
            done.append((height, (size >> height) - 1, hashes[-1]))
        return done

    @classmethod
    def restore(cls, size: int, subtrees: Sequence[tuple[int, bytes]]) -> Frontier:
        """A frontier from its perfect subtrees (height, hash), left to right."""
        f = cls()
        f._heights = [h for h, _ in subtrees]
        f._hashes = [x for _, x in subtrees]
        f.size = size
        return f

    def root(self) -> bytes:
        if not self._hashes:
            return EMPTY_ROOT
        acc = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            acc = node_hash(h, acc)
        return acc


# The hash of the perfect subtree of height h at index k (leaves [k*2^h, (k+1)*2^h)).
SubtreeSource = Callable[[int, int], Awaitable[bytes]]


async def range_hash(source: SubtreeSource, start: int, end: int) -> bytes:
    """MTH(D[start:end]) where ``start`` is aligned as RFC 9162's recursion leaves it."""
    n = end - start
    if n & (n - 1) == 0 and start % n == 0:
        return await source(n.bit_length() - 1, start // n)
    k = split(n)
    return node_hash(
        await range_hash(source, start, start + k), await range_hash(source, start + k, end)
    )


async def inclusion_path(source: SubtreeSource, index: int, size: int) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1, leaf-side first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = split(end - start)
        if index < start + k:
            path.append(await range_hash(source, start + k, end))
            end = start + k
        else:
            path.append(await range_hash(source, start, start + k))
            start += k
    path.reverse()
    return path


async def consistency_path(source: SubtreeSource, old: int, new: int) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1."""
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof from size {old} to {new}")
    proof: list[bytes] = []
    start, end, whole = 0, new, True  # ``whole``: still on the old tree's left edge
    while old != end:
        k = split(end - start)
        if old <= start + k:
            proof.append(await range_hash(source, start + k, end))
            end = start + k
        else:
            proof.append(await range_hash(source, start, start + k))
            start += k
            whole = False
    if not whole:
        proof.append(await range_hash(source, start, end))
    proof.reverse()
    return proof


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old: int, new: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> bool:
    """RFC 9162 §2.1.4.2."""
    if old > new or old == 0:
        return False
    if old == new:
        return not proof and old_root == new_root
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


def list_source(leaves: Sequence[bytes]) -> SubtreeSource:
    """A ``SubtreeSource`` over an in-memory list of leaf hashes (tests, small trees)."""

    async def source(height: int, index: int) -> bytes:
        width = 1 << height
        return perfect_root(leaves[index * width : (index + 1) * width])

    return source


def hashes_from(items: Iterable[bytes]) -> list[bytes]:
    return [leaf_hash(i) for i in items]
