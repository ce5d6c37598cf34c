from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from treeoflife.dedup import (
    combine_removals,
    find_eval_duplicates,
    find_held_out_species,
    find_in_train_duplicates,
    removal_report,
    search,
)
from treeoflife.errors import InputError
from treeoflife.schemas import REMOVALS

U64 = np.uint64


def random_hashes(rng, n):
    return rng.integers(0, 2**63, n, dtype=np.int64).astype(U64) * U64(2) + rng.integers(
        0, 2, n
    ).astype(U64)


def flip_bits(rng, h, k):
    bits = rng.choice(64, size=k, replace=False)
    mask = 0
    for b in bits:
        mask |= 1 << int(b)
    return U64(int(h) ^ mask)


def planted(rng, n_train, n_eval, d):
    """Random hashes plus, for every k in 0..d+1, train items at distance exactly k of an eval."""
    train = random_hashes(rng, n_train)
    evals = random_hashes(rng, n_eval)
    plants = []
    targets = iter(rng.choice(n_train, size=3 * (d + 2), replace=False).tolist())
    for k in range(d + 2):
        for _ in range(3):
            t, e = next(targets), int(rng.integers(n_eval))
            train[t] = flip_bits(rng, evals[e], k)
            plants.append((t, e, k))
    return train, evals, plants


def as_set(pairs):
    return set(zip(*(p.tolist() for p in pairs), strict=True))


@pytest.mark.parametrize("d", [0, 1, 4, 8, 12])
def test_mih_equals_bruteforce_with_planted_pairs(d, monkeypatch):
    monkeypatch.setattr(search, "_MAX_EXPANSION", 200_000)  # small: evals go in chunks
    rng = np.random.default_rng(d)
    train, evals, plants = planted(rng, 3000, 400, d)
    expected = search.near_pairs_bruteforce(train, evals, d)
    found = as_set(expected)
    for t, e, k in plants:
        if k <= d:
            assert (t, e, k) in found
        else:
            assert (t, e) not in {(a, b) for a, b, _ in found}
    assert all(dist <= d for _, _, dist in found)
    for n_blocks in [None, *sorted({1, 2, 3, d + 1})]:
        ball = search.ball_size(search.block_layout(n_blocks or 1)[0][1], d // (n_blocks or 1))
        if n_blocks is not None and ball > search._MAX_EXPANSION:
            with pytest.raises(ValueError, match="more blocks"):
                search.near_pairs(train, evals, d, n_blocks=n_blocks)
            continue
        got = search.near_pairs(train, evals, d, n_blocks=n_blocks)
        assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True)), n_blocks


def test_mih_low_entropy_hashes_and_small_budget(monkeypatch):
    """Many identical hashes (flat images) blow up one bucket: the budget splits the work."""
    monkeypatch.setattr(search, "_MAX_CANDIDATES", 50)
    rng = np.random.default_rng(1)
    train = np.concatenate([np.zeros(200, U64), random_hashes(rng, 100)])
    evals = np.concatenate([np.zeros(30, U64), np.array([0b111], U64), random_hashes(rng, 20)])
    expected = search.near_pairs_bruteforce(train, evals, 4)
    assert len(expected[0]) >= 200 * 31
    for n_blocks in (None, 5, 2):
        got = search.near_pairs(train, evals, 4, n_blocks=n_blocks)
        assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


def test_choose_blocks_prefers_wide_blocks_at_scale():
    assert search.choose_blocks(10_000_000, 30_000, 8) < 9
    assert search.choose_blocks(10, 10, 0) == 1


def eval_table(rows):
    return pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("evalset", pa.string()),
                ("eval_key", pa.string()),
                ("md5", pa.string()),
                ("phash", pa.uint64()),
                ("status", pa.string()),
            ]
        ),
    )


def train_table(keys, md5s, phashes):
    return pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "md5": pa.array(md5s, pa.string()),
            "phash": pa.array(phashes, pa.uint64()),
        }
    )


def oracle_eval_duplicates(train: pa.Table, evals: pa.Table, d: int) -> list[dict]:
    """The rule written out row by row."""
    ok = sorted(
        (r for r in evals.to_pylist() if r["status"] == "ok"),
        key=lambda r: (r["evalset"], r["eval_key"]),
    )
    out = []
    for row in train.to_pylist():
        exact = [e for e in ok if row["md5"] is not None and e["md5"] == row["md5"]]
        if exact:
            e = exact[0]
            out.append(
                {
                    "key": row["key"],
                    "reason": "exact_eval_duplicate",
                    "evalset": e["evalset"],
                    "eval_key": e["eval_key"],
                    "distance": 0,
                }
            )
            continue
        if row["phash"] is None:
            continue
        near = [
            ((row["phash"] ^ e["phash"]).bit_count(), e["evalset"], e["eval_key"])
            for e in ok
            if e["phash"] is not None
        ]
        near = [n for n in near if n[0] <= d]
        if near:
            dist, evalset, eval_key = min(near)
            out.append(
                {
                    "key": row["key"],
                    "reason": "near_eval_duplicate",
                    "evalset": evalset,
                    "eval_key": eval_key,
                    "distance": dist,
                }
            )
    return sorted(out, key=lambda r: r["key"])


def random_tables(seed, d=8):
    rng = np.random.default_rng(seed)
    train_h, eval_h, _ = planted(rng, 1500, 200, d)
    eval_rows = []
    for j, h in enumerate(eval_h.tolist()):
        eval_rows.append(
            {
                "evalset": ["rare", "birds"][j % 2],
                "eval_key": f"img/{j:04d}.jpg",
                "md5": f"e{j:031d}",
                "phash": h,
                "status": "failed" if j % 17 == 0 else "ok",
            }
        )
    # Duplicate an eval hash under another set and key: ties go to (evalset, eval_key).
    eval_rows.append(dict(eval_rows[1], evalset="aaa", eval_key="z.jpg", md5="dup"))
    keys = [f"eol/{i:05d}_1" for i in range(len(train_h))]
    md5s = [f"t{i:031d}" for i in range(len(train_h))]
    phashes = train_h.tolist()
    for i in range(0, 60, 6):  # exact copies (md5) of eval images with unrelated phash
        md5s[i] = eval_rows[i]["md5"]
    phashes[5] = None  # no phash: only exact can match
    md5s[5] = eval_rows[3]["md5"]
    phashes[7] = None
    return train_table(keys, md5s, phashes), eval_table(eval_rows)


@pytest.mark.parametrize("seed", [0, 1])
def test_find_eval_duplicates_matches_oracle(seed):
    train, evals = random_tables(seed)
    got = find_eval_duplicates(train, evals, 8)
    assert got.schema.equals(REMOVALS)
    assert got.to_pylist() == oracle_eval_duplicates(train, evals, 8)
    reasons = set(got["reason"].to_pylist())
    assert reasons == {"exact_eval_duplicate", "near_eval_duplicate"}


def test_exact_md5_wins_over_closer_near_and_ties_by_evalset():
    evals = eval_table(
        [
            {"evalset": "zzz", "eval_key": "a.jpg", "md5": "m1", "phash": 2**40, "status": "ok"},
            {"evalset": "bbb", "eval_key": "b.jpg", "md5": "m2", "phash": 0b1, "status": "ok"},
            {"evalset": "aaa", "eval_key": "c.jpg", "md5": "m3", "phash": 0b1, "status": "ok"},
            {"evalset": "aaa", "eval_key": "b.jpg", "md5": "m4", "phash": 0b11, "status": "ok"},
            {"evalset": "aaa", "eval_key": "0.jpg", "md5": "m5", "phash": 0b0, "status": "failed"},
        ]
    )
    train = train_table(["k/exact", "k/near", "k/far"], ["m1", "x", "y"], [0b1, 0b0, 2**63 - 1])
    got = find_eval_duplicates(train, evals, 2).to_pylist()
    assert got == [
        {
            "key": "k/exact",
            "reason": "exact_eval_duplicate",
            "evalset": "zzz",
            "eval_key": "a.jpg",
            "distance": 0,
        },
        {
            "key": "k/near",
            "reason": "near_eval_duplicate",
            "evalset": "aaa",
            "eval_key": "c.jpg",
            "distance": 1,
        },
    ]


def test_find_eval_duplicates_is_deterministic_and_order_free():
    train, evals = random_tables(3)
    first = find_eval_duplicates(train, evals, 8)
    assert find_eval_duplicates(train, evals, 8).equals(first)
    perm_t = np.random.default_rng(0).permutation(train.num_rows)
    perm_e = np.random.default_rng(1).permutation(evals.num_rows)
    shuffled = find_eval_duplicates(train.take(perm_t), evals.take(perm_e), 8)
    assert shuffled.equals(first)


def test_find_eval_duplicates_empty_inputs():
    empty_train = train_table([], [], [])
    train, evals = random_tables(0)
    assert find_eval_duplicates(empty_train, evals, 8).num_rows == 0
    assert find_eval_duplicates(train, evals.slice(0, 0), 8).num_rows == 0
    with pytest.raises(ValueError):
        find_eval_duplicates(train, evals, -1)


def test_mixed_phash_algorithms_refused():
    train, evals = random_tables(0)
    train = train.append_column("phash_algo", pa.array(["dct64-v1"] * train.num_rows))
    assert find_eval_duplicates(train, evals, 4).num_rows > 0
    old = evals.append_column("phash_algo", pa.array(["dct64-v0"] * evals.num_rows))
    with pytest.raises(ValueError, match="dct64-v0"):
        find_eval_duplicates(train, old, 4)


def test_in_train_duplicates_keep_smallest_key():
    train = train_table(
        ["b", "a", "c", "d", "e", "f"], ["m1", "m1", "m2", "m1", None, None], [0] * 6
    )
    got = find_in_train_duplicates(train)
    assert got.schema.equals(REMOVALS)
    assert got.to_pylist() == [
        {
            "key": "b",
            "reason": "in_train_duplicate",
            "evalset": None,
            "eval_key": "a",
            "distance": 0,
        },
        {
            "key": "d",
            "reason": "in_train_duplicate",
            "evalset": None,
            "eval_key": "a",
            "distance": 0,
        },
    ]
    with pytest.raises(InputError, match="repeats a key"):
        find_in_train_duplicates(train_table(["a", "a"], ["m", "m"], [0, 0]))
    assert find_in_train_duplicates(train_table([], [], [])).num_rows == 0


def test_held_out_species_match_on_resolved_taxon():
    train = pa.table(
        {
            "key": ["k1", "k2", "k3", "k4", "k5", "k6", "k7"],
            "kingdom": [
                "Animalia",
                " animalia",
                "Plantae",
                "Animalia",
                "Animalia",
                None,
                "Animalia",
            ],
            "genus": ["Corvus", "CORVUS ", "Corvus", "Pica", "Corvus", "Corvus", "Corvus"],
            "species": ["corax", "Corax", "corax", "corax", None, "corax", "monedula"],
        }
    )
    held = pa.table(
        {
            "kingdom": ["Animalia", "Animalia"],
            "genus": ["corvus", "Pica"],
            "species": [" CORAX", None],
        }
    )
    got = find_held_out_species(train, held, "rare_species")
    assert got.schema.equals(REMOVALS)
    assert got["key"].to_pylist() == ["k1", "k2"]  # not Plantae, null species, other epithet
    assert set(got["reason"].to_pylist()) == {"held_out_species"}
    assert set(got["evalset"].to_pylist()) == {"rare_species"}
    assert got["eval_key"].null_count == 2


def removal(key, reason, evalset=None, eval_key=None, distance=None):
    return {
        "key": key,
        "reason": reason,
        "evalset": evalset,
        "eval_key": eval_key,
        "distance": distance,
    }


def test_combine_precedence_and_order():
    near = pa.Table.from_pylist(
        [
            removal("b", "near_eval_duplicate", "s", "x", 5),
            removal("a", "near_eval_duplicate", "s", "y", 3),
            removal("b", "near_eval_duplicate", "r", "z", 2),
        ],
        schema=REMOVALS,
    )
    exact = pa.Table.from_pylist(
        [removal("a", "exact_eval_duplicate", "t", "w", 0)], schema=REMOVALS
    )
    held = pa.Table.from_pylist(
        [removal("a", "held_out_species", "rare"), removal("c", "held_out_species", "rare")],
        schema=REMOVALS,
    )
    dup = pa.Table.from_pylist(
        [
            removal("c", "in_train_duplicate", None, "a", 0),
            removal("d", "in_train_duplicate", None, "a", 0),
        ],
        schema=REMOVALS,
    )
    got = combine_removals(dup, held, near, exact)
    assert got.schema.equals(REMOVALS)
    assert got.to_pylist() == [
        removal("a", "exact_eval_duplicate", "t", "w", 0),
        removal("b", "near_eval_duplicate", "r", "z", 2),
        removal("c", "held_out_species", "rare"),
        removal("d", "in_train_duplicate", None, "a", 0),
    ]
    assert combine_removals(exact, near, held, dup).equals(got)  # argument order irrelevant
    assert combine_removals().num_rows == 0
    bogus = pa.Table.from_pylist([removal("e", "because")], schema=REMOVALS)
    with pytest.raises(ValueError, match="because"):
        combine_removals(bogus)


def test_removal_report_counts():
    table = pa.Table.from_pylist(
        [
            removal("a", "exact_eval_duplicate", "rare", "x", 0),
            removal("b", "near_eval_duplicate", "rare", "y", 3),
            removal("c", "near_eval_duplicate", "birds", "z", 1),
            removal("d", "held_out_species", "rare"),
            removal("e", "in_train_duplicate", None, "a", 0),
        ],
        schema=REMOVALS,
    )
    report = removal_report(table)
    assert report["total"] == 5
    assert report["by_reason"] == {
        "exact_eval_duplicate": 1,
        "near_eval_duplicate": 2,
        "held_out_species": 1,
        "in_train_duplicate": 1,
    }
    assert report["by_evalset"] == {"birds": 1, "rare": 3}
    assert report["by_evalset_reason"]["rare"] == {
        "exact_eval_duplicate": 1,
        "held_out_species": 1,
        "near_eval_duplicate": 1,
    }
    assert removal_report(REMOVALS.empty_table())["total"] == 0
