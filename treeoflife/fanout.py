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
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

PartMapper = Callable[[Callable[[T], R], Iterable[T]], Iterator[R]]


def map_in_order(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """The local mapper: each item in turn, in this process."""
    for item in items:
        yield fn(item)


def local_processes(requested: int) -> int:
    """Processes a per-item function may start for itself: `requested`, or 1 where it runs in
    a daemonic process (a Dask worker by default), which may not have child processes."""
    if multiprocessing.current_process().daemon:
        return 1
    return max(1, requested)
