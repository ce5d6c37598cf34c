"""The plan of a published rebuild: catalog.csv joined with licenses.csv, one row per image.

TreeOfLife-10M publishes (dataset card, https://huggingface.co/datasets/imageomics/TreeOfLife-10M)
`metadata/catalog.csv` (split, treeoflife_id, source ids, seven ranks, common) and
`metadata/licenses.csv` (treeoflife_id, EOL ids, md5, both EOL URLs, licence). `train_small` is a
duplicated subset of `train`: those rows are folded into one row per treeoflife_id with
`in_train_small`. DuckDB does the reading, folding and join out of core, so planning 10M rows
stays in bounded memory (bench/published_plan.py).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import duckdb
import pyarrow as pa

from treeoflife.errors import InputError
from treeoflife.io import atomic_path
from treeoflife.schemas import RANKS
from treeoflife.vocabulary import Reason

log = logging.getLogger(__name__)

CATALOG_COLUMNS = (
    "split", "treeoflife_id", "eol_content_id", "eol_page_id", "bioscan_part",
    "bioscan_filename", "inat21_filename", "inat21_cls_name", "inat21_cls_num",
    *RANKS, "common",
)  # fmt: skip
"""catalog.csv's columns, as the dataset card lists them."""

LICENSE_COLUMNS = (
    "treeoflife_id", "eol_content_id", "eol_page_id", "md5", "medium_source_url",
    "eol_full_size_copy_url", "license_name", "copyright_owner", "license_link", "title",
)  # fmt: skip
"""licenses.csv's columns, as the dataset card lists them."""

PUBLISHED_SPLITS = ("train", "val", "train_small")

PLAN_SCHEMA = pa.schema(
    [
        pa.field("treeoflife_id", pa.string(), nullable=False),
        pa.field("source", pa.string()),  # eol | inat21 | bioscan | null (no source id)
        pa.field("key", pa.string()),  # our stable key (null when the row names no source)
        pa.field("split", pa.string()),  # train | val (train_small folded into the flag)
        pa.field("in_train_small", pa.bool_()),
        pa.field("catalog_rows", pa.int32()),  # rows of catalog.csv behind this image
        pa.field("eol_content_id", pa.int64()),
        pa.field("eol_page_id", pa.int64()),
        pa.field("bioscan_part", pa.string()),
        pa.field("bioscan_filename", pa.string()),
        pa.field("inat21_filename", pa.string()),
        pa.field("inat21_cls_name", pa.string()),
        pa.field("inat21_cls_num", pa.string()),
        *[pa.field(r, pa.string()) for r in RANKS],
        pa.field("common", pa.string()),
        pa.field("md5", pa.string()),
        pa.field("eol_full_size_copy_url", pa.string()),
        pa.field("medium_source_url", pa.string()),
        pa.field("license_name", pa.string()),
        pa.field("copyright_owner", pa.string()),
        pa.field("license_link", pa.string()),
        pa.field("title", pa.string()),
        pa.field("problem", pa.string()),  # why the row cannot be rebuilt (null when it can)
    ]
)

# An image's source: the first of EOL, iNat21, BIOSCAN whose id the row carries.
_SOURCE = """CASE
  WHEN c.eol_content_id IS NOT NULL THEN 'eol'
  WHEN c.inat21_filename IS NOT NULL THEN 'inat21'
  WHEN c.bioscan_filename IS NOT NULL THEN 'bioscan' END"""

# Our stable keys (records.py): eol/<content>_<page>, inat21/<file uuid>, bioscan/<file stem>.
_KEY = """CASE
  WHEN c.eol_content_id IS NOT NULL THEN 'eol/' || c.eol_content_id || '_' || c.eol_page_id
  WHEN c.inat21_filename IS NOT NULL
    THEN 'inat21/' || regexp_replace(regexp_extract(c.inat21_filename, '[^/]*$'), '\\.[^.]*$', '')
  WHEN c.bioscan_filename IS NOT NULL
    THEN 'bioscan/' || regexp_replace(c.bioscan_filename, '\\.[^.]*$', '') END"""


def _q(name: str) -> str:
    return f'"{name}"'  # `order` and `class` are SQL words


def _header(con, path: Path) -> list[str]:
    try:
        rel = con.sql(
            "SELECT * FROM read_csv(?, header=true, all_varchar=true, sample_size=1) LIMIT 0",
            params=[str(path)],
        )
    except duckdb.Error as exc:
        raise InputError(f"published {path}: unreadable ({exc})") from None
    return [c.strip() for c in rel.columns]


def _check_columns(con, path: Path, wanted: tuple[str, ...]) -> None:
    if not path.is_file():
        raise InputError(f"published {path}: no such file")
    missing = [c for c in wanted if c not in _header(con, path)]
    if missing:
        raise InputError(f"published {path}: missing column(s) {', '.join(missing)}")


def _csv(path: Path, columns: tuple[str, ...]) -> str:
    """The CSV's named columns (others ignored), every value text."""
    cols = ", ".join(f'"{c}"' for c in columns)
    return (
        f"(SELECT {cols} FROM read_csv('{_quote(path)}', header=true, all_varchar=true, "
        "quote='\"', escape='\"', null_padding=true))"
    )


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


def write_plan(
    catalog: Path,
    licenses: Path | None,
    out: Path,
    memory_limit: str = "1GB",
    threads: int | None = None,
) -> dict:
    """Fold and join the published CSVs into `out` (Parquet, PLAN_SCHEMA, sorted by source
    then treeoflife_id); returns counts. Rows that cannot be rebuilt stay, with a `problem`."""
    con = duckdb.connect(config={"memory_limit": memory_limit, "preserve_insertion_order": False})
    con.execute(f"SET threads={threads or min(4, os.cpu_count() or 1)}")
    con.execute("SET enable_progress_bar=false")
    tmp_dir = out.parent / ".duckdb-tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    con.execute(f"SET temp_directory='{_quote(tmp_dir)}'")
    _check_columns(con, catalog, CATALOG_COLUMNS)
    if licenses is not None:
        _check_columns(con, licenses, LICENSE_COLUMNS)
        lic = _csv(licenses, LICENSE_COLUMNS)
    else:
        lic = "(SELECT " + ", ".join(f"NULL::VARCHAR AS {c}" for c in LICENSE_COLUMNS) + ")"
    cols = ", ".join(_q(c) for c in CATALOG_COLUMNS)
    wide = ", ".join(f"any_value({_q(c)}) AS {_q(c)}" for c in CATALOG_COLUMNS[2:])
    lcols = ", ".join(_q(c) for c in LICENSE_COLUMNS)
    lwide = ", ".join(f"any_value({_q(c)}) AS {_q(c)}" for c in LICENSE_COLUMNS[1:])
    # One row per image without a wide GROUP BY (the costly part at 10M rows): an image's row
    # is its only non-train_small row; the rare images listed otherwise (train_small only,
    # or twice) are folded by a GROUP BY over just those.
    sql = f"""
    WITH raw AS (
      SELECT {cols} FROM {_csv(catalog, CATALOG_COLUMNS)} WHERE treeoflife_id IS NOT NULL
    ),
    flags AS (
      SELECT treeoflife_id,
        CASE WHEN bool_or(split = 'val') THEN 'val'
             WHEN bool_or(split IN ('train', 'train_small')) THEN 'train' END AS split,
        bool_or(split = 'train_small') AS in_train_small,
        count(*)::INTEGER AS catalog_rows,
        count(*) FILTER (WHERE split IS DISTINCT FROM 'train_small') AS n_main,
        bool_or(split NOT IN ('train', 'val', 'train_small') OR split IS NULL) AS bad_split,
        bool_or(split = 'val') AND bool_or(split IN ('train', 'train_small')) AS two_splits
      FROM raw GROUP BY treeoflife_id
    ),
    odd AS (SELECT treeoflife_id FROM flags WHERE n_main <> 1),
    rows AS (
      SELECT * EXCLUDE (split) FROM raw
      WHERE split IS DISTINCT FROM 'train_small' AND treeoflife_id NOT IN (SELECT * FROM odd)
      UNION ALL
      SELECT treeoflife_id, {wide} FROM raw
      WHERE treeoflife_id IN (SELECT * FROM odd) GROUP BY treeoflife_id
    ),
    c AS (SELECT * FROM rows JOIN flags USING (treeoflife_id)),
    lraw AS (SELECT {lcols} FROM {lic} WHERE treeoflife_id IS NOT NULL),
    ldup AS (SELECT treeoflife_id FROM lraw GROUP BY 1 HAVING count(*) > 1),
    l AS (
      SELECT * FROM lraw WHERE treeoflife_id NOT IN (SELECT * FROM ldup)
      UNION ALL
      SELECT treeoflife_id, {lwide} FROM lraw
      WHERE treeoflife_id IN (SELECT * FROM ldup) GROUP BY treeoflife_id
    )
    SELECT c.treeoflife_id, {_SOURCE} AS source, {_KEY} AS key, c.split, c.in_train_small,
      c.catalog_rows,
      TRY_CAST(c.eol_content_id AS BIGINT) AS eol_content_id,
      TRY_CAST(c.eol_page_id AS BIGINT) AS eol_page_id,
      c.bioscan_part, c.bioscan_filename, c.inat21_filename, c.inat21_cls_name,
      c.inat21_cls_num, {", ".join("c." + _q(r) for r in RANKS)}, c.common,
      lower(l.md5) AS md5, l.eol_full_size_copy_url, l.medium_source_url, l.license_name,
      l.copyright_owner, l.license_link, l.title,
      CASE
        WHEN c.bad_split THEN '{Reason.UNKNOWN_SPLIT.value}'
        WHEN c.two_splits THEN '{Reason.CONFLICTING_SPLITS.value}'
        WHEN ({_SOURCE}) IS NULL THEN '{Reason.NO_SOURCE_ID.value}'
        WHEN c.eol_content_id IS NOT NULL AND (TRY_CAST(c.eol_content_id AS BIGINT) IS NULL
             OR TRY_CAST(c.eol_page_id AS BIGINT) IS NULL) THEN '{Reason.MALFORMED_ROW.value}'
        WHEN c.eol_content_id IS NOT NULL AND l.treeoflife_id IS NULL
             THEN '{Reason.NO_LICENSE_ROW.value}'
        WHEN c.eol_content_id IS NOT NULL AND l.eol_full_size_copy_url IS NULL
             AND l.medium_source_url IS NULL THEN '{Reason.NO_URL.value}'
      END AS problem
    FROM c LEFT JOIN l USING (treeoflife_id)
    ORDER BY source NULLS LAST, c.treeoflife_id
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(out) as tmp:
            con.execute(f"COPY ({sql}) TO '{_quote(tmp)}' (FORMAT parquet, ROW_GROUP_SIZE 100000)")
        counts = con.execute(
            f"""SELECT coalesce(source, '(none)'), count(*), count(problem),
                  count(*) FILTER (WHERE in_train_small), count(*) FILTER (WHERE split = 'val'),
                  sum(catalog_rows)
                FROM read_parquet('{_quote(out)}') GROUP BY 1 ORDER BY 1"""
        ).fetchall()
    except duckdb.Error as exc:
        raise InputError(f"published catalog {catalog}: {exc}") from None
    finally:
        con.close()
    return {
        "catalog_rows": sum(int(r[5]) for r in counts),  # rows naming a treeoflife_id
        "images": sum(int(r[1]) for r in counts),
        "by_source": {
            r[0]: {"images": int(r[1]), "problems": int(r[2]), "train_small": int(r[3]),
                   "val": int(r[4])}
            for r in counts
        },
    }  # fmt: skip
