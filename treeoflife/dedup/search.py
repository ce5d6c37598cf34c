"""Near-duplicate search over 64-bit hashes without comparing all N x M pairs.

Multi-index hashing (Norouzi et al.): split the 64 bits into m blocks; two hashes within
Hamming distance d agree within floor(d / m) bits on at least one block (pigeonhole). For each
block, every query-side (evaluation) block value is expanded by its Hamming ball of that radius
into a direct-address table, every training hash looks its block value up in one gather, and
the candidates are verified with XOR + popcount. The result is exactly the brute force's.

Wide blocks with a small radius beat the classic m = d + 1 exact blocks at scale: for 30k
evaluation hashes, d = 10 and 10M training hashes, 3 blocks of ~21 bits (radius 3) verify
~40 candidates per training hash where 4 blocks of 16 bits (radius 2) verify ~250.
`choose_blocks` picks m from a cost model. Evaluation hashes are processed in chunks so the
expanded table stays within _MAX_EXPANSION entries (memory) whatever M is.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

_MAX_CANDIDATES = 4_000_000  # candidate pairs verified per step (bounds memory: ~100 MB)
_MAX_EXPANSION = 24_000_000  # expanded eval block values per chunk (~300 MB with the sort)
_DIRECT_TABLE_MAX_WIDTH = 24  # a 2^24-entry offset table: 128 MB, built in ~0.1 s

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x).astype(np.int32)


def _concat_pairs(tis, eis, ds) -> Pairs:
    if not tis:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32)
    return (
        np.concatenate(tis).astype(np.int64),
        np.concatenate(eis).astype(np.int64),
        np.concatenate(ds).astype(np.int32),
    )


def near_pairs_bruteforce(train: np.ndarray, evals: np.ndarray, max_distance: int) -> Pairs:
    """All (train index, eval index, distance) within max_distance by the N x M scan.

    The reference the index is checked against; sorted by (train index, eval index).
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


def block_layout(n_blocks: int) -> list[tuple[int, int]]:
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


def ball_size(width: int, radius: int) -> int:
    return sum(math.comb(width, r) for r in range(radius + 1))


def choose_blocks(n_train: int, n_evals: int, max_distance: int) -> int:
    """Number of blocks minimising the estimated work of multi-index hashing.

    Cost model (uniform hashes), per block, in units of one verified candidate (~15 ns
    here): 3 M x ball (expansion and sort) + 7 N x chunks (a lookup is a cache miss) +
    N x M x ball / 2^width (candidates), measured on 1M and 2M x 30k at d = 10.
    A block whose ball alone exceeds the expansion budget is not feasible.
    """
    best, best_cost = max_distance + 1, math.inf
    for m in range(1, min(max_distance + 1, 64) + 1):
        radius = max_distance // m
        cost = 0.0
        feasible = True
        for _, width in block_layout(m):
            ball = ball_size(width, radius)
            if ball > _MAX_EXPANSION or (ball > 1 and width > 40):
                feasible = False
                break
            chunks = math.ceil(max(n_evals, 1) * ball / _MAX_EXPANSION)
            cost += 3 * n_evals * ball + 7 * n_train * chunks
            cost += n_train * n_evals * ball / 2.0**width
        if feasible and cost < best_cost:
            best, best_cost = m, cost
    return best


def near_pairs(
    train: np.ndarray, evals: np.ndarray, max_distance: int, n_blocks: int | None = None
) -> Pairs:
    """All (train index, eval index, distance) within max_distance, by multi-index hashing.

    Same output as near_pairs_bruteforce: sorted by (train index, eval index).
    """
    train = np.asarray(train, dtype=np.uint64)
    evals = np.asarray(evals, dtype=np.uint64)
    if max_distance < 0:
        raise ValueError("max_distance must be >= 0")
    if len(train) == 0 or len(evals) == 0:
        return _concat_pairs([], [], [])
    if max_distance >= 64:  # every pair matches; no index can help
        return near_pairs_bruteforce(train, evals, max_distance)
    m = n_blocks or choose_blocks(len(train), len(evals), max_distance)
    if not 1 <= m <= 64:
        raise ValueError(f"n_blocks must be in 1..64, got {m}")
    radius = max_distance // m
    ball = ball_size(block_layout(m)[0][1], radius)  # the first block is the widest
    if ball > _MAX_EXPANSION:
        raise ValueError(
            f"{m} blocks for distance {max_distance} would expand each eval hash "
            f"{ball}-fold; use more blocks (or n_blocks=None)"
        )
    tis, eis = [], []
    for shift, width in block_layout(m):
        mask = np.uint64((1 << width) - 1)
        flips = _flip_masks(width, radius)
        train_values = ((train >> np.uint64(shift)) & mask).astype(np.int64)
        chunk = max(1, _MAX_EXPANSION // len(flips))
        for start in range(0, len(evals), chunk):
            part = evals[start : start + chunk]
            eval_values = (part >> np.uint64(shift)) & mask
            expanded, owner = _sorted_with_owner(eval_values, flips, start, width)
            lo, hi = _bucket_bounds(expanded, train_values, width)
            del expanded
            _verify(train, evals, lo, hi, owner, max_distance, tis, eis)
    if not tis:
        return _concat_pairs([], [], [])
    pair = np.unique(np.concatenate(tis) * len(evals) + np.concatenate(eis))
    ti, ei = np.divmod(pair, len(evals))
    return ti, ei, _popcount(train[ti] ^ evals[ei])


def _sorted_with_owner(
    eval_values: np.ndarray, flips: np.ndarray, start: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """The eval block values expanded by `flips`, sorted, with the eval index of each.

    Blocks up to 32 bits pack (value << 32 | local index) into one uint64 and np.sort it:
    ~8x faster than argsort (SIMD sort, no index indirection).
    """
    local = np.arange(len(eval_values), dtype=np.uint64)[:, None]
    if width <= 32:
        packed = ((eval_values[:, None] ^ flips[None, :]) << np.uint64(32)) | local
        packed = packed.reshape(-1)
        packed.sort()
        values = packed >> np.uint64(32)
        owner = (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)
        owner += start
        return values, owner
    expanded = (eval_values[:, None] ^ flips[None, :]).reshape(-1)
    order = np.argsort(expanded)
    owner = np.broadcast_to(local, (len(eval_values), len(flips))).reshape(-1)[order]
    return expanded[order], owner.astype(np.int64) + start


def _verify(train, evals, lo, hi, owner, max_distance, tis, eis) -> None:
    """Check every (train i, owner[lo[i]:hi[i]]) candidate; append the close ones."""
    counts = hi - lo
    hit = np.nonzero(counts)[0]  # most training hashes have no candidate in a chunk
    if len(hit) == 0:
        return
    counts, lo = counts[hit], lo[hit]
    for start, stop in _spans_by_budget(counts, _MAX_CANDIDATES):
        c = counts[start:stop]
        total = int(c.sum())
        ti = np.repeat(hit[start:stop], c)
        run_start = np.repeat(np.cumsum(c) - c, c)
        pos = np.repeat(lo[start:stop], c) + (np.arange(total, dtype=np.int64) - run_start)
        ei = owner[pos]
        close = _popcount(train[ti] ^ evals[ei]) <= max_distance
        tis.append(ti[close])
        eis.append(ei[close])


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
        return offsets[queries], offsets[queries + 1]
    q = queries.astype(np.uint64)
    lo = np.searchsorted(sorted_values, q, side="left")
    hi = np.searchsorted(sorted_values, q, side="right")
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


def near_leaders(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Leader clustering of hashes in the given order: (leader index, distance to it) per hash.

    Item i is a leader unless an earlier leader lies within max_distance; then it joins the
    earliest such leader. Every member is within max_distance of its own leader (no chains).
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    leader = np.arange(n, dtype=np.int64)
    dist = np.zeros(n, dtype=np.int32)
    if n < 2:
        return leader, dist
    ti, ei, d = near_pairs(hashes, hashes, max_distance)
    earlier = ei < ti  # pairs come sorted by (ti, ei): earlier candidates in index order
    ti, ei, d = ti[earlier], ei[earlier], d[earlier]
    is_leader = np.ones(n, dtype=bool)
    start = 0
    for i in np.unique(ti).tolist():
        stop = int(np.searchsorted(ti, i, side="right"))
        for j, dj in zip(ei[start:stop].tolist(), d[start:stop].tolist(), strict=True):
            if is_leader[j]:
                leader[i], dist[i], is_leader[i] = j, dj, False
                break
        start = stop
    return leader, dist
