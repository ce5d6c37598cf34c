"""How a stage's parts or shards are run: one after another here, or by an injected mapper.

A heavy stage splits its work into items (a catalog part to hash, a manifest part to download,
a shard to write) and a module-level function that does one item. The function takes one small,
picklable item (paths, row ranges, settings: never image bytes), writes its output atomically
under its final name on shared storage, skips work an earlier attempt finished, and returns a
small summary. Any mapper can then run the items: the stage's own loop, a Prefect task runner
(threads or Dask, see flows/_common.py) or anything else with the same shape. The library never
imports prefect.

A mapper is `map_parts(fn, items)`: it consumes `items` lazily (so a stage can stream millions
of rows into parts without holding them) and yields `fn(item)` for each item, in the order of
`items`, whatever order the items finish in. A mapper may have a `width` attribute (items it
runs at once), which a stage uses to share limits such as download concurrency between parts.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import TypeVar

from treeoflife.procs import process_pool

T = TypeVar("T")
R = TypeVar("R")

PartMapper = Callable[[Callable[[T], R], Iterable[T]], Iterator[R]]


def map_in_order(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """The local mapper: each item in turn, in this process."""
    for item in items:
        yield fn(item)


class ProcessPoolMapper:
    """The mapper over local worker processes (started by `method`; they die with this
    process): at most `window` items in flight (default 2 per worker), results in item order,
    so memory stays flat and outputs do not depend on the worker count. One worker or fewer
    runs the items here, in this process."""

    def __init__(self, width: int, method: str = "spawn", window: int | None = None):
        self.width = width
        self.method = method
        self.window = max(1, window or 2 * width)

    def __call__(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        if self.width <= 1:
            yield from map_in_order(fn, items)
            return
        with process_pool(self.width, self.method) as pool:
            pending: deque[Future] = deque()
            try:
                for item in items:
                    pending.append(pool.submit(fn, item))
                    if len(pending) >= self.window:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:  # a failed item or a consumer that stopped: nothing more starts
                for future in pending:
                    future.cancel()


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last one shorter): rows in parts, images in chunks."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def local_processes(requested: int) -> int:
    """Processes a per-item function may start for itself: `requested`, or 1 where it runs in
    a daemonic process (a Dask worker by default), which may not have child processes."""
    if multiprocessing.current_process().daemon:
        return 1
    return max(1, requested)
