"""Which training images to remove: copies of evaluation images, held-out species, duplicates.

Every function returns a REMOVALS table sorted by key; `combine_removals` merges them into one
row per key. Near-duplicate search uses multi-index hashing instead of comparing all pairs.
"""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from treeoflife.errors import InputError
from treeoflife.schemas import (
    INGEST_OK,
    REASON_EXACT_EVAL,
    REASON_HELD_OUT,
    REASON_IN_TRAIN_DUP,
    REASON_NEAR_EVAL,
    REMOVALS,
)

log = logging.getLogger(__name__)

REASON_PRECEDENCE = (REASON_EXACT_EVAL, REASON_NEAR_EVAL, REASON_HELD_OUT, REASON_IN_TRAIN_DUP)
"""When several reasons remove one key, the first in this order is recorded."""

_MAX_CANDIDATES = 4_000_000  # candidate pairs verified per step (bounds memory: ~100 MB)
_MAX_EXPANSION = 20_000_000  # eval block values after bit flips, per block


# --------------------------------------------------------------------------- near pairs


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x).astype(np.int32)


def _near_pairs_bruteforce(
    train: np.ndarray, evals: np.ndarray, max_distance: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (train index, eval index, distance) with Hamming distance <= max_distance.

    N x M reference for the tests; sorted by (train index, eval index).
    """
    train = np.asarray(train, dtype=np.uint64)
    evals = np.asarray(evals, dtype=np.uint64)
    tis, eis, ds = [], [], []
    step = max(1, _MAX_CANDIDATES // max(1, len(evals)))
    for start in range(0, len(train), step):
        dist = _popcount(train[start : start + step, None] ^ evals[None, :])
        ti, ei = np.nonzero(dist <= max_distance)
        tis.append(ti + start)
        eis.append(ei)
        ds.append(dist[ti, ei])
    return _concat_pairs(tis, eis, ds)


def _concat_pairs(tis, eis, ds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not tis:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32)
    return (
        np.concatenate(tis).astype(np.int64),
        np.concatenate(eis).astype(np.int64),
        np.concatenate(ds).astype(np.int32),
    )


def _block_layout(n_blocks: int) -> list[tuple[int, int]]:
    """(shift, width) of n_blocks contiguous bit blocks covering 64 bits, widths within 1."""
    base, extra = divmod(64, n_blocks)
    widths = [base + (1 if b < extra else 0) for b in range(n_blocks)]
    layout, shift = [], 64
    for w in widths:
        shift -= w
        layout.append((shift, w))
    return layout


def _flip_masks(width: int, radius: int) -> np.ndarray:
    """Every value with at most `radius` of the low `width` bits set (XOR masks)."""
    masks = [0]
    for r in range(1, radius + 1):
        for bits in itertools.combinations(range(width), r):
            masks.append(sum(1 << b for b in bits))
    return np.array(masks, dtype=np.uint64)


def _ball_size(width: int, radius: int) -> int:
    return sum(math.comb(width, r) for r in range(radius + 1))


def choose_blocks(n_train: int, n_evals: int, max_distance: int) -> int:
    """Number of blocks minimising the estimated work of multi-index hashing.

    With m blocks a pair within d has some block within floor(d / m) (pigeonhole): m = d + 1
    is the classic exact-block join. Narrow blocks (d = 8 -> 7 bits) let ~m / 2^7 of all pairs
    through as candidates; wider blocks searched with a small radius cut that by orders of
    magnitude at the price of expanding each eval block value by its Hamming ball.
    Cost model (uniform hashes): per block, M x ball (expansion) + N (lookups) +
    N x M x ball / 2^width (candidates to verify).
    """
    best, best_cost = max_distance + 1, math.inf
    for m in range(1, min(max_distance + 1, 64) + 1):
        radius = max_distance // m
        cost = 0.0
        feasible = True
        for _, width in _block_layout(m):
            ball = _ball_size(width, radius)
            if ball * max(n_evals, 1) > _MAX_EXPANSION:
                feasible = False
                break
            cost += n_evals * ball + n_train + n_train * n_evals * ball / 2.0**width
        if feasible and cost < best_cost:
            best, best_cost = m, cost
    return best


def _near_pairs(
    train: np.ndarray, evals: np.ndarray, max_distance: int, n_blocks: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (train index, eval index, distance) within max_distance, by multi-index hashing.

    Split the 64 bits into n_blocks blocks; a pair within d agrees within floor(d / n_blocks)
    bits on at least one block. For each block, the eval block values are expanded by every
    flip of up to that many bits, sorted, and each train block value is looked up with
    searchsorted; candidates are verified by popcount. Same output as the brute force.
    """
    train = np.asarray(train, dtype=np.uint64)
    evals = np.asarray(evals, dtype=np.uint64)
    if max_distance < 0:
        raise ValueError("max_distance must be >= 0")
    if len(train) == 0 or len(evals) == 0:
        return _concat_pairs([], [], [])
    if max_distance >= 64:  # every pair matches; no index can help
        return _near_pairs_bruteforce(train, evals, max_distance)
    m = n_blocks or choose_blocks(len(train), len(evals), max_distance)
    if not 1 <= m <= 64:
        raise ValueError(f"n_blocks must be in 1..64, got {m}")
    radius = max_distance // m
    ball = _ball_size(_block_layout(m)[0][1], radius)  # the first block is the widest
    if ball > 1 and ball * len(evals) > _MAX_EXPANSION:
        raise ValueError(
            f"{m} blocks for distance {max_distance} would expand {len(evals)} eval hashes "
            f"{ball}-fold; use more blocks (or n_blocks=None)"
        )
    tis, eis = [], []
    for shift, width in _block_layout(m):
        mask = np.uint64((1 << width) - 1)
        flips = _flip_masks(width, radius)
        eval_values = (evals >> np.uint64(shift)) & mask
        expanded = (eval_values[:, None] ^ flips[None, :]).reshape(-1)
        owner = np.repeat(np.arange(len(evals), dtype=np.int64), len(flips))
        order = np.argsort(expanded)  # pairs are re-sorted at the end: stability not needed
        expanded, owner = expanded[order], owner[order]
        train_values = (train >> np.uint64(shift)) & mask
        lo, hi = _bucket_bounds(expanded, train_values, width)
        counts = hi - lo
        for start, stop in _spans_by_budget(counts, _MAX_CANDIDATES):
            c = counts[start:stop]
            total = int(c.sum())
            if total == 0:
                continue
            ti = np.repeat(np.arange(start, stop, dtype=np.int64), c)
            run_start = np.repeat(np.cumsum(c) - c, c)
            pos = np.repeat(lo[start:stop], c) + (np.arange(total, dtype=np.int64) - run_start)
            ei = owner[pos]
            close = _popcount(train[ti] ^ evals[ei]) <= max_distance
            tis.append(ti[close])
            eis.append(ei[close])
    if not tis:
        return _concat_pairs([], [], [])
    pair = np.unique(np.concatenate(tis) * len(evals) + np.concatenate(eis))
    ti, ei = np.divmod(pair, len(evals))
    return ti, ei, _popcount(train[ti] ^ evals[ei])


_DIRECT_TABLE_MAX_WIDTH = 24  # a 2^24-entry offset table: 128 MB, built in ~0.1 s


def _bucket_bounds(
    sorted_values: np.ndarray, queries: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the run [lo, hi) of equal values in sorted_values.

    Blocks up to 24 bits use a direct offset table (one gather per query); binary search over
    millions of values costs ~10x more in cache misses. Wider blocks fall back to searchsorted.
    """
    if width <= _DIRECT_TABLE_MAX_WIDTH:
        counts = np.bincount(sorted_values.astype(np.int64), minlength=1 << width)
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        q = queries.astype(np.int64)
        return offsets[q], offsets[q + 1]
    lo = np.searchsorted(sorted_values, queries, side="left")
    hi = np.searchsorted(sorted_values, queries, side="right")
    return lo, hi


def _spans_by_budget(counts: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Split 0..len(counts) into runs whose summed counts stay near the budget."""
    if len(counts) == 0:
        return []
    cum = np.cumsum(counts)
    spans, start = [], 0
    while start < len(counts):
        base = cum[start - 1] if start else 0
        stop = int(np.searchsorted(cum, base + budget, side="right"))
        stop = max(stop, start + 1)  # one train item with more candidates than the budget
        spans.append((start, stop))
        start = stop
    return spans


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
        evals = evals.filter(pc.equal(evals["status"], INGEST_OK))
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
    out_reason = [REASON_EXACT_EVAL] * len(out_keys)
    out_set = [ev_set[i] for i in exact_eval]
    out_evkey = [ev_key[i] for i in exact_eval]
    out_dist = [0] * len(out_keys)

    # Near: the rest, by pHash.
    rest = train.filter(pc.and_(pc.invert(exact_mask), pc.is_valid(train["phash"])))
    ev_ok = pc.is_valid(evals["phash"]).to_numpy(zero_copy_only=False)
    ev_rows = np.nonzero(ev_ok)[0]
    ev_hash = evals["phash"].filter(pc.is_valid(evals["phash"])).to_numpy().astype(np.uint64)
    rest_hash = rest["phash"].to_numpy().astype(np.uint64)
    ti, ei, dist = _near_pairs(rest_hash, ev_hash, max_distance)
    if len(ti):
        ev_rank = ev_rows[ei]  # position in (evalset, eval_key) order
        order = np.lexsort((ev_rank, dist, ti))
        ti, dist, ev_rank = ti[order], dist[order], ev_rank[order]
        first = np.ones(len(ti), dtype=bool)
        first[1:] = ti[1:] != ti[:-1]
        near_keys = rest["key"].take(pa.array(ti[first])).to_pylist()
        for k, d, e in zip(near_keys, dist[first], ev_rank[first], strict=True):
            out_keys.append(k)
            out_reason.append(REASON_NEAR_EVAL)
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


def find_in_train_duplicates(train: pa.Table) -> pa.Table:
    """Training rows whose md5 an earlier key already has: keep the smallest key per md5.

    Removed rows name the kept key in eval_key (evalset null, distance 0).
    """
    if pc.count_distinct(train["key"]).as_py() != train.num_rows:
        raise InputError("find_in_train_duplicates: the training table repeats a key")
    rows = train.select(["key", "md5"]).filter(pc.is_valid(train["md5"]))
    rows = rows.take(pc.sort_indices(rows, sort_keys=[("md5", "ascending"), ("key", "ascending")]))
    if rows.num_rows == 0:
        return _empty_removals()
    md5 = rows["md5"].combine_chunks()
    is_first = np.ones(rows.num_rows, dtype=bool)
    if rows.num_rows > 1:
        is_first[1:] = pc.not_equal(md5[1:], md5[:-1]).to_numpy(zero_copy_only=False)
    group_start = np.nonzero(is_first)[0]
    kept_pos = group_start[np.cumsum(is_first) - 1]
    removed = np.nonzero(~is_first)[0]
    keys = rows["key"].combine_chunks()
    n = len(removed)
    return _removals_table(
        keys.take(pa.array(removed)),
        REASON_IN_TRAIN_DUP,
        pa.nulls(n, pa.string()),
        keys.take(pa.array(kept_pos[removed])),
        [0] * n,
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
    wanted = {
        t
        for t in zip(*(_taxon_part(held_out[p]).to_pylist() for p in parts), strict=True)
        if None not in t
    }
    if not wanted:
        return _empty_removals()
    norm = pa.table({p: _taxon_part(train[p]) for p in parts})
    hit = [t in wanted for t in zip(*(norm[p].to_pylist() for p in parts), strict=True)]
    keys = train["key"].filter(pa.array(hit, pa.bool_()))
    n = len(keys)
    return _removals_table(
        keys, REASON_HELD_OUT, [evalset] * n, pa.nulls(n, pa.string()), pa.nulls(n, pa.int32())
    )


def combine_removals(*tables: pa.Table) -> pa.Table:
    """One row per key, the strongest reason winning (REASON_PRECEDENCE); sorted by key.

    Among rows of the same key and reason, the smallest (distance, evalset, eval_key) wins.
    """
    if not tables:
        return _empty_removals()
    table = pa.concat_tables([t.select(REMOVALS.names).cast(REMOVALS) for t in tables])
    unknown = set(pc.unique(table["reason"]).to_pylist()) - set(REASON_PRECEDENCE)
    if unknown:
        raise ValueError(f"unknown removal reasons: {sorted(unknown)}")
    rank = pc.index_in(table["reason"], value_set=pa.array(REASON_PRECEDENCE))
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
    by_reason = {r: 0 for r in REASON_PRECEDENCE}
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
