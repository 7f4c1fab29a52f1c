"""Parcel key -> manifest row, for a batch of keys (numpy) or one live parcel.

A hash directory over the keys: rows are bucket-sorted by a multiplicative hash of their key,
``start[b]:start[b+1]`` holds bucket b. A batch lookup is a few vectorised probes (buckets hold
about one key each); a single lookup is a short scan in plain Python.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_MULT = np.uint64(0x9E3779B97F4A7C15)


class IdIndex:
    """Built once per manifest; duplicate keys must already be removed."""

    def __init__(self, keys: npt.NDArray[np.uint64]) -> None:
        n = len(keys)
        self.bits = max(4, int(np.ceil(np.log2(max(n, 1)))) + 1)
        self._shift = np.uint64(64 - self.bits)
        b = self._bucket(keys)
        self.order = np.argsort(b, kind="stable").astype(np.int64)
        self.sorted_keys = keys[self.order]
        counts = np.bincount(b, minlength=1 << self.bits)
        self.start = np.zeros((1 << self.bits) + 1, np.int64)
        np.cumsum(counts, out=self.start[1:])
        self._mult = int(_MULT)
        self._mask64 = (1 << 64) - 1

    def _bucket(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        with np.errstate(over="ignore"):
            return ((keys.astype(np.uint64) * _MULT) >> self._shift).astype(np.int64)

    def lookup(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Row of each key, -1 when absent. The first probe covers every key at once; only keys
        sharing a bucket with another (few) go round again."""
        keys = np.asarray(keys, dtype=np.uint64)
        b = self._bucket(keys)
        pos = np.take(self.start, b)
        end = np.take(self.start, b + 1)
        last = max(len(self.sorted_keys) - 1, 0)
        if len(self.sorted_keys) == 0:
            return np.full(len(keys), -1, np.int64)
        hit = (np.take(self.sorted_keys, np.minimum(pos, last)) == keys) & (pos < end)
        out = np.where(hit, np.take(self.order, np.minimum(pos, last)), -1)
        todo = np.flatnonzero(~hit & (pos + 1 < end))
        k = 1
        while len(todo):
            p = pos[todo] + k
            found = np.take(self.sorted_keys, p) == keys[todo]
            out[todo[found]] = np.take(self.order, p[found])
            todo = todo[~found]
            todo = todo[pos[todo] + k + 1 < end[todo]]
            k += 1
        return out

    def lookup_one(self, key: int) -> int:
        """Row of one key, -1 when absent."""
        b = ((key * self._mult) & self._mask64) >> (64 - self.bits)
        lo, hi = int(self.start[b]), int(self.start[b + 1])
        for p in range(lo, hi):
            if int(self.sorted_keys[p]) == key:
                return int(self.order[p])
        return -1
