"""The column-wise removal finders against their plain per-row definitions, on random rows
with nulls, blanks and case / whitespace variants (thousands of rows, many md5 groups)."""

from __future__ import annotations

import random

import pyarrow as pa

from treeoflife.dedup.removals import find_held_out_species, find_in_train_duplicates


def _keys(rng: random.Random, n: int) -> list[str]:
    return list(dict.fromkeys(f"k{rng.randrange(10**9):09d}" for _ in range(n)))


def test_md5_groups_keep_the_smallest_key_and_name_it():
    rng = random.Random(11)
    keys = _keys(rng, 4000)
    md5 = [rng.choice([None, f"m{rng.randrange(900)}"]) for _ in keys]
    got = find_in_train_duplicates(pa.table({"key": keys, "md5": pa.array(md5, pa.string())}))
    first: dict[str, str] = {}
    expect = {}
    for k, m in sorted(zip(keys, md5, strict=True)):
        if m is None:
            continue
        if m in first:
            expect[k] = first[m]
        else:
            first[m] = k
    assert dict(zip(got["key"].to_pylist(), got["eval_key"].to_pylist(), strict=True)) == expect
    assert got["key"].to_pylist() == sorted(expect)
    assert set(got["distance"].to_pylist()) <= {0}


def test_held_out_species_match_normalised_and_never_on_a_null_part():
    rng = random.Random(12)
    names = ["Vulpes", "vulpes ", " VULPES", None, "", "Canis", "lupus"]
    keys = _keys(rng, 3000)
    train = pa.table(
        {"key": keys}
        | {p: pa.array([rng.choice(names) for _ in keys]) for p in ("kingdom", "genus", "species")}
    )
    held = pa.table(
        {"kingdom": ["VULPES", None, "canis"], "genus": ["vulpes", "Canis", ""],
         "species": ["Lupus", "lupus", "lupus"]}
    )  # fmt: skip

    def norm(v):
        v = (v or "").strip().lower()
        return v or None

    wanted = {("vulpes", "vulpes", "lupus")}  # the other two rows have a null part
    expect = sorted(
        r["key"]
        for r in train.to_pylist()
        if (norm(r["kingdom"]), norm(r["genus"]), norm(r["species"])) in wanted
    )
    got = find_held_out_species(train, held, "rare")
    assert got["key"].to_pylist() == expect and expect
    assert set(got["evalset"].to_pylist()) == {"rare"}
