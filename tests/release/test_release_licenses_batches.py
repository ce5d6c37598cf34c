"""licenses.csv is written batch by batch: the bytes do not depend on the batch size."""

from __future__ import annotations

import csv

import pyarrow as pa

from treeoflife.release.card import LICENSES_COLUMNS, write_licenses_csv


def test_licenses_csv_same_bytes_whatever_the_batch(tmp_path):
    n = 50
    table = pa.table(
        {
            **{c: [f'{c} {i}, "q"' if i % 7 else None for i in range(n)] for c in LICENSES_COLUMNS},
            "key": [f"eol/{(i * 37) % n:03d}" for i in range(n)],
            "status": ["kept" if i % 5 else "removed" for i in range(n)],
        }
    )
    whole, small = tmp_path / "whole.csv", tmp_path / "small.csv"
    write_licenses_csv(table, whole)
    write_licenses_csv(table, small, batch_rows=3)
    assert whole.read_bytes() == small.read_bytes()
    rows = list(csv.reader(small.open(newline="")))
    assert rows[0] == list(LICENSES_COLUMNS)
    assert len(rows) - 1 == sum(1 for i in range(n) if i % 5)  # kept rows only
    keys = [r[list(LICENSES_COLUMNS).index("key")] for r in rows[1:]]
    assert keys == sorted(keys)
