"""The release's tables out of core: DuckDB joins, scans and sorts small pieces; Python sees a
batch at a time.

1. Assembly: every source catalog row joined with its taxon, hash and removal (and, in a
   published rebuild, its plan row), each batch assembled row by row
   (treeoflife.assemble.assemble_rows: final status, split, id, shard order), written into
   buckets by the top bits of its shard order: ranges of the order, of ~ROWS_PER_SORT rows.
   A key's bucket is a function of the key, so keys are checked unique bucket by bucket.
2. Each split's rows in shard order (`split_rows`): bucket after bucket, each sorted alone.
   train_small's rows take their train location from train's index, read beside them in the
   same order (no join).
3. The catalog in its SORT_ORDER (`catalog_batches`): each bucket's rows take their shard
   locations from the indexes the same way and go to ranges of the catalog order (cut between
   taxa, counted by a GROUP BY), each sorted alone; licenses.csv from key ranges cut at a
   sample of the keys.

No sort ever holds more than one piece: DuckDB's external sort of wide rows needs more memory
as the rows grow and fails under a fixed limit (see ROWS_PER_SORT), so the driver's memory is
bounded by the pieces, DuckDB's `memory_limit` and a buffer per piece being written, whatever
the number of images (the in-memory tables this replaces held ~3.6 KB per image: ~36 GB at
10M). The work folder is the build's scratch space: removed when the release is done, and
swept at the start of the next release after a kill.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from treeoflife import schemas
from treeoflife.assemble import SHARD_ORDER, TAXA_COLUMNS, assemble_rows
from treeoflife.config import BuildConfig
from treeoflife.errors import InputError
from treeoflife.layout import Layout
from treeoflife.progress import Progress, or_null
from treeoflife.release import published as pub
from treeoflife.release.catalog import SORT_ORDER
from treeoflife.release.hub import LICENSES_COLUMNS
from treeoflife.release.label_diff import DIFF_SCHEMA, aligned_label_diff
from treeoflife.release.pieces import (
    TAXON,
    IndexCursor,
    Partitions,
    TaxonRanges,
    order_bits,
    top_bits,
)
from treeoflife.shards.tasks import ROWS_SCHEMA, OrderedRows
from treeoflife.sources.catalogs import add_query_ids, source_parts
from treeoflife.sources.published.ingest import plan_path
from treeoflife.vocabulary import Status

MEMORY_LIMIT = "1GB"
"""DuckDB's memory for the joins and sorts; it spills to the work folder beyond it."""
BATCH_ROWS = 32_768
ROWS_PER_SORT = 200_000
"""Rows DuckDB sorts at once: its external sort of wide rows needs more memory as the rows
grow (1M rows of ~1 KB: 512 MB; 4M: 768 MB; DuckDB issues #18674, #19052), so the release
sorts ranges of this size, each in memory, and concatenates them in order."""
THREADS = 2
ASSEMBLED_SCHEMA = ROWS_SCHEMA.append(pa.field(SHARD_ORDER, pa.uint64()))
_REMOVAL_NAMES = {"reason": "removal_reason", "evalset": "removal_evalset",
                  "eval_key": "removal_eval_key", "distance": "removal_distance"}  # fmt: skip


def _lit(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _id(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Assembled:
    """What the assembly pass found beside the rows: a published rebuild's label diff."""

    rows: int
    label_diff: pa.Table | None = None
    compared: int = 0


class ReleaseTables:
    """The release's tables for one build, in `work` (created empty, removed by `close`)."""

    def __init__(self, cfg: BuildConfig, work: Path, memory_limit: str | None = None):
        self.cfg, self.layout, self.work = cfg, Layout(cfg.root), Path(work)
        shutil.rmtree(self.work, ignore_errors=True)  # a killed release's: nothing there is reused
        (self.work / "spill").mkdir(parents=True)
        self.con = duckdb.connect(
            config={
                "memory_limit": memory_limit or MEMORY_LIMIT,
                "temp_directory": str(self.work / "spill"),
                # Kept on (the default): a DB-API result without it hands an ORDER BY's rows
                # to Arrow out of order, a vector of 2048 at a time (seen with DuckDB 2.0).
                "preserve_insertion_order": True,
                # DuckDB's memory needs grow with its threads; a driver on a big node would
                # otherwise start one per core under the same limit.
                "threads": THREADS,
            }
        )
        self.con.execute("SET enable_progress_bar = false")
        self.buckets: list[Path] = []  # assembled rows by shard order (ranges of SHARD_ORDER)
        self.counts: dict[str, list[int]] = {}  # split -> rows of that split per bucket

    def __enter__(self) -> ReleaseTables:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self.work, ignore_errors=True)

    # ------------------------------------------------------------------ 1. assembly

    def _parquet_view(self, name: str, paths: list[Path], schema: pa.Schema) -> None:
        existing = [p for p in paths if p.exists()]
        if existing:
            files = ", ".join(_lit(p) for p in existing)
            self.con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{files}])")
        else:
            self.con.register(name, schema.empty_table())

    def _source_rows(self) -> None:
        """Every source catalog part with its query_id, one part at a time (view `src`)."""
        folder = self.work / "sources"
        folder.mkdir()
        schema = schemas.SOURCE_CATALOG.append(pa.field("query_id", pa.string()))
        written = []
        for i, part in enumerate(p for s in schemas.SOURCES for p in source_parts(self.cfg, s)):
            table = add_query_ids(pq.read_table(part, schema=schemas.SOURCE_CATALOG))
            written.append(folder / f"{i:06d}.parquet")
            pq.write_table(table.cast(schema), written[-1], compression="lz4")
        if not written:
            written.append(folder / "empty.parquet")
            pq.write_table(schema.empty_table(), written[-1])
        self._parquet_view("src", written, schema)

    def _joined_sql(self, with_plan: bool) -> str:
        cfg, layout = self.cfg, self.layout
        self._source_rows()
        self._parquet_view("taxa", [layout.taxa], schemas.TAXA)
        self._parquet_view("hashes", [layout.hashes(s) for s in schemas.SOURCES], schemas.HASHES)
        self._parquet_view("removals", [layout.removals], schemas.REMOVALS)
        taxa = [f"t.{_id(c)}" for c in TAXA_COLUMNS if c != "query_id"]
        removal = [
            f"r.{_id(f.name)} AS {_id(_REMOVAL_NAMES.get(f.name, f.name))}"
            for f in schemas.REMOVALS
            if f.name != "key"
        ]
        select = ["s.*", *taxa, "h.phash", "h.phash_algo", *removal]
        joins = [
            "LEFT JOIN taxa t ON s.query_id = t.query_id",
            "LEFT JOIN hashes h ON s.key = h.key",
            "LEFT JOIN removals r ON s.key = r.key",
        ]
        if with_plan:
            self._parquet_view("plan", [plan_path(cfg)], pa.schema([]))
            select += [f"p.{_id(c)} AS {_id(pub.PLAN_PREFIX + c)}" for c in pub.PLAN_COLUMNS]
            joins.append("LEFT JOIN plan p ON s.key = p.key")
        return f"SELECT {', '.join(select)} FROM src s {' '.join(joins)}"

    def assemble(self, progress: Progress | None = None) -> Assembled:
        """Assemble every row into the shard-order buckets (ASSEMBLED_SCHEMA); in a published
        rebuild, diff the resolved labels against the plan's and (label mode `published`) take
        the plan's labels, ids and splits."""
        cfg, progress = self.cfg, or_null(progress)
        published = cfg.published.configured
        relabel = published and cfg.published.label_mode == "published"
        sql = self._joined_sql(published)
        total = self.con.execute("SELECT count(*) FROM src").fetchall()[0][0]
        progress.start("assemble", total)
        reader = _arrow_reader(self.con, sql)
        out = Assembled(0, DIFF_SCHEMA.empty_table() if published else None)
        diffs = []
        bits = order_bits(total, ROWS_PER_SORT)
        with Partitions(self.work / "order", 1 << bits, ASSEMBLED_SCHEMA) as buckets:
            for batch in reader:
                joined = pa.Table.from_batches([batch])
                if published:
                    joined, plan, planned = pub.split_plan(joined)
                    diff, compared = aligned_label_diff(joined, plan, planned)
                    diffs.append(diff)
                    out.compared += compared
                    if relabel:
                        joined = pub.published_labels(joined, plan, planned)
                rows = assemble_rows(joined, cfg.splits, cfg.shards)
                if published:
                    rows = pub.published_splits(rows, plan, planned)
                buckets.add(rows.cast(ASSEMBLED_SCHEMA), top_bits(rows.column(SHARD_ORDER), bits))
                out.rows += rows.num_rows
                progress.advance(rows.num_rows)
        self.buckets = buckets.paths
        progress.finish()
        self._check_unique_keys()
        self._count_splits()
        if published:
            out.label_diff = pa.concat_tables([DIFF_SCHEMA.empty_table(), *diffs])
        return out

    def _check_unique_keys(self) -> None:
        """A key's shard order is a function of the key: a repeated key repeats in its bucket,
        so each bucket is checked alone (a bounded GROUP BY)."""
        for path in self.buckets:
            sql = f"SELECT key FROM {_scan(path)} GROUP BY key HAVING count(*) > 1 LIMIT 3"
            repeated = [r[0] for r in self.con.execute(sql).fetchall()]
            if repeated:
                raise InputError(f"catalog keys are not unique: {repeated} (and maybe more)")

    def _count_splits(self) -> None:
        self.counts = {"train": [], "val": [], "train_small": []}
        for path in self.buckets:
            sql = (
                f"SELECT count(*) FILTER (split = 'train'), count(*) FILTER (split = 'val'), "
                f"count(*) FILTER (split = 'train' AND in_train_small) FROM {_scan(path)}"
            )
            train, val, small = self.con.execute(sql).fetchall()[0]
            self.counts["train"].append(train)
            self.counts["val"].append(val)
            self.counts["train_small"].append(small)

    def image_files(self) -> list[str]:
        """The image stores the release's rows are read from."""
        sql = f"SELECT DISTINCT image_file FROM {_scan(self.buckets)}"
        return sorted(r[0] for r in self.con.execute(sql).fetchall() if r[0] is not None)

    # ------------------------------------------------------------------ 2. shard order

    def _bucket_rows(self, path: Path, where: str) -> Iterator[pa.Table]:
        """One bucket's rows matching `where` in shard order (ASSEMBLED_SCHEMA): a sort of at
        most ~ROWS_PER_SORT rows, whatever the number of images."""
        columns = ", ".join(_id(f.name) for f in ASSEMBLED_SCHEMA)
        sql = f"SELECT {columns} FROM {_scan(path)} WHERE {where} ORDER BY {SHARD_ORDER}, key"
        return self._batches(sql, ASSEMBLED_SCHEMA)

    def split_rows(self, split: str, located_by: Path | None = None) -> OrderedRows:
        """A split's rows in shard order (ROWS_SCHEMA), bucket after bucket. `located_by`
        (train_small): train's shard index, whose rows are train's in the same order, so each
        train_small row takes its train location from the index row beside it."""
        if split == "train_small":
            if located_by is None:
                raise ValueError("train_small's rows need train's shard index")
            return OrderedRows(sum(self.counts[split]), lambda: self._train_small(located_by))
        where = f"split = {_lit(split)}"

        def batches() -> Iterator[pa.Table]:
            for path in self.buckets:
                for table in self._bucket_rows(path, where):
                    yield table.drop_columns([SHARD_ORDER])

        return OrderedRows(sum(self.counts[split]), batches, ROWS_SCHEMA)

    def _train_small(self, train_index: Path) -> Iterator[pa.Table]:
        index = IndexCursor(train_index, "train")
        for path in self.buckets:
            for table in self._bucket_rows(path, "split = 'train'"):
                table = index.locate(table)
                yield table.filter(table.column("in_train_small")).drop_columns([SHARD_ORDER])
        index.finish()

    def catalog_batches(self, indexes: dict[str, Path]) -> Iterator[pa.Table]:
        """Catalog rows (CATALOG) in SORT_ORDER with `shard` / `shard_position` from the shard
        indexes of `indexes` (train, val): each bucket's rows in shard order take their places
        from the index rows beside them, go to ranges of the catalog order (each ~ROWS_PER_SORT
        rows, cut between taxa), and each range is sorted alone."""
        cursors = {split: IndexCursor(path, split) for split, path in indexes.items()}
        ranges = self._catalog_ranges()
        with Partitions(self.work / "catalog", ranges.count, ASSEMBLED_SCHEMA) as parts:
            for path in self.buckets:
                for table in self._bucket_rows(path, "true"):
                    for split, cursor in cursors.items():
                        table = cursor.locate(table, only=pc.equal(table.column("split"), split))
                    parts.add(table, ranges.of(table))
        for cursor in cursors.values():
            cursor.finish()
        columns = ", ".join(_id(f.name) for f in schemas.CATALOG)
        order = ", ".join(f"{_id(c)} ASC NULLS LAST" for c in SORT_ORDER)
        for path in parts.paths:
            yield from self._batches(
                f"SELECT {columns} FROM {_scan(path)} ORDER BY {order}", schemas.CATALOG
            )

    def _catalog_ranges(self) -> TaxonRanges:
        ranks = ", ".join(_id(c) for c in TAXON)
        sql = f"SELECT {ranks}, count(*) FROM {_scan(self.buckets)} GROUP BY ALL"
        return TaxonRanges(self.con.execute(sql).fetchall(), ROWS_PER_SORT)

    def licenses_batches(self, catalog: Path) -> Iterator[pa.Table]:
        """The shipped images' licence columns (licenses.csv) from the written catalog, by key:
        key ranges cut at a sample of the keys, each sorted alone."""
        schema = pa.schema([schemas.CATALOG.field(c) for c in LICENSES_COLUMNS])
        kept = f"status = {_lit(Status.KEPT.value)}"
        total = self.con.execute(f"SELECT count(*) FROM {_scan(catalog)} WHERE {kept}").fetchall()
        sql = (
            f"SELECT key FROM (SELECT key FROM {_scan(catalog)} WHERE {kept}) "
            "USING SAMPLE reservoir(10000 ROWS) REPEATABLE (1)"
        )  # ~10k keys whatever the size, in bounded memory
        sample = sorted(r[0] for r in self.con.execute(sql).fetchall())
        step = max(1, len(sample) * ROWS_PER_SORT // max(1, total[0][0]))
        bounds = [None, *sample[step::step], None]
        columns = ", ".join(_id(c) for c in LICENSES_COLUMNS)
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            where = [kept]
            if lo is not None:
                where.append(f"key >= {_lit(lo)}")
            if hi is not None:
                where.append(f"key < {_lit(hi)}")
            sql = f"SELECT {columns} FROM {_scan(catalog)} WHERE {' AND '.join(where)} ORDER BY key"
            yield from self._batches(sql, schema)

    def _batches(self, sql: str, schema: pa.Schema) -> Iterator[pa.Table]:
        cursor = self.con.cursor()  # its own reader: other queries may run meanwhile
        try:
            for batch in _arrow_reader(cursor, sql):
                yield pa.Table.from_batches([batch]).cast(schema)
        finally:
            cursor.close()


def _scan(paths) -> str:
    files = [paths] if isinstance(paths, Path) else list(paths)
    return f"read_parquet([{', '.join(_lit(p) for p in files)}])"


def _arrow_reader(con: duckdb.DuckDBPyConnection, sql: str) -> pa.RecordBatchReader:
    """The query's rows streamed BATCH_ROWS at a time. Through a relation (`con.sql`): a
    DB-API result (`con.execute`) is materialized whole before its first batch."""
    relation = con.sql(sql)
    if hasattr(relation, "to_arrow_reader"):  # DuckDB 2 renamed fetch_record_batch
        return relation.to_arrow_reader(BATCH_ROWS)
    return relation.fetch_record_batch(BATCH_ROWS)
