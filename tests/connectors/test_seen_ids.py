"""The seen-ids hash table behind the gateway readers' duplicate check."""

from __future__ import annotations

import numpy as np

from connectors.seen_ids import SeenIds


def test_finds_every_pair_added_across_growth_and_nothing_else() -> None:
    rng = np.random.default_rng(7)
    seen = SeenIds()
    added_h1, added_h2 = [], []
    for batch in range(12):  # 12 x 20 k pairs: the table doubles from 65 k slots three times
        h1 = rng.integers(0, 2**64, 20_000, dtype=np.uint64)
        h2 = rng.integers(0, 2**64, 20_000, dtype=np.uint64)
        assert (seen.find(h1, h2) == -1).all()
        seen.add(h1, h2, batch, np.arange(1, 20_001, dtype=np.uint32))
        added_h1.append(h1)
        added_h2.append(h2)
    h1, h2 = np.concatenate(added_h1), np.concatenate(added_h2)
    entries = seen.find(h1, h2)
    assert len(seen) == 240_000 and (entries == np.arange(240_000)).all()
    _, _, file, line = seen.where(entries[[0, 20_000, 239_999]])
    assert file.tolist() == [0, 1, 11] and line.tolist() == [1, 1, 20_000]


def test_a_pair_matches_on_both_hashes() -> None:
    seen = SeenIds()
    h1 = np.array([5, 5 + 2**16, 9], np.uint64)  # 5 and 5 + 2**16 share a slot at first
    seen.add(h1, np.array([1, 2, 3], np.uint64), 0, np.array([10, 11, 12], np.uint32))
    # Same first hash, other second hash: not seen. Both collide in the table and are found.
    found = seen.find(np.array([5, 5, 5 + 2**16, 9, 7], np.uint64),
                      np.array([1, 2, 2, 4, 1], np.uint64))
    assert found.tolist() == [0, -1, 1, -1, -1]
    assert SeenIds().find(h1, h1).tolist() == [-1, -1, -1]
