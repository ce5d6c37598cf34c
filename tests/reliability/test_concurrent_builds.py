"""Two simultaneous `treeoflife build` on one data root: one waits for the other, both succeed,
and the release equals a single build's (tests/reliability/concurrent_builds.py; the
benchmark runs 20 such trials)."""

from __future__ import annotations

import random

import pytest

from .concurrent_builds import single_build, trial

pytestmark = pytest.mark.slow
TRIALS = 3


def test_two_builds_started_together_end_with_one_release_equal_to_a_single_build(tmp_path):
    reference = single_build(tmp_path / "single")
    rng = random.Random(15)
    results = [trial(tmp_path / f"trial-{i}", reference, rng) for i in range(TRIALS)]
    for i, result in enumerate(results):
        assert result.exit_codes == [0, 0], (i, result)
        assert result.opaque == [], (i, result)
        assert result.temporaries == [], (i, result)
        assert result.same_as_single, (i, result)
    # the lock did its work: at least one trial had its second build wait for the first
    assert any(r.waited for r in results)
