"""The local process-pool mapper every stage's worker processes go through: item order kept
whatever order items finish in, a bounded window in flight, a failure stops what is queued."""

from __future__ import annotations

import os
import time

import pytest

from treeoflife.fanout import ProcessPoolMapper, batches


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
