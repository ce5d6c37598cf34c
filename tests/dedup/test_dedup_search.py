from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from treeoflife.dedup import find_in_train_duplicates, search

U64 = np.uint64


def flip(h: int, bits: list[int]) -> int:
    for b in bits:
        h ^= 1 << b
    return h


def test_wide_blocks_chunked_evals_equal_bruteforce_with_planted_pairs(monkeypatch):
    """The 10M configuration (3 blocks of ~21 bits, radius 3) on a small scale, with the eval
    side split into many chunks: every planted pair within d found, none beyond, no extras."""
    monkeypatch.setattr(search, "_MAX_EXPANSION", 50_000)  # ~28 evals per chunk
    rng = np.random.default_rng(7)
    train = rng.integers(0, 2**64, 20_000, dtype=U64)
    evals = rng.integers(0, 2**64, 600, dtype=U64)
    plants = []
    for i, t in enumerate(rng.choice(len(train), 26, replace=False).tolist()):
        k, e = i // 2, int(rng.integers(len(evals)))
        train[t] = U64(flip(int(evals[e]), rng.choice(64, k, replace=False).tolist()))
        plants.append((t, e, k))
    expected = search.near_pairs_bruteforce(train, evals, 10)
    got = search.near_pairs(train, evals, 10, n_blocks=3)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))
    found = set(zip(got[0].tolist(), got[1].tolist(), strict=True))
    for t, e, k in plants:
        assert ((t, e) in found) == (k <= 10), (t, e, k)


def test_choose_blocks_follows_scale():
    assert search.choose_blocks(10_000_000, 30_000, 10) == 3
    assert search.choose_blocks(10_000_000, 30_000, 8) == 3
    assert search.choose_blocks(100_000, 30_000, 10) > 3  # expansion dominates when N is small


def test_near_leaders_no_chaining():
    """a ~ b (4 bits), b ~ c (4 bits), a !~ c (8 bits) at d = 5: c stays a leader."""
    a = 0
    b = flip(a, [0, 1, 2, 3])
    c = flip(b, [10, 11, 12, 13])
    d = flip(a, [20])
    leader, dist = search.near_leaders(np.array([a, b, c, d], U64), 5)
    assert leader.tolist() == [0, 0, 2, 0]
    assert dist.tolist() == [0, 4, 0, 1]


def train_table(keys, md5s, phashes):
    return pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "md5": pa.array(md5s, pa.string()),
            "phash": pa.array(phashes, pa.uint64()),
        }
    )


def test_in_train_near_duplicates_keep_smallest_key_and_record_distance():
    base = 0x0123_4567_89AB_CDEF
    rows = {
        "k3": ("m3", flip(base, [5, 9])),  # near k1 (2 bits)
        "k1": ("m1", base),
        "k2": ("m1", base),  # md5 copy of k1
        "k5": ("m5", flip(base, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])),  # far: kept
        "k4": ("m4", None),  # no phash: only md5 can match it
        "k6": ("m3", flip(base, [5, 9])),  # md5 copy of k3, which is itself near k1
    }
    keys = list(rows)
    table = train_table(keys, [rows[k][0] for k in keys], [rows[k][1] for k in keys])
    exact_only = find_in_train_duplicates(table).to_pylist()
    assert [(r["key"], r["eval_key"], r["distance"]) for r in exact_only] == [
        ("k2", "k1", 0),
        ("k6", "k3", 0),
    ]
    near = find_in_train_duplicates(table, phash_max_distance=4).to_pylist()
    assert [(r["key"], r["reason"], r["eval_key"], r["distance"]) for r in near] == [
        ("k2", "in_train_duplicate", "k1", 0),
        ("k3", "in_train_duplicate", "k1", 2),
        ("k6", "in_train_duplicate", "k1", 2),
    ]
    # Deterministic: the input order does not matter.
    shuffled = table.take(pa.array([5, 4, 3, 2, 1, 0]))
    assert find_in_train_duplicates(shuffled, phash_max_distance=4).to_pylist() == near


@pytest.mark.parametrize("d", [0, 3, 6])
def test_in_train_groups_every_member_within_d_of_its_kept_row(d):
    rng = np.random.default_rng(d)
    seeds = rng.integers(0, 2**64, 40, dtype=U64)
    hashes = []
    for s in seeds.tolist():
        for _ in range(5):
            hashes.append(flip(s, rng.choice(64, int(rng.integers(0, 5)), replace=False).tolist()))
    keys = [f"k{i:04d}" for i in range(len(hashes))]
    table = train_table(keys, [f"m{i}" for i in range(len(keys))], hashes)
    removed = find_in_train_duplicates(table, phash_max_distance=d).to_pylist()
    by_key = dict(zip(keys, hashes, strict=True))
    gone = {r["key"] for r in removed}
    for r in removed:
        assert r["eval_key"] not in gone  # points at a kept row
        assert r["eval_key"] < r["key"]
        assert (by_key[r["key"]] ^ by_key[r["eval_key"]]).bit_count() == r["distance"] <= d
    kept = [h for k, h in by_key.items() if k not in gone]
    for i, a in enumerate(kept):  # two kept rows are never within d (leader clustering)
        for b in kept[i + 1 :]:
            assert (a ^ b).bit_count() > d or d == 0
