"""The release streams its tables out of core (treeoflife.release.tables): the outputs must not
depend on how the rows are batched or how much memory DuckDB is given, the work folder must not
outlive the release, and keys a catalog repeats must stop it with the keys named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from treeoflife.config import load_config
from treeoflife.errors import InputError
from treeoflife.layout import Layout
from treeoflife.release import tables
from treeoflife.release.stage import run_release

REPO = Path(__file__).resolve().parents[2]


def _root_before_release(built_sample, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(built_sample["root"], root, ignore=shutil.ignore_patterns("release"))
    return root


def _release_files(root: Path) -> dict[str, bytes]:
    release = root / "release"
    return {str(p.relative_to(release)): p.read_bytes() for p in release.rglob("*") if p.is_file()}


def test_release_bytes_do_not_depend_on_batches_sort_ranges_or_duckdb_memory(
    built_sample, tmp_path, monkeypatch
):
    root = _root_before_release(built_sample, tmp_path)
    cfg = load_config(REPO / "configs" / "sample.yaml", data_root=str(root))
    # Batches of 7 rows: every shard, catalog row group and licence line spans batches; sorts
    # of 37 rows: the shard order comes from 16 buckets, the catalog from ranges of taxa (a
    # taxon with more rows is a range alone), licenses.csv from ranges of keys.
    monkeypatch.setattr(tables, "BATCH_ROWS", 7)
    monkeypatch.setattr(tables, "ROWS_PER_SORT", 37)
    monkeypatch.setattr(tables, "MEMORY_LIMIT", "64MB")
    run_release(cfg)
    ours = _release_files(root)
    built = _release_files(built_sample["root"])
    assert ours.keys() == built.keys()
    assert [name for name in ours if ours[name] != built[name]] == []


def test_the_work_folder_is_gone_after_the_release_and_a_killed_ones_is_swept(
    built_sample, tmp_path
):
    root = _root_before_release(built_sample, tmp_path)
    cfg = load_config(REPO / "configs" / "sample.yaml", data_root=str(root))
    work = Layout(root).release_work
    (work / "spill").mkdir(parents=True)
    (work / "assembled.parquet").write_bytes(b"a killed release's half-written table")
    run_release(cfg)
    assert not work.exists()
    assert _release_files(root) == _release_files(built_sample["root"])


def test_a_key_two_catalog_parts_repeat_stops_the_release_naming_it(built_sample, tmp_path):
    root = _root_before_release(built_sample, tmp_path)
    cfg = load_config(REPO / "configs" / "sample.yaml", data_root=str(root))
    parts = sorted(Layout(root).catalog_dir("bioscan").glob("part-*[0-9].parquet"))
    shutil.copy(parts[0], parts[0].with_name("part-09999.parquet"))  # the same keys again
    with pytest.raises(InputError, match="not unique: .*bioscan/"):
        run_release(cfg)
    assert not Layout(root).release_work.exists()
    assert not (root / "release" / "catalog.parquet").exists()


def test_ordered_rows_reach_arrow_in_order(tmp_path):
    """An ORDER BY read from Parquet reaches Arrow in order. (DuckDB's DB-API results,
    `con.execute(...)`, without insertion order kept, hand the batches over out of order; the
    shard order and the catalog rest on this.)"""
    cfg = load_config(REPO / "configs" / "sample.yaml", data_root=str(tmp_path / "data"))
    n = 300_000
    keys = [f"k{(i * 7919) % n:012d}" for i in range(n)]  # every key once, scrambled
    pq.write_table(pa.table({"key": keys}), tmp_path / "keys.parquet")
    with tables.ReleaseTables(cfg, tmp_path / "work") as release:
        sql = f"SELECT key FROM read_parquet('{tmp_path / 'keys.parquet'}') ORDER BY key"
        got = [v for batch in release._batches(sql, pa.schema([("key", pa.string())]))
               for v in batch.column("key").to_pylist()]  # fmt: skip
    assert got == sorted(keys)
