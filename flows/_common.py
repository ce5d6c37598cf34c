"""What every flow shares: loading the config inside a run, progress as log lines, and the
task runner that fans the heavy stages' parts and shards out (threads or Dask, from the config).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from treeoflife.config import BuildConfig, ExecutionConfig, load_config
from treeoflife.errors import TreeOfLifeError


def load(config_path: str, data_root: str | None) -> BuildConfig:
    return load_config(config_path, data_root=data_root)


class LogProgress:
    """treeoflife Progress reported as Prefect log lines (every 10% or so)."""

    def __init__(self) -> None:
        try:
            self.log = get_run_logger()
        except Exception:  # outside a run context
            self.log = logging.getLogger("treeoflife.flows")
        self.stage, self.total, self.done, self.next_pct = "", None, 0, 10

    def start(self, stage: str, total: int | None) -> None:
        self.stage, self.total, self.done, self.next_pct = stage, total, 0, 10
        self.log.info("%s: started (%s items)", stage, total if total is not None else "?")

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.total:
            pct = 100 * self.done // self.total
            if pct >= self.next_pct:
                self.log.info("%s: %d/%d (%d%%)", self.stage, self.done, self.total, pct)
                self.next_pct = pct - pct % 10 + 10

    def finish(self) -> None:
        if self.stage:
            self.log.info("%s: finished (%d items)", self.stage, self.done)
        self.stage = ""


# --------------------------------------------------------------------------- fan-out


def task_runner(execution: ExecutionConfig) -> TaskRunner:
    """The Prefect task runner `execution` asks for (not started)."""
    if execution.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if execution.dask_address:
            return DaskTaskRunner(address=execution.dask_address)
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": execution.dask_workers,
                "processes": True,
                "threads_per_worker": execution.dask_threads_per_worker,
                "dashboard_address": ":0",  # any free port (several builds may share a machine)
            },
        )
    return ThreadPoolTaskRunner(max_workers=execution.max_workers)


def _retry_unless_our_error(_task, _task_run, state) -> bool:
    """Retry a part that failed for an outside reason (a lost worker, an I/O error); not one
    whose input is wrong (treeoflife's own errors: a retry would fail the same way)."""
    return not isinstance(getattr(state, "data", None), TreeOfLifeError)


@task(
    name="part",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=_retry_unless_our_error,
)
def run_part(fn: Callable, item):
    """One part or shard of a heavy stage: `fn(item)` (idempotent, output on shared storage)."""
    return fn(item)


class PrefectPartMapper:
    """A treeoflife.fanout mapper that runs each item as a Prefect task on a task runner.

    Results come back in input order; at most 2 x the runner's width are in flight, so items
    are drawn lazily from the stage (a stream of manifest parts, a list of shards). The runner
    (and a Dask LocalCluster) starts on first use and stops with `close()`.
    """

    def __init__(self, execution: ExecutionConfig):
        self.execution = execution
        self._runner: TaskRunner | None = None
        self._width = execution.parallelism
        self._lock = threading.Lock()  # stages running in parallel threads may share it

    def _started(self) -> TaskRunner:
        with self._lock:
            if self._runner is None:
                runner = task_runner(self.execution)
                runner.__enter__()
                self._runner = runner
                if self.execution.task_runner == "dask":  # an existing cluster may be larger
                    self._width = max(1, sum(runner.client.nthreads().values()))
            return self._runner

    @property
    def width(self) -> int:
        """Items run at once: the threads, or the Dask cluster's worker threads."""
        self._started()
        return self._width

    def __call__(self, fn: Callable, items: Iterable) -> Iterator:
        runner = self._started()
        name = getattr(fn, "__name__", None) or getattr(getattr(fn, "func", fn), "__name__", "")
        named = run_part.with_options(name=name or "part")
        pending: deque = deque()
        for item in items:
            pending.append(runner.submit(named, {"fn": fn, "item": item}))
            if len(pending) >= 2 * self._width:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.__exit__(None, None, None)


_SHARED: dict[ExecutionConfig, PrefectPartMapper] = {}


@contextlib.contextmanager
def shared_part_mapper(cfg: BuildConfig) -> Iterator[PrefectPartMapper]:
    """One task runner (one Dask cluster) for every stage run inside this block, in this
    process: the parent flow holds it so the build starts a LocalCluster once, not per stage."""
    mapper = PrefectPartMapper(cfg.execution)
    previous = _SHARED.setdefault(cfg.execution, mapper)
    try:
        yield previous
    finally:
        if previous is mapper:
            del _SHARED[cfg.execution]
            mapper.close()


@contextlib.contextmanager
def part_mapper(cfg: BuildConfig) -> Iterator[PrefectPartMapper]:
    """A mapper over `cfg.execution`'s task runner for one stage (the build's shared one when
    the parent flow opened it; else its own, started on first use and stopped after)."""
    shared = _SHARED.get(cfg.execution)
    if shared is not None:
        yield shared
        return
    mapper = PrefectPartMapper(cfg.execution)
    try:
        yield mapper
    finally:
        mapper.close()
