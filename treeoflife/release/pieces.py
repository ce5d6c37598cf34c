"""Rows cut into pieces that DuckDB sorts one at a time (treeoflife.release.tables): files
written in one pass by the piece each row belongs to, ranges of the shard order and of the
catalog's taxa, and a split's shard index read beside the split's rows."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from treeoflife import schemas
from treeoflife.errors import InputError

TAXON = ("source", *schemas.RANKS)
"""The catalog order (SORT_ORDER) but the key: what its ranges are cut between."""


def order_bits(rows: int, rows_per_piece: int) -> int:
    """Top bits of the shard order that pick a piece: pieces of ~rows_per_piece rows."""
    return max(0, math.ceil(math.log2(max(1, rows) / rows_per_piece)))


def top_bits(order: pa.ChunkedArray, bits: int) -> np.ndarray:
    """The piece of each row: the top `bits` of its 64-bit shard order (a range of it)."""
    values = order.to_numpy()
    if bits == 0:
        return np.zeros(len(values), np.int64)
    return (values >> np.uint64(64 - bits)).astype(np.int64)


class Partitions:
    """Rows routed to `n` numbered Parquet files in one pass, each written in small row groups
    as its rows arrive (a bounded buffer per file), so that each file is sorted alone later."""

    def __init__(self, folder: Path, n: int, schema: pa.Schema):
        folder.mkdir(parents=True, exist_ok=True)
        self.paths = [folder / f"{i:05d}.parquet" for i in range(n)]
        self._flush_rows = max(256, (1 << 16) // n)  # ~64k rows held across all files
        self._writers = [pq.ParquetWriter(p, schema, compression="lz4") for p in self.paths]
        self._pending: list[list[pa.Table]] = [[] for _ in range(n)]
        self._held = [0] * n

    def __enter__(self) -> Partitions:
        return self

    def __exit__(self, *exc) -> None:
        for i in range(len(self.paths)):
            self._flush(i)
        for writer in self._writers:
            writer.close()

    def add(self, table: pa.Table, part: np.ndarray) -> None:
        """Rows of `table` to the files `part` names, row by row (their order kept)."""
        order = np.argsort(part, kind="stable")
        part = part[order]
        starts = np.flatnonzero(np.r_[True, part[1:] != part[:-1]])
        for start, stop in zip(starts, [*starts[1:], len(part)], strict=True):
            i = int(part[start])
            # A copy of the rows, not a slice: a slice would keep the whole batch alive until
            # this file's buffer is written (every batch, for a file that fills slowly).
            self._pending[i].append(table.take(pa.array(order[start:stop])))
            self._held[i] += stop - start
            if self._held[i] >= self._flush_rows:
                self._flush(i)

    def _flush(self, i: int) -> None:
        if self._pending[i]:
            self._writers[i].write_table(pa.concat_tables(self._pending[i]).combine_chunks())
            self._pending[i], self._held[i] = [], 0


class TaxonRanges:
    """Consecutive taxa (source, kingdom .. species) of the catalog order, cut into ranges of
    about `rows_per_range` rows; a taxon is never cut (one larger than that is a range alone).
    `counts`: (source, kingdom, .., species, rows) per taxon, in any order."""

    def __init__(self, counts: list[tuple], rows_per_range: int):
        def order(row: tuple) -> tuple:  # NULLS LAST, as the catalog sorts them
            return tuple((v is None, v or "") for v in row[:-1])

        self.of_taxon: dict[tuple, int] = {}
        rows, current = 0, 0
        for row in sorted(counts, key=order):
            if rows and rows + row[-1] > rows_per_range:
                current, rows = current + 1, 0
            self.of_taxon[row[:-1]] = current
            rows += row[-1]
        self.count = current + 1

    def of(self, table: pa.Table) -> np.ndarray:
        """The range of each row of `table`."""
        columns = [table.column(c).to_pylist() for c in TAXON]
        return np.fromiter(
            (self.of_taxon[t] for t in zip(*columns, strict=True)), np.int64, table.num_rows
        )


class IndexCursor:
    """A split's shard index read in order, beside the split's rows in the same order: row i
    of the split is at the index's row i, so no join is needed to place it."""

    _SCHEMA = pa.schema([("key", pa.string()), ("shard", pa.string()), ("position", pa.int32())])

    def __init__(self, path: Path, split: str):
        self.split = split
        self._batches = pq.ParquetFile(path).iter_batches(columns=list(self._SCHEMA.names))
        self._held = self._SCHEMA.empty_table()

    def _take(self, n: int) -> pa.Table:
        while self._held.num_rows < n:
            batch = next(self._batches, None)
            if batch is None:
                raise InputError(f"{self.split}: its shard index has fewer rows than the split")
            table = pa.Table.from_batches([batch]).cast(self._SCHEMA)
            self._held = pa.concat_tables([self._held, table])
        out, self._held = self._held.slice(0, n), self._held.slice(n)
        return out

    def locate(self, table: pa.Table, only: pa.ChunkedArray | None = None) -> pa.Table:
        """`table` (rows of the split in shard order; with `only`, the rows it marks) with
        `shard` / `shard_position` from the next index rows; their keys must agree."""
        if only is None:
            mask = pa.array(np.ones(table.num_rows, bool))
        else:
            mask = pc.fill_null(only, False).combine_chunks()
        n = pc.sum(mask.cast(pa.int64())).as_py() or 0
        if n == 0:
            return table
        index = self._take(n)
        if not index.column("key").equals(table.column("key").filter(mask)):
            raise InputError(f"{self.split}: the shard index and the split's rows disagree")
        shard = pc.binary_join_element_wise(self.split, index.column("shard"), "/")
        for name, values in (("shard", shard), ("shard_position", index.column("position"))):
            i = table.schema.get_field_index(name)
            field = table.schema.field(i)
            column = table.column(i).combine_chunks()
            values = values.combine_chunks().cast(field.type)
            table = table.set_column(i, field, pc.replace_with_mask(column, mask, values))
        return table

    def finish(self) -> None:
        """Every index row was used: an index longer than its split is an error."""
        if self._held.num_rows or next(self._batches, None) is not None:
            raise InputError(f"{self.split}: its shard index has more rows than the split")
