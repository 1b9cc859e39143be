"""The request ids a reader has already seen, for a day of tens of millions of them.

An id is kept as a pair of 64-bit hashes (two seeds: a false match needs both to collide)
with the file and line of its first copy. The pairs sit in an open-addressing hash table
(linear probing) held in numpy arrays, so looking up a batch or adding one costs the
batch's size, whatever the day has seen before. The join it replaces probed every id seen
so far on every batch: 4.1 CPU s for a day of 10 M requests, 31.5 for 30 M (the square of
the day). Nothing is ever removed, so a lookup may stop at the first empty slot.
"""

from __future__ import annotations

import numpy as np

_FIRST_SLOTS = 1 << 16  # a power of two; made four times larger whenever it gets half full


class SeenIds:
    """(h1, h2) pairs with where each was first seen: file number and line."""

    def __init__(self) -> None:
        self._slots = np.zeros(_FIRST_SLOTS, np.uint32)  # entry number + 1; 0 is empty
        self._n = 0
        self._h1 = np.empty(0, np.uint64)
        self._h2 = np.empty(0, np.uint64)
        self._file = np.empty(0, np.uint32)
        self._line = np.empty(0, np.uint32)

    def __len__(self) -> int:
        return self._n

    def find(self, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
        """The entry of each pair seen before, -1 for a pair never added."""
        found = np.full(h1.size, -1, np.int64)
        if not self._n:
            return found
        mask = self._slots.size - 1
        slot = (h1 & np.uint64(mask)).astype(np.int64)
        todo = np.arange(h1.size)
        while todo.size:
            entry = self._slots[slot[todo]].astype(np.int64) - 1
            occupied = entry >= 0  # an empty slot ends the search: never seen
            todo, entry = todo[occupied], entry[occupied]
            hit = (self._h1[entry] == h1[todo]) & (self._h2[entry] == h2[todo])
            found[todo[hit]] = entry[hit]
            todo = todo[~hit]
            slot[todo] = (slot[todo] + 1) & mask
        return found

    def where(self, entries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """h1, h2, file and line of these entries."""
        return self._h1[entries], self._h2[entries], self._file[entries], self._line[entries]

    def add(self, h1: np.ndarray, h2: np.ndarray, file: int, line: np.ndarray) -> None:
        """Record pairs not seen before (the first copies of a batch), first seen in file
        number `file` at these lines."""
        new = h1.size
        if not new:
            return
        self._reserve(self._n + new)
        ids = np.arange(self._n, self._n + new)
        self._h1[ids], self._h2[ids] = h1, h2
        self._file[ids], self._line[ids] = file, line
        self._n += new
        if self._n * 2 > self._slots.size:
            size = self._slots.size
            while self._n * 2 > size:
                size *= 4
            self._rebuild(size)
        else:
            self._place(ids)

    def _reserve(self, n: int) -> None:
        if n <= self._h1.size:
            return
        size = max(n, 2 * self._h1.size, _FIRST_SLOTS)
        for name in ("_h1", "_h2", "_file", "_line"):
            old = getattr(self, name)
            grown = np.empty(size, old.dtype)
            grown[: self._n] = old[: self._n]
            setattr(self, name, grown)

    def _rebuild(self, size: int) -> None:
        """A table of `size` slots with every entry in it. In order of home slot, each entry
        takes its home or the slot after the one placed before it: linear probing's result,
        from one sort instead of a probe per entry (10 M requests' rebuilds: 2.5 -> 0.6-1.1 CPU s)."""
        self._slots = np.zeros(size, np.uint32)
        home = (self._h1[: self._n] & np.uint64(size - 1)).astype(np.int64)
        order = np.sort((home << 32) | np.arange(self._n, dtype=np.int64))
        home, ids = order >> 32, order & 0xFFFFFFFF
        rank = np.arange(self._n, dtype=np.int64)
        at = np.maximum.accumulate(home - rank) + rank
        inside = at < size
        self._slots[at[inside]] = (ids[inside] + 1).astype(np.uint32)
        if not inside.all():  # the few pushed past the last slot wrap around to the first
            self._place(ids[~inside])

    def _place(self, ids: np.ndarray) -> None:
        """Put entries into the table: each at its hash's slot or the next free one after it.
        Entries racing for one free slot all write it; the one whose number stayed there has
        it, the others go on to the next slot."""
        mask = self._slots.size - 1
        slot = (self._h1[ids] & np.uint64(mask)).astype(np.int64)
        marks = (ids + 1).astype(np.uint32)
        todo = np.arange(ids.size)
        while todo.size:
            at = slot[todo]
            free = self._slots[at] == 0
            racing, at_free = todo[free], at[free]
            self._slots[at_free] = marks[racing]
            won = self._slots[at_free] == marks[racing]
            todo = np.concatenate([racing[~won], todo[~free]])
            slot[todo] = (slot[todo] + 1) & mask
