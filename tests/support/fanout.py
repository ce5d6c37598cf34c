"""A mapper for tests: the items run concurrently, later items first (treeoflife.fanout)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor


def map_out_of_order(fn: Callable, items: Iterable, workers: int = 4) -> Iterator:
    """Run every item on a thread pool, submitted last to first (so later items tend to finish
    first), and yield the results in input order: a stage that relies on its items running in
    order, or one at a time, shows it here."""
    items = list(items)
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(fn, item) for item in reversed(items)]
        results = [f.result() for f in futures]
    yield from reversed(results)
