"""Taxonomy queries: the distinct (source, verbatim ranks, verbatim name) combinations the
resolver labels, built from source catalogs and evaluation-set rows, one column list for all.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from treeoflife.errors import InputError
from treeoflife.records import (
    TAXONOMY_QUERY_COLUMNS,
    VERBATIM_QUERY_FIELDS,
    hash_query_keys,
    query_id,
    query_keys,
)

log = logging.getLogger(__name__)

QUERY_COLUMNS = TAXONOMY_QUERY_COLUMNS


def _catalog_queries(catalog: pa.Table, images: Counter) -> dict[str, dict]:
    """Distinct queries of a catalog, column-wise: per distinct query text its first row's
    fields, its row count and its smallest non-empty common name."""
    fields = ["source", *VERBATIM_QUERY_FIELDS]
    if catalog.num_rows == 0:
        return {}
    encoded = query_keys(catalog).combine_chunks().dictionary_encode()
    common = (
        catalog.column("verbatim_common_name").cast(pa.string())
        if "verbatim_common_name" in catalog.column_names
        else pa.nulls(catalog.num_rows, pa.string())
    )
    common = pc.if_else(pc.equal(common, ""), pa.scalar(None, pa.string()), common)
    grouped = (
        pa.table(
            {
                "q": encoded.indices,
                "row": pa.array(np.arange(catalog.num_rows, dtype=np.int64)),
                "name": common,
            }
        )
        .group_by("q", use_threads=False)
        .aggregate([("row", "min"), ("row", "count"), ("name", "min")])
        .sort_by("row_min")
    )
    ids = pc.take(hash_query_keys(encoded.dictionary), grouped.column("q")).to_pylist()
    firsts = catalog.select(fields).take(grouped.column("row_min")).to_pylist()
    by_id: dict[str, dict] = {}
    for qid, row, n, name in zip(
        ids,
        firsts,
        grouped.column("row_count").to_pylist(),
        grouped.column("name_min").to_pylist(),
        strict=True,
    ):
        images[qid] += n
        by_id[qid] = {"query_id": qid, **row, "verbatim_common_name": name}
    return by_id


def taxonomy_queries(
    catalog: pa.Table,
    extra_rows: Iterable[dict] = (),
    images: Counter | None = None,
) -> pa.Table:
    """Distinct queries of a source catalog (or several concatenated) plus `extra_rows`
    (dicts with source, the verbatim fields and verbatim_common_name, e.g. evaluation-set
    rows), ready for `resolve_taxa`.

    One row per query_id (`treeoflife.records.query_id` of source + verbatim ranks and name),
    sorted by query_id; the common name is the smallest non-empty one its rows carry (so the
    order rows come in does not matter). `images`, when given, counts the rows behind each
    query_id. The catalog is grouped column-wise; only distinct queries become Python rows.
    """
    fields = ["source", *VERBATIM_QUERY_FIELDS]
    missing = [c for c in fields if c not in catalog.column_names]
    if missing:
        raise InputError(f"catalog lacks column(s) {missing} needed for taxonomy queries")
    images = images if images is not None else Counter()
    by_id = _catalog_queries(catalog, images)
    for row in extra_rows:
        qid = query_id(row["source"], row)
        images[qid] += 1
        name = row.get("verbatim_common_name") or None
        seen = by_id.get(qid)
        if seen is None:
            by_id[qid] = {"query_id": qid, **{f: row.get(f) for f in fields}}
            by_id[qid]["verbatim_common_name"] = name
        elif name and (seen["verbatim_common_name"] is None or name < seen["verbatim_common_name"]):
            seen["verbatim_common_name"] = name
    schema = pa.schema([(c, pa.string()) for c in QUERY_COLUMNS])
    return pa.Table.from_pylist([by_id[k] for k in sorted(by_id)], schema=schema)


def prepare_queries(queries: pa.Table) -> pa.Table:
    """The queries with every QUERY_COLUMNS column as text, sorted by query_id, duplicates
    logged and dropped; a missing query_id or source column is an InputError."""
    missing = [c for c in ("query_id", "source") if c not in queries.column_names]
    if missing:
        raise InputError(f"taxonomy queries lack column(s) {missing}")
    cols = {}
    for c in QUERY_COLUMNS:
        if c in queries.column_names:
            cols[c] = queries.column(c).cast(pa.string())
        else:
            cols[c] = pa.nulls(queries.num_rows, pa.string())
    table = pa.table(cols)
    if table.column("query_id").null_count:
        raise InputError("taxonomy queries: query_id must not be null")
    table = table.take(pc.sort_indices(table, [("query_id", "ascending")]))
    ids = table.column("query_id").to_pylist()
    keep = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]]
    if len(keep) < len(ids):
        log.warning("taxonomy queries: %d duplicate query_id rows ignored", len(ids) - len(keep))
        table = table.take(pa.array(keep, pa.int64()))
    return table
