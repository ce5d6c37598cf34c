"""SeenKeys: compact duplicate detection over a stream of keys."""

from __future__ import annotations

from treeoflife.sources.seen import SeenKeys


def test_duplicates_are_numbered_and_growth_keeps_every_key():
    seen = SeenKeys(capacity=4)
    assert [seen.duplicate_of(f"eol/{i}") for i in range(5000)] == [None] * 5000
    assert len(seen) == 5000 and seen.nbytes >= 5000 * 8 * 2
    assert seen.duplicate_of("eol/7") == "eol/7#dup1"
    assert seen.duplicate_of("eol/7") == "eol/7#dup2"
    assert seen.duplicate_of("eol/4999") == "eol/4999#dup1"
    assert seen.duplicate_of("eol/5000") is None
    assert len(seen) == 5001
