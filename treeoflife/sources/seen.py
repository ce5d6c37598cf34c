"""A compact set of the keys seen so far, for duplicate detection over millions of rows.

A Python set of 6.6M key strings costs ~700 MB; this keeps 64-bit hashes of the keys in an
open-addressing table of unsigned 64-bit integers (16-32 bytes per key at most, no object per
key). Two distinct keys sharing a 64-bit hash (probability ~n^2/2^65: ~1e-6 for 6.6M keys) would
make the second one a duplicate; the hash is stable across runs, so such a row would be
recorded the same way every time.
"""

from __future__ import annotations

from array import array

from treeoflife.io import stable_hash64


class SeenKeys:
    """`duplicate_of(key)`: None the first time a key is seen, else `key#dup<n>` (n-th repeat)."""

    def __init__(self, capacity: int = 1 << 16):
        size = 1
        while size < capacity:
            size <<= 1
        self._table = array("Q", bytes(8 * size))
        self._mask = size - 1
        self._count = 0
        self._repeats: dict[str, int] = {}  # only keys seen more than once (rare)

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        return len(self._table) * 8

    def _slot(self, table: array, mask: int, h: int) -> tuple[int, bool]:
        i = h & mask
        while True:
            v = table[i]
            if v == 0:
                return i, False
            if v == h:
                return i, True
            i = (i + 1) & mask

    def add(self, key: str) -> bool:
        """Insert `key`; True when it was already present."""
        h = stable_hash64(key) or 1  # 0 marks an empty slot
        i, found = self._slot(self._table, self._mask, h)
        if found:
            return True
        self._table[i] = h
        self._count += 1
        if self._count * 2 > len(self._table):
            self._grow()
        return False

    def _grow(self) -> None:
        old = self._table
        table = array("Q", bytes(16 * len(old)))
        mask = len(table) - 1
        for h in old:
            if h:
                i, _ = self._slot(table, mask, h)
                table[i] = h
        self._table, self._mask = table, mask

    def duplicate_of(self, key: str) -> str | None:
        if not self.add(key):
            return None
        n = self._repeats.get(key, 0) + 1
        self._repeats[key] = n
        return f"{key}#dup{n}"
