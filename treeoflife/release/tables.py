"""The release's tables out of core: DuckDB joins and sorts, Python sees one batch at a time.

1. `assembled.parquet`: every source catalog row joined with its taxon, hash and removal (and,
   in a published rebuild, its plan row), in key order; each batch assembled row by row
   (treeoflife.assemble.assemble_rows: final status, split, id, shard order); keys checked unique.
2. Each split's rows in shard order (`split_rows`), streamed to the shard writer.
3. The catalog rows in the catalog's SORT_ORDER with the shard locations the writer chose
   (`catalog_batches`), streamed to the catalog writer.

DuckDB works under `memory_limit` and spills to the work folder beyond it, so the driver holds a
bounded amount whatever the number of images (the in-memory tables this replaces held ~3.6 KB
per image: ~36 GB at 10M). The work folder is the build's scratch space: removed when the
release is done, and swept at the start of the next release after a kill.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
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
from treeoflife.shards.tasks import ROWS_SCHEMA, OrderedRows
from treeoflife.sources.catalogs import add_query_ids, source_parts
from treeoflife.sources.published.ingest import plan_path
from treeoflife.vocabulary import Status

MEMORY_LIMIT = "1GB"
"""DuckDB's memory for the joins and sorts; it spills to the work folder beyond it."""
BATCH_ROWS = 32_768
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
            }
        )
        self.con.execute("SET enable_progress_bar = false")
        self.assembled = self.work / "assembled.parquet"

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
        """Write `assembled.parquet` (ASSEMBLED_SCHEMA, in no particular order: every later
        read sorts by a unique order, the key last); in a published rebuild,
        diff the resolved labels against the plan's and (label mode `published`) take the
        plan's labels, ids and splits."""
        cfg, progress = self.cfg, or_null(progress)
        published = cfg.published.configured
        relabel = published and cfg.published.label_mode == "published"
        sql = self._joined_sql(published)
        progress.start("assemble", self.con.execute("SELECT count(*) FROM src").fetchall()[0][0])
        reader = _arrow_reader(self.con, sql)
        out = Assembled(0, DIFF_SCHEMA.empty_table() if published else None)
        diffs = []
        with pq.ParquetWriter(self.assembled, ASSEMBLED_SCHEMA, compression="lz4") as writer:
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
                writer.write_table(rows.cast(ASSEMBLED_SCHEMA))
                out.rows += rows.num_rows
                progress.advance(rows.num_rows)
        progress.finish()
        self._check_unique_keys()
        if published:
            out.label_diff = pa.concat_tables([DIFF_SCHEMA.empty_table(), *diffs])
        return out

    def _check_unique_keys(self) -> None:
        sql = (
            f"SELECT key FROM read_parquet({_lit(self.assembled)}) "
            "GROUP BY key HAVING count(*) > 1 LIMIT 3"
        )
        repeated = [r[0] for r in self.con.execute(sql).fetchall()]
        if repeated:
            raise InputError(f"catalog keys are not unique: {repeated} (and maybe more)")

    def image_files(self) -> list[str]:
        """The image stores the release's rows are read from."""
        sql = f"SELECT DISTINCT image_file FROM read_parquet({_lit(self.assembled)})"
        return sorted(r[0] for r in self.con.execute(sql).fetchall() if r[0] is not None)

    # ------------------------------------------------------------------ 2. shard order

    def split_rows(self, split: str, located_by: Path | None = None) -> OrderedRows:
        """A split's rows in shard order (ROWS_SCHEMA). `located_by`: the index of the split
        whose shard locations the rows carry (train_small's samples are train's rows)."""
        if split == "train_small":
            where = "a.split = 'train' AND a.in_train_small"
        else:
            where = f"a.split = {_lit(split)}"
        source = f"read_parquet({_lit(self.assembled)}) a"
        columns = [f"a.{_id(f.name)}" for f in ROWS_SCHEMA]
        if located_by is not None:
            prefix = _lit("train/" if split == "train_small" else f"{split}/")
            source += f" LEFT JOIN read_parquet({_lit(located_by)}) i ON a.key = i.key"
            columns[ROWS_SCHEMA.get_field_index("shard")] = (
                f"coalesce({prefix} || i.shard, a.shard) AS shard"
            )
            columns[ROWS_SCHEMA.get_field_index("shard_position")] = (
                "coalesce(CAST(i.position AS INTEGER), a.shard_position) AS shard_position"
            )
        count = self.con.execute(f"SELECT count(*) FROM {source} WHERE {where}").fetchall()[0][0]
        sql = (
            f"SELECT {', '.join(columns)} FROM {source} WHERE {where} "
            f"ORDER BY a.{SHARD_ORDER}, a.key"
        )
        return OrderedRows(count, lambda: self._batches(sql, ROWS_SCHEMA))

    def _batches(self, sql: str, schema: pa.Schema) -> Iterator[pa.Table]:
        cursor = self.con.cursor()  # its own reader: other queries may run meanwhile
        try:
            for batch in _arrow_reader(cursor, sql):
                yield pa.Table.from_batches([batch]).cast(schema)
        finally:
            cursor.close()

    # ------------------------------------------------------------------ 3. the catalog

    def catalog_batches(self, indexes: dict[str, Path]) -> Iterator[pa.Table]:
        """Catalog rows (CATALOG) in SORT_ORDER, with `shard` / `shard_position` from the
        shard indexes of `indexes` (split -> index.parquet) where a split placed the row."""
        located = [
            f"SELECT key, {_lit(split + '/')} || shard AS shard, position "
            f"FROM read_parquet({_lit(path)})"
            for split, path in indexes.items()
            if path.exists()
        ]
        columns = [f"a.{_id(f.name)}" for f in schemas.CATALOG]
        source = f"read_parquet({_lit(self.assembled)}) a"
        if located:
            source += f" LEFT JOIN ({' UNION ALL '.join(located)}) i ON a.key = i.key"
            columns[schemas.CATALOG.get_field_index("shard")] = (
                "coalesce(i.shard, a.shard) AS shard"
            )
            columns[schemas.CATALOG.get_field_index("shard_position")] = (
                "coalesce(CAST(i.position AS INTEGER), a.shard_position) AS shard_position"
            )
        order = ", ".join(f"a.{_id(c)} ASC NULLS LAST" for c in SORT_ORDER)
        sql = f"SELECT {', '.join(columns)} FROM {source} ORDER BY {order}"
        return self._batches(sql, schemas.CATALOG)

    def licenses_batches(self, catalog: Path) -> Iterator[pa.Table]:
        """The shipped images' licence columns (licenses.csv) from the written catalog, by key."""
        schema = pa.schema([schemas.CATALOG.field(c) for c in LICENSES_COLUMNS])
        sql = (
            f"SELECT {', '.join(_id(c) for c in LICENSES_COLUMNS)} "
            f"FROM read_parquet({_lit(catalog)}) WHERE status = {_lit(Status.KEPT.value)} "
            "ORDER BY key"
        )
        return self._batches(sql, schema)


def _arrow_reader(con: duckdb.DuckDBPyConnection, sql: str) -> pa.RecordBatchReader:
    """The query's rows streamed BATCH_ROWS at a time. Through a relation (`con.sql`): a
    DB-API result (`con.execute`) is materialized whole before its first batch."""
    relation = con.sql(sql)
    if hasattr(relation, "to_arrow_reader"):  # DuckDB 2 renamed fetch_record_batch
        return relation.to_arrow_reader(BATCH_ROWS)
    return relation.fetch_record_batch(BATCH_ROWS)
