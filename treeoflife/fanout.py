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

`Parts` is the one loop over a stage's parts: it asks the stage which parts an earlier run
finished (skipped, counted, their size added to the progress), hands the others to the mapper
and gives every part's result back in part order, so each stage keeps only its decisions.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from treeoflife.procs import process_pool
from treeoflife.progress import Progress

P = TypeVar("P")
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


@dataclasses.dataclass(frozen=True)
class Done:
    """What a stage's `to_do` answers for a part an earlier run finished: the part is not run
    again, and `result` (a kept shard's entry; None when the caller needs nothing) is what
    `Parts.run` gives back in its place."""

    result: Any = None


DONE = Done()


class Parts(Generic[P, T]):
    """A stage's parts in order, each either done or to do, decided by `to_do(part)`: a `Done`,
    or the item a mapper runs for the part (small and picklable: see above). A done part is
    counted in `skipped` and its `size(part)` added to `progress` when it is reached; a part
    run adds its size when its result is given back. `seen`: the parts reached so far (all of
    them once iterated)."""

    def __init__(
        self,
        parts: Iterable[P],
        to_do: Callable[[P], T | Done],
        *,
        size: Callable[[P], int] | None = None,
        progress: Progress | None = None,
    ):
        self._parts = parts
        self._to_do = to_do
        self._size = size if progress is not None else None
        self._progress = progress
        self.seen = 0
        self.skipped = 0

    def _advance(self, part: P) -> None:
        if self._size is not None:
            self._progress.advance(self._size(part))

    def _walk(self, order: deque | None) -> Iterator[T]:
        """The items of the parts to do; each part reached is appended to `order` (a `Done`,
        or the part and its item) so that results can be given back in part order."""
        for part in self._parts:
            self.seen += 1
            todo = self._to_do(part)
            if isinstance(todo, Done):
                self.skipped += 1
                self._advance(part)
                if order is not None:
                    order.append(todo)
                continue
            if order is not None:
                order.append((part, todo))
            yield todo

    def __iter__(self) -> Iterator[T]:
        """The items of the parts to do, in order, for a caller that runs them itself."""
        return self._walk(None)

    def run(
        self,
        fn: Callable[[T], R],
        map_parts: PartMapper | None = None,
        on_result: Callable[[T, R], Any] | None = None,
    ) -> Iterator:
        """Every part's result in part order: a done part's `Done.result`, else
        `on_result(item, fn(item))` (pull its files, count it; default: `fn(item)`), with
        `fn` run by `map_parts` (default: here, one after another). When an item fails, the
        parts before it are given back first, then its error is raised."""
        order: deque = deque()
        results = (map_parts or map_in_order)(fn, self._walk(order))
        try:
            while True:
                try:
                    result = next(results)
                except StopIteration:
                    break
                except BaseException:
                    while order and isinstance(order[0], Done):
                        yield order.popleft().result
                    raise
                while order and isinstance(order[0], Done):
                    yield order.popleft().result
                if not order:
                    raise RuntimeError("the mapper gave back more results than it was given items")
                part, item = order.popleft()
                value = result if on_result is None else on_result(item, result)
                self._advance(part)
                yield value
            while order:
                done = order.popleft()
                if not isinstance(done, Done):
                    raise RuntimeError("the mapper gave back fewer results than it was given items")
                yield done.result
        finally:  # a failure or a consumer that stopped: the mapper starts nothing more
            close = getattr(results, "close", None)
            if close is not None:
                close()


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
