import csv

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from treeoflife.errors import InputError
from treeoflife.release.card import write_licenses_csv
from treeoflife.release.catalog import (
    ROW_GROUP_SIZE,
    read_catalog,
    write_catalog,
    write_catalog_batches,
)
from treeoflife.schemas import CATALOG

from .conftest import catalog_table


def test_catalog_parquet_is_sorted_typed_and_reproducible(tmp_path):
    table = catalog_table()
    write_catalog(table, tmp_path / "a.parquet")
    # Row order of the input does not matter.
    write_catalog(table.take(list(reversed(range(table.num_rows)))), tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()

    meta = pq.ParquetFile(tmp_path / "a.parquet").metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert meta.row_group(0).column(0).statistics.has_min_max
    out = read_catalog(tmp_path / "a.parquet")
    assert out.schema.equals(CATALOG, check_metadata=True)
    order = list(zip(out.column("source").to_pylist(), out.column("key").to_pylist(), strict=True))
    assert order == sorted(order) and len(order) == table.num_rows  # same taxon: source, key
    assert "image_offset" not in out.column_names
    assert out.column("phash").to_pylist()[0] >= 2**63  # uint64 survives
    assert not list(tmp_path.glob(".*.tmp"))


def test_catalog_readable_by_duckdb_and_polars(tmp_path):
    path = tmp_path / "catalog.parquet"
    table = catalog_table()
    write_catalog(table, path)
    con = duckdb.connect()
    counts = dict(
        con.execute(
            f"SELECT status, count(*) FROM read_parquet('{path}') GROUP BY status"
        ).fetchall()
    )
    expected = dict(zip(*pc.value_counts(table.column("status")).flatten(), strict=True))
    assert counts == {k.as_py(): v.as_py() for k, v in expected.items()}
    n_train = con.execute(
        f"SELECT count(*) FROM '{path}' WHERE split = 'train' AND shard LIKE 'train/%'"
    ).fetchone()[0]
    assert n_train == pc.sum(pc.equal(table.column("split"), "train")).as_py()

    df = pl.read_parquet(path)
    assert df.height == table.num_rows
    assert df.schema["phash"] == pl.UInt64
    assert df.filter(pl.col("status") != "kept")["reason"].null_count() == 0
    assert sorted(df["key"].to_list()) == sorted(table.column("key").to_pylist())


def test_missing_nullable_columns_are_filled_and_required_checked(tmp_path):
    table = catalog_table().drop_columns(["removal_eval_key", "phash_algo"])
    write_catalog(table, tmp_path / "c.parquet")
    out = read_catalog(tmp_path / "c.parquet")
    assert out.column("removal_eval_key").null_count == out.num_rows
    with pytest.raises(InputError, match="status"):
        write_catalog(catalog_table().drop_columns(["status"]), tmp_path / "d.parquet")
    assert not (tmp_path / "d.parquet").exists()


def _with_column(table: pa.Table, name: str, values) -> pa.Table:
    i = table.column_names.index(name)
    return table.set_column(i, name, pa.array(values, table.schema.field(name).type))


@pytest.mark.parametrize(
    ("column", "change", "message"),
    [
        ("status", lambda v: ["unknown", *v[1:]], "unknown statuses"),
        ("reason", lambda v: [None] * len(v), "no reason"),
        ("key", lambda v: [v[1], *v[1:]], "not unique"),
        ("shard", lambda v: [None] * len(v), "no shard"),
    ],
)
def test_invalid_catalogs_are_refused(tmp_path, column, change, message):
    table = catalog_table()
    table = _with_column(table, column, change(table.column(column).to_pylist()))
    with pytest.raises(InputError, match=message):
        write_catalog(table, tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()


def test_read_catalog_refuses_other_tables(tmp_path):
    pq.write_table(pa.table({"key": ["a"]}), tmp_path / "x.parquet")
    with pytest.raises(InputError):
        read_catalog(tmp_path / "x.parquet")


def test_licenses_csv_lists_kept_images_sorted(tmp_path):
    table = catalog_table()
    write_licenses_csv(table, tmp_path / "licenses.csv")
    with open(tmp_path / "licenses.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [
        "key",
        "treeoflife_id",
        "source_url",
        "license",
        "rights_holder",
        "md5",
    ]
    kept = table.filter(pc.equal(table.column("status"), "kept"))
    assert [r["key"] for r in rows] == sorted(kept.column("key").to_pylist())
    by_key = {r["key"]: r for r in kept.to_pylist()}
    for r in rows:
        src = by_key[r["key"]]
        assert r["rights_holder"] == (src["rights_holder"] or "")  # commas survive quoting
        assert r["md5"] == src["md5"] and r["license"] == src["license"]


def _many_taxa(n: int = 3000) -> pa.Table:
    rows = catalog_table(n).to_pylist()
    for i, row in enumerate(rows):
        j = (i * 7919) % n  # scrambled
        genus = j % 97  # a tree: each genus lies under one kingdom and phylum
        row["kingdom"] = ("Animalia", "Plantae", "Fungi")[genus % 3]
        row["phylum"] = f"{row['kingdom']}-p{genus % 2}"
        row["genus"] = f"Genus{genus:02d}"
        row["species"] = f"sp{j % 13}"
    return pa.Table.from_pylist(rows, schema=catalog_table(1).schema)


def test_row_groups_are_sorted_by_source_and_taxon_so_filters_skip_them(tmp_path):
    path = tmp_path / "catalog.parquet"
    table = _many_taxa()
    write_catalog(table, path, row_group_size=50)
    meta = pq.ParquetFile(path).metadata
    names = meta.schema.to_arrow_schema().names
    assert meta.num_row_groups == 60

    def stats(rg, column):
        s = meta.row_group(rg).column(names.index(column)).statistics
        assert s is not None and s.has_min_max
        return s.min, s.max

    # A filter on source or kingdom can only match a few row groups (the stats say so).
    def groups_matching(column, value):
        return [
            rg
            for rg in range(meta.num_row_groups)
            if stats(rg, column)[0] <= value <= stats(rg, column)[1]
        ]

    assert len(groups_matching("source", "eol")) == 20
    assert len(groups_matching("kingdom", "Fungi")) <= 3 * 8  # ~333 rows in each source
    genus_groups = groups_matching("genus", "Genus42")
    # Lower ranks prune too, where row groups are small next to their kingdom/phylum blocks
    # (always so in a real build: a phylum holds millions of rows, a row group 64k).
    assert len(genus_groups) < 60 / 2
    # ... and the answer is the same as a full scan.
    con = duckdb.connect()
    n = con.execute(f"SELECT count(*) FROM '{path}' WHERE genus = 'Genus42'").fetchone()[0]
    assert n == pc.sum(pc.equal(table.column("genus"), "Genus42")).as_py() > 0
    lazy = pl.scan_parquet(path).filter(pl.col("source") == "eol").select(pl.len()).collect()
    assert lazy.item() == pc.sum(pc.equal(table.column("source"), "eol")).as_py()


def _large_catalog(n: int) -> pa.Table:
    """n kept rows with a long, unique URL each: enough bytes for the Parquet writer to cut
    pages and leave dictionary encoding mid row group."""
    keys = pa.array([f"eol/{i:07d}_1" for i in range(n)])
    columns = {f.name: pa.nulls(n, f.type) for f in CATALOG}
    columns.update(
        key=keys,
        treeoflife_id=keys,
        source=pa.array(["eol"] * n),
        source_url=pa.array(
            [f"https://content.eol.org/data/media/{i * 7919:012d}.jpg" for i in range(n)]
        ),
        status=pa.array(["kept"] * n),
        split=pa.array(["train"] * n),
        shard=pa.array([f"train/shard-{i // 10_000:06d}.tar" for i in range(n)]),
        shard_position=pa.array([i % 10_000 for i in range(n)], pa.int32()),
    )
    return pa.table(columns, schema=CATALOG)


def test_a_streamed_catalog_has_the_bytes_of_the_whole_table(tmp_path):
    whole = tmp_path / "whole.parquet"
    write_catalog(_large_catalog(150_000), whole)
    table = pq.read_table(whole)
    # The reference: pyarrow writing the whole table at once, with the catalog's options.
    options = {"compression": "zstd", "write_statistics": True, "write_page_index": True}
    pq.write_table(table, whole, row_group_size=ROW_GROUP_SIZE, **options)
    # Batches as DuckDB hands them over: many small chunks per row group.
    batches = [table.slice(i, 2048) for i in range(0, table.num_rows, 2048)]
    streamed = tmp_path / "streamed.parquet"
    assert write_catalog_batches(batches, streamed) == table.num_rows
    assert streamed.read_bytes() == whole.read_bytes()
    empty = tmp_path / "empty.parquet"
    pq.write_table(CATALOG.empty_table(), whole, row_group_size=ROW_GROUP_SIZE, **options)
    write_catalog_batches([], empty)
    assert empty.read_bytes() == whole.read_bytes()


def test_a_streamed_catalog_row_that_is_not_kept_without_reason_is_refused(tmp_path):
    table = _large_catalog(10).to_pylist()
    table[3]["status"] = "failed"
    with pytest.raises(InputError, match="not kept but carry no reason"):
        write_catalog_batches([pa.Table.from_pylist(table, schema=CATALOG)], tmp_path / "c")
    assert not (tmp_path / "c").exists()
