"""The pieces the release sorts one at a time (treeoflife.release.pieces)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from treeoflife.errors import InputError
from treeoflife.release.pieces import IndexCursor, Partitions, TaxonRanges, order_bits, top_bits


def _index(path, keys):
    pq.write_table(
        pa.table(
            {
                "key": keys,
                "shard": [f"shard-{i // 2:06d}.tar" for i in range(len(keys))],
                "position": pa.array([i % 2 for i in range(len(keys))], pa.int32()),
            }
        ),
        path,
    )
    return path


def _rows(keys, split):
    return pa.table(
        {
            "key": keys,
            "split": split,
            "shard": pa.nulls(len(keys), pa.string()),
            "shard_position": pa.nulls(len(keys), pa.int32()),
        }
    )


def test_an_index_cursor_places_the_marked_rows_from_the_index_rows_beside_them(tmp_path):
    cursor = IndexCursor(_index(tmp_path / "i.parquet", ["a", "b", "c"]), "train")
    rows = _rows(["a", "x", "b"], ["train", "val", "train"])
    placed = cursor.locate(rows, only=pa.chunked_array([[True, False, True]]))
    assert placed.column("shard").to_pylist() == [
        "train/shard-000000.tar",
        None,
        "train/shard-000000.tar",
    ]
    assert placed.column("shard_position").to_pylist() == [0, None, 1]
    placed = cursor.locate(_rows(["c"], ["train"]))
    assert placed.column("shard").to_pylist() == ["train/shard-000001.tar"]
    cursor.finish()


def test_an_index_that_does_not_match_its_split_is_an_error(tmp_path):
    path = _index(tmp_path / "i.parquet", ["a", "b", "c"])
    with pytest.raises(InputError, match="disagree"):
        IndexCursor(path, "train").locate(_rows(["a", "c"], ["train", "train"]))
    longer = IndexCursor(path, "val")
    longer.locate(_rows(["a", "b"], ["val", "val"]))
    with pytest.raises(InputError, match="more rows than the split"):
        longer.finish()
    with pytest.raises(InputError, match="fewer rows than the split"):
        IndexCursor(path, "val").locate(_rows(["a", "b", "c", "d"], ["val"] * 4))


def test_taxon_ranges_follow_the_catalog_order_and_never_cut_a_taxon():
    none = (None,) * 6
    counts = [
        ("eol", "Plantae", *none, 5),
        ("eol", None, *none, 7),  # nulls last, as the catalog sorts them
        ("bioscan", "Animalia", *none, 30),  # more than a range: a range alone
        ("eol", "Animalia", *none, 4),
    ]
    ranges = TaxonRanges(counts, rows_per_range=10)
    of = {taxon[:2]: r for taxon, r in ranges.of_taxon.items()}
    assert of == {
        ("bioscan", "Animalia"): 0,
        ("eol", "Animalia"): 1,
        ("eol", "Plantae"): 1,
        ("eol", None): 2,
    }
    assert ranges.count == 3


def test_shard_order_pieces_are_ranges_of_the_order_and_partitions_keep_row_order(tmp_path):
    assert order_bits(1, 200_000) == 0 and order_bits(1_000_000, 200_000) == 3
    order = pa.chunked_array([pa.array([0, 2**63, 2**64 - 1, 2**62], pa.uint64())])
    assert top_bits(order, 0).tolist() == [0, 0, 0, 0]
    assert top_bits(order, 2).tolist() == [0, 2, 3, 1]
    table = pa.table({"i": list(range(10))})
    with Partitions(tmp_path / "p", 3, table.schema) as parts:
        parts.add(table, np.array([2, 0, 1, 0, 2, 2, 1, 0, 0, 1]))
    got = [pq.read_table(p).column("i").to_pylist() for p in parts.paths]
    assert got == [[1, 3, 7, 8], [2, 6, 9], [0, 4, 5]]
