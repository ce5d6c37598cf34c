"""Which training images to remove: copies of evaluation images, held-out species, duplicates.

Every function returns a REMOVALS table sorted by key; `combine_removals` merges them into one
row per key. Near-duplicate search uses multi-index hashing instead of comparing all pairs.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from treeoflife.dedup.search import near_leaders, near_pairs
from treeoflife.errors import InputError
from treeoflife.schemas import REMOVALS
from treeoflife.vocabulary import REMOVAL_PRECEDENCE, IngestStatus, Reason

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- tables


def _as_array(values, type_: pa.DataType) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values.cast(type_)
    return pa.array(values, type_)


def _removals_table(keys, reason, evalsets, eval_keys, distances) -> pa.Table:
    keys = _as_array(keys, pa.string())
    table = pa.table(
        {
            "key": keys,
            "reason": pa.array([reason] * len(keys), pa.string()),
            "evalset": _as_array(evalsets, pa.string()),
            "eval_key": _as_array(eval_keys, pa.string()),
            "distance": _as_array(distances, pa.int32()),
        },
        schema=REMOVALS,
    )
    return table.take(pc.sort_indices(table, sort_keys=[("key", "ascending")]))


def _empty_removals() -> pa.Table:
    return REMOVALS.empty_table()


def _usable_evals(evals: pa.Table) -> pa.Table:
    """Eval rows sorted by (evalset, eval_key): the tie-break order. Failed rows dropped."""
    if "status" in evals.column_names:
        evals = evals.filter(pc.equal(evals["status"], IngestStatus.OK))
    return evals.take(
        pc.sort_indices(evals, sort_keys=[("evalset", "ascending"), ("eval_key", "ascending")])
    )


def _check_same_algo(*tables: pa.Table) -> None:
    """Hashes of different pHash algorithms (PHASH_ALGO) must never be compared."""
    algos: set[str] = set()
    for table in tables:
        if "phash_algo" in table.column_names:
            algos |= {a for a in pc.unique(table["phash_algo"]).to_pylist() if a is not None}
    if len(algos) > 1:
        raise ValueError(f"perceptual hashes of different algorithms: {sorted(algos)}; rehash")


def find_eval_duplicates(train: pa.Table, evals: pa.Table, max_distance: int) -> pa.Table:
    """Training rows that copy an evaluation image: same md5, or pHash within max_distance.

    `train`: key, md5, phash. `evals`: evalset, eval_key, md5, phash (and status, if present:
    only "ok" rows count; phash_algo, if present, must agree). An exact md5 match wins
    (distance 0); otherwise the closest eval image is recorded, ties broken by
    (evalset, eval_key). Null hashes never match.
    """
    if max_distance < 0:
        raise ValueError("max_distance must be >= 0")
    _check_same_algo(train, evals)
    evals = _usable_evals(evals)
    ev_set = evals["evalset"].to_pylist()
    ev_key = evals["eval_key"].to_pylist()

    # Exact: the first eval row (in tie-break order) of each md5.
    first_by_md5: dict[str, int] = {}
    for i, md5 in enumerate(evals["md5"].to_pylist()):
        if md5 is not None and md5 not in first_by_md5:
            first_by_md5[md5] = i
    train_keys = train["key"]
    exact_mask = pc.fill_null(
        pc.is_in(train["md5"], value_set=pa.array(list(first_by_md5), pa.string())), False
    )
    exact = train.filter(exact_mask)
    exact_eval = [first_by_md5[m] for m in exact["md5"].to_pylist()]
    out_keys = exact["key"].to_pylist()
    out_reason = [Reason.EXACT_EVAL_DUPLICATE] * len(out_keys)
    out_set = [ev_set[i] for i in exact_eval]
    out_evkey = [ev_key[i] for i in exact_eval]
    out_dist = [0] * len(out_keys)

    # Near: the rest, by pHash.
    rest = train.filter(pc.and_(pc.invert(exact_mask), pc.is_valid(train["phash"])))
    ev_ok = pc.is_valid(evals["phash"]).to_numpy(zero_copy_only=False)
    ev_rows = np.nonzero(ev_ok)[0]
    ev_hash = evals["phash"].filter(pc.is_valid(evals["phash"])).to_numpy().astype(np.uint64)
    rest_hash = rest["phash"].to_numpy().astype(np.uint64)
    ti, ei, dist = near_pairs(rest_hash, ev_hash, max_distance)
    if len(ti):
        ev_rank = ev_rows[ei]  # position in (evalset, eval_key) order
        order = np.lexsort((ev_rank, dist, ti))
        ti, dist, ev_rank = ti[order], dist[order], ev_rank[order]
        first = np.ones(len(ti), dtype=bool)
        first[1:] = ti[1:] != ti[:-1]
        near_keys = rest["key"].take(pa.array(ti[first])).to_pylist()
        for k, d, e in zip(near_keys, dist[first], ev_rank[first], strict=True):
            out_keys.append(k)
            out_reason.append(Reason.NEAR_EVAL_DUPLICATE)
            out_set.append(ev_set[e])
            out_evkey.append(ev_key[e])
            out_dist.append(int(d))
    log.info(
        "eval duplicates: %d exact, %d near (d <= %d) among %d training rows vs %d eval images",
        len(exact_eval),
        len(out_keys) - len(exact_eval),
        max_distance,
        len(train_keys),
        len(evals),
    )
    table = pa.table(
        {
            "key": pa.array(out_keys, pa.string()),
            "reason": pa.array(out_reason, pa.string()),
            "evalset": pa.array(out_set, pa.string()),
            "eval_key": pa.array(out_evkey, pa.string()),
            "distance": pa.array(out_dist, pa.int32()),
        },
        schema=REMOVALS,
    )
    return table.take(pc.sort_indices(table, sort_keys=[("key", "ascending")]))


def find_in_train_duplicates(train: pa.Table, phash_max_distance: int | None = None) -> pa.Table:
    """Duplicate groups inside the training set: one image kept per group, the rest removed.

    Groups: same md5; with `phash_max_distance`, also pHash within that distance. Rows are
    taken in key order and each row joins the first kept row (smallest key) it duplicates:
    leader clustering, so every removed row is within the distance of the row it names and
    chains (a ~ b ~ c with a far from c) never merge unrelated images. Removed rows name the
    kept key in eval_key (evalset null, distance: 0 for an md5 copy, else the pHash distance).
    """
    if pc.count_distinct(train["key"]).as_py() != train.num_rows:
        raise InputError("find_in_train_duplicates: the training table repeats a key")
    if train.num_rows == 0:
        return _empty_removals()
    columns = ["key", "md5"] + (["phash"] if "phash" in train.column_names else [])
    rows = train.select(columns)
    rows = rows.take(pc.sort_indices(rows, sort_keys=[("key", "ascending")]))
    n = rows.num_rows
    # the first row (in key order) of each md5, column-wise: no Python object per row
    md5 = rows["md5"].combine_chunks().dictionary_encode()
    codes = md5.indices.to_numpy(zero_copy_only=False)
    valid = md5.indices.is_valid().to_numpy(zero_copy_only=False)
    leader = np.arange(n, dtype=np.int64)
    if valid.any():
        first = np.full(len(md5.dictionary), n, dtype=np.int64)
        np.minimum.at(first, codes[valid].astype(np.int64), np.nonzero(valid)[0])
        leader[valid] = first[codes[valid].astype(np.int64)]
    distance = np.zeros(n, dtype=np.int32)
    if phash_max_distance is not None and "phash" in rows.column_names:
        has_hash = rows["phash"].is_valid().to_numpy(zero_copy_only=False)
        reps = np.nonzero((leader == np.arange(n)) & has_hash)[0]
        hashes = rows["phash"].take(pa.array(reps)).to_numpy().astype(np.uint64)
        rep_leader, rep_dist = near_leaders(hashes, phash_max_distance)
        moved = rep_leader != np.arange(len(reps))
        leader_of_rep = leader.copy()
        leader_of_rep[reps[moved]] = reps[rep_leader[moved]]
        distance[reps[moved]] = rep_dist[moved]
        # md5 copies follow their representative (distance to the final kept row).
        follow = leader != np.arange(n)
        final = leader_of_rep[leader]
        distance[follow] = np.where(final[follow] == leader[follow], 0, distance[leader[follow]])
        leader = np.where(follow, final, leader_of_rep)
    removed = np.nonzero(leader != np.arange(n))[0]
    m = len(removed)
    keys = rows["key"]
    return _removals_table(
        keys.take(pa.array(removed)),
        Reason.IN_TRAIN_DUPLICATE,
        pa.nulls(m, pa.string()),
        keys.take(pa.array(leader[removed])),
        pa.array(distance[removed]),
    )


def _taxon_part(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Case- and whitespace-insensitive form of a name; blank -> null."""
    norm = pc.utf8_lower(pc.utf8_trim_whitespace(column))
    return pc.if_else(pc.equal(norm, ""), pa.scalar(None, pa.string()), norm)


def find_held_out_species(train: pa.Table, held_out: pa.Table, evalset: str) -> pa.Table:
    """Training rows of a species an evaluation set holds out (BioCLIP's Rare Species rule).

    Matches the resolved taxon (kingdom, genus, species epithet), compared after stripping
    whitespace and lower-casing; a row with any of the three null never matches.
    """
    parts = ("kingdom", "genus", "species")
    wanted = pa.table({p: _taxon_part(held_out[p]) for p in parts}).drop_null()
    if wanted.num_rows == 0:
        return _empty_removals()
    wanted = wanted.group_by(list(parts)).aggregate([])  # distinct (kingdom, genus, species)
    norm = pa.table({"key": train["key"], **{p: _taxon_part(train[p]) for p in parts}})
    # a semi join: column-wise, a row with a null part never matches (nulls are not equal)
    keys = norm.join(wanted, list(parts), join_type="left semi")["key"]
    n = len(keys)
    return _removals_table(
        keys,
        Reason.HELD_OUT_SPECIES,
        [evalset] * n,
        pa.nulls(n, pa.string()),
        pa.nulls(n, pa.int32()),
    )


def combine_removals(*tables: pa.Table) -> pa.Table:
    """One row per key, the strongest reason winning (REMOVAL_PRECEDENCE); sorted by key.

    Among rows of the same key and reason, the smallest (distance, evalset, eval_key) wins.
    """
    if not tables:
        return _empty_removals()
    table = pa.concat_tables([t.select(REMOVALS.names).cast(REMOVALS) for t in tables])
    unknown = set(pc.unique(table["reason"]).to_pylist()) - set(REMOVAL_PRECEDENCE)
    if unknown:
        raise ValueError(f"unknown removal reasons: {sorted(unknown)}")
    rank = pc.index_in(table["reason"], value_set=pa.array([r.value for r in REMOVAL_PRECEDENCE]))
    table = table.append_column("_rank", rank)
    order = pc.sort_indices(
        table,
        sort_keys=[
            ("key", "ascending", "at_end"),
            ("_rank", "ascending", "at_end"),
            ("distance", "ascending", "at_end"),
            ("evalset", "ascending", "at_end"),
            ("eval_key", "ascending", "at_end"),
        ],
    )
    table = table.take(order).drop_columns(["_rank"])
    if table.num_rows == 0:
        return table.cast(REMOVALS)
    key = table["key"].combine_chunks()
    first = np.ones(table.num_rows, dtype=bool)
    if table.num_rows > 1:
        first[1:] = pc.not_equal(key[1:], key[:-1]).to_numpy(zero_copy_only=False)
    return table.filter(pa.array(first)).combine_chunks()


def removal_report(removals: pa.Table) -> dict:
    """Counts: total, per reason (all reasons listed), per evalset, per evalset and reason."""
    reasons = removals["reason"].to_pylist()
    evalsets = removals["evalset"].to_pylist()
    by_reason = {r.value: 0 for r in REMOVAL_PRECEDENCE}
    by_evalset: dict[str, int] = {}
    by_evalset_reason: dict[str, dict[str, int]] = {}
    for reason, evalset in zip(reasons, evalsets, strict=True):
        by_reason[reason] = by_reason.get(reason, 0) + 1
        if evalset is not None:
            by_evalset[evalset] = by_evalset.get(evalset, 0) + 1
            per = by_evalset_reason.setdefault(evalset, {})
            per[reason] = per.get(reason, 0) + 1
    return {
        "total": len(reasons),
        "by_reason": by_reason,
        "by_evalset": dict(sorted(by_evalset.items())),
        "by_evalset_reason": {
            e: dict(sorted(v.items())) for e, v in sorted(by_evalset_reason.items())
        },
    }
