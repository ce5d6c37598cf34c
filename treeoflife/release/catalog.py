"""The release catalog: one Parquet file, one row per input image, schema CATALOG.

Rows are sorted by source, then kingdom .. species, then key (SORT_ORDER), with zstd, column
statistics and a page index, in row groups of ROW_GROUP_SIZE rows: each row group holds a
narrow range of sources and taxa, so DuckDB and polars skip every row group whose min/max
cannot match a filter on source or on a rank (`WHERE genus = 'Corvus'` reads the few groups of
that genus in each source). Ten million rows make one file of a few hundred MB, which every
tool reads by row group; no partitioning needed. Validation here is the last gate before
publishing: every row has a final status, and every row that is not in the shards says why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from treeoflife.errors import InputError
from treeoflife.io import atomic_path, writing
from treeoflife.schemas import CATALOG, FINAL_STATUSES, RANKS
from treeoflife.vocabulary import Status

log = logging.getLogger(__name__)

ROW_GROUP_SIZE = 64_000
SORT_ORDER = ("source", *RANKS, "key")
"""Row order of the published catalog (nulls last): what makes row-group pruning work."""
IMAGE_LOCATION_COLUMNS = ("image_file", "image_offset", "image_size")
"""Columns a build keeps beside the catalog to read images; never published."""


def conform_catalog(table: pa.Table) -> pa.Table:
    """`table` cast to CATALOG (column order, types, metadata), validated, in SORT_ORDER.

    Image-store location columns are dropped; other unknown columns are dropped with a warning;
    missing nullable columns become nulls (with a warning); anything else is an InputError.
    """
    names = set(table.column_names)
    extra = sorted(names - set(CATALOG.names) - set(IMAGE_LOCATION_COLUMNS))
    if extra:
        log.warning("catalog: dropping columns not in the CATALOG schema: %s", extra)
    missing = [f.name for f in CATALOG if f.name not in names]
    required = [n for n in missing if not CATALOG.field(n).nullable]
    if required:
        raise InputError(f"catalog lacks required columns {required}")
    if missing:
        log.warning("catalog: filling absent columns with nulls: %s", missing)
    columns = []
    for field in CATALOG:
        if field.name in names:
            col = table.column(field.name)
            try:
                col = col.cast(field.type) if col.type != field.type else col
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InputError(f"catalog column {field.name!r}: {exc}") from exc
        else:
            col = pa.nulls(table.num_rows, field.type)
        if not field.nullable and col.null_count:
            raise InputError(f"catalog column {field.name!r} has {col.null_count} nulls")
        columns.append(col)
    out = pa.Table.from_arrays(columns, schema=CATALOG)
    _validate(out)
    return out.sort_by([(c, "ascending", "at_end") for c in SORT_ORDER])


def _validate(table: pa.Table) -> None:
    if pc.count_distinct(table.column("key")).as_py() != table.num_rows:
        raise InputError("catalog keys are not unique")
    _validate_rows(table)


def _validate_rows(table: pa.Table) -> None:
    """What every row must satisfy on its own: a final status, a reason unless kept, a place
    in the shards if kept."""
    status = table.column("status")
    bad = pc.invert(pc.is_in(status, value_set=pa.array(FINAL_STATUSES)))
    if pc.any(bad).as_py():
        values = sorted(set(pc.filter(status, bad).to_pylist()))
        raise InputError(f"catalog has unknown statuses {values}; expected {FINAL_STATUSES}")
    kept = pc.equal(status, Status.KEPT)
    no_reason = pc.and_(pc.invert(kept), pc.is_null(table.column("reason")))
    if pc.any(no_reason).as_py():
        count = pc.sum(no_reason.cast(pa.int64())).as_py()
        raise InputError(f"{count} catalog rows are not kept but carry no reason")
    for col in ("split", "shard", "shard_position"):
        unplaced = pc.and_(kept, pc.is_null(table.column(col)))
        if pc.any(unplaced).as_py():
            count = pc.sum(unplaced.cast(pa.int64())).as_py()
            raise InputError(f"{count} kept catalog rows have no {col}")


def write_catalog(table: pa.Table, path: Path, row_group_size: int = ROW_GROUP_SIZE) -> None:
    """Write the release catalog Parquet atomically (see conform_catalog for the checks)."""
    write_catalog_batches([conform_catalog(table)], path, row_group_size)


def write_catalog_batches(
    tables: Iterable[pa.Table], path: Path, row_group_size: int = ROW_GROUP_SIZE
) -> int:
    """Write the release catalog from tables of CATALOG rows already in SORT_ORDER with unique
    keys (the release streams them out of DuckDB), checked table by table: the bytes
    write_catalog gives their concatenation, one row group at a time in memory. Returns rows."""
    rows = 0
    options = {"compression": "zstd", "write_statistics": True, "write_page_index": True}
    with writing(path), atomic_path(path) as tmp, pq.ParquetWriter(tmp, CATALOG, **options) as w:
        pending: list[pa.Table] = []
        held = 0
        for table in tables:
            if not table.schema.equals(CATALOG, check_metadata=False):
                raise InputError("catalog rows do not have the CATALOG schema")
            _validate_rows(table)
            pending.append(table)
            held += table.num_rows
            while held >= row_group_size:
                whole = pa.concat_tables(pending)
                # One chunk per column, as write_catalog's sorted table has: the Parquet
                # writer's page boundaries follow the chunks, so the bytes would differ.
                w.write_table(whole.slice(0, row_group_size).combine_chunks(), row_group_size)
                pending, held = [whole.slice(row_group_size)], held - row_group_size
                rows += row_group_size
        if held or not rows:  # an empty catalog still has its one empty row group
            rest = pa.concat_tables([CATALOG.empty_table(), *pending]).combine_chunks()
            w.write_table(rest, row_group_size)
            rows += held
    log.info("wrote catalog %s: %d rows", path, rows)
    return rows


def read_catalog(path: Path) -> pa.Table:
    """Read a release catalog; its schema must be CATALOG (fields and version)."""
    table = pq.read_table(path)
    if not table.schema.equals(CATALOG, check_metadata=False):
        raise InputError(f"{path} does not have the CATALOG schema")
    meta = table.schema.metadata or {}
    version = meta.get(b"treeoflife.version")
    if version != CATALOG.metadata[b"treeoflife.version"]:
        raise InputError(f"{path}: catalog schema version {version!r} is not supported")
    return table.replace_schema_metadata(CATALOG.metadata)
