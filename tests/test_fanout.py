"""The local process-pool mapper every stage's worker processes go through (item order kept
whatever order items finish in, a bounded window in flight, a failure stops what is queued),
and the loop over a stage's parts that skips the done ones and gives results back in order."""

from __future__ import annotations

import os
import time

import pytest

from treeoflife.fanout import Done, Parts, ProcessPoolMapper, batches


def _slow_first(n: int) -> tuple[int, int]:
    """The first two items sleep longest, so later ones finish before them."""
    time.sleep(0.3 if n < 2 else 0.0)
    return n, os.getpid()


def _fail_on_three(n: int) -> int:
    if n == 3:
        raise ValueError("item 3 is bad")
    time.sleep(0.05)
    return n


def test_results_come_in_item_order_from_other_processes():
    items = list(range(8))
    out = list(ProcessPoolMapper(2, "spawn")(_slow_first, items))
    assert [n for n, _ in out] == list(range(8))
    assert os.getpid() not in {pid for _, pid in out}  # every item ran in a worker


def test_the_window_bounds_the_items_taken_ahead():
    taken: list[int] = []

    def items():
        for n in range(10):
            taken.append(n)
            yield n

    mapper = ProcessPoolMapper(2, "spawn", window=3)
    results = mapper(_slow_first, items())
    first = next(results)
    # one result handed out: at most the window's 3 items taken from the input so far
    assert first[0] == 0 and len(taken) <= 3
    assert [n for n, _ in [first, *results]] == list(range(10))


def test_a_failed_item_raises_and_the_input_stops():
    mapper = ProcessPoolMapper(2, "spawn", window=2)
    seen: list[int] = []
    taken: list[int] = []

    def items():
        for n in range(100):
            taken.append(n)
            yield n

    with pytest.raises(ValueError, match="item 3 is bad"):
        for n in mapper(_fail_on_three, items()):
            seen.append(n)
    assert seen == [0, 1, 2]
    assert len(taken) <= 3 + 2  # the failure stopped the input: only the window was ahead


def test_one_worker_runs_in_this_process():
    out = list(ProcessPoolMapper(1)(_slow_first, range(3)))
    assert [pid for _, pid in out] == [os.getpid()] * 3


def test_batches_cut_items_into_parts():
    assert list(batches(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batches([], 3)) == []


# --------------------------------------------------------------------------- Parts


class _Counted:
    def __init__(self):
        self.events: list[tuple[str, object]] = []

    def start(self, stage, total):
        self.events.append(("start", total))

    def advance(self, n=1):
        self.events.append(("advance", n))

    def finish(self):
        self.events.append(("finish", None))


def _square(n: int) -> int:
    return n * n


def _reversed_mapper(fn, items):
    """Runs every item, the last one first, then gives the results back in item order."""
    items = list(items)
    done = {i: fn(item) for i, item in reversed(list(enumerate(items)))}
    for i in range(len(items)):
        yield done[i]


def _parts_with_some_done(done: set[int], progress=None) -> Parts:
    """Parts 0..5 of sizes 10, 11, ...: the ones in `done` are kept (their result: -n)."""
    return Parts(
        range(6),
        lambda n: Done(-n) if n in done else n,
        size=lambda n: 10 + n,
        progress=progress,
    )


def test_parts_skip_the_done_ones_and_count_every_part_in_the_progress():
    progress = _Counted()
    parts = _parts_with_some_done({0, 3, 4}, progress)
    ran: list[int] = []

    def mapper(fn, items):
        for item in items:
            ran.append(item)
            yield fn(item)

    assert list(parts.run(_square, mapper)) == [0, 1, 4, -3, -4, 25]
    assert ran == [1, 2, 5]  # the done parts never reached the mapper
    assert (parts.seen, parts.skipped) == (6, 3)
    assert sorted(n for _, n in progress.events) == [10 + n for n in range(6)]


def test_parts_without_a_mapper_run_here_in_order():
    parts = _parts_with_some_done({1})
    assert list(parts.run(_square)) == [0, -1, 4, 9, 16, 25]
    assert list(_parts_with_some_done(set())) == list(range(6))  # the to-do side, by itself


def test_parts_come_back_in_order_when_the_mapper_runs_them_out_of_order():
    handled: list[tuple[int, int]] = []
    parts = _parts_with_some_done({2, 5})
    out = list(parts.run(_square, _reversed_mapper, lambda item, r: handled.append((item, r))))
    assert out == [None, None, -2, None, None, -5]  # on_result's value for the parts run
    assert handled == [(0, 0), (1, 1), (3, 9), (4, 16)]


def test_parts_run_in_processes_come_back_in_order():
    parts = _parts_with_some_done({0})
    assert list(parts.run(_square, ProcessPoolMapper(2, "spawn"))) == [0, 1, 4, 9, 16, 25]


def len_one(_part) -> int:
    return 1


def test_a_failed_part_raises_after_the_parts_before_it_are_given_back():
    progress = _Counted()
    parts = Parts(range(8), lambda n: Done(-n) if n == 2 else n, size=len_one, progress=progress)
    handled: list[int] = []
    seen: list[int] = []

    def on_result(item, result):
        handled.append(item)
        return result

    with pytest.raises(ValueError, match="item 3 is bad"):
        for value in parts.run(_fail_on_three, ProcessPoolMapper(2, "spawn", window=2), on_result):
            seen.append(value)
    assert seen == [0, 1, -2]  # the parts before the failed one, the kept one included
    assert handled == [0, 1]
    assert sum(n for _, n in progress.events) == 3  # parts given back: none counted twice


def test_a_consumer_that_stops_leaves_the_rest_unrun():
    taken: list[int] = []

    def to_do(n):
        taken.append(n)
        return n

    results = Parts(range(100), to_do).run(_square)
    assert [next(results), next(results)] == [0, 1]
    results.close()
    assert taken == [0, 1]
