"""Stable keys and derived ids: pure functions of inputs, so reruns give the same bytes."""

from __future__ import annotations

import hashlib
import uuid

import pyarrow as pa
import pyarrow.compute as pc

_TREEOFLIFE_NS = uuid.UUID("5b1c8f3e-6d0a-4c53-9f7e-2b9a7a1d0e11")

VERBATIM_QUERY_FIELDS = (
    "verbatim_kingdom",
    "verbatim_phylum",
    "verbatim_class",
    "verbatim_order",
    "verbatim_family",
    "verbatim_genus",
    "verbatim_scientific_name",
)
TAXONOMY_QUERY_COLUMNS = ("query_id", "source", *VERBATIM_QUERY_FIELDS, "verbatim_common_name")
"""The columns of a taxonomy query table (one list for the pipeline, resolver and ITIS)."""


def inat21_key(file_uuid: str) -> str:
    return f"inat21/{file_uuid}"


def bioscan_key(processid: str) -> str:
    return f"bioscan/{processid}"


def eol_key(content_id: int | str, page_id: int | str) -> str:
    return f"eol/{content_id}_{page_id}"


def treeoflife_id(key: str) -> str:
    """The public id of an image: a UUID5 of its stable key."""
    return str(uuid.uuid5(_TREEOFLIFE_NS, key))


def query_id(source: str, verbatim: dict) -> str:
    """Id of a taxonomy query: the source plus its verbatim ranks and name, as given.

    Rows with the same verbatim context share one resolution (one row in the taxa table).
    """
    parts = [source] + [(verbatim.get(f) or "") for f in VERBATIM_QUERY_FIELDS]
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:20]


def query_keys(table: pa.Table) -> pa.ChunkedArray:
    """Per row, the text `records.query_id` hashes: source and verbatim fields joined by \x1f,
    a missing value as "" (column-wise: no Python object per row)."""
    cols = [table.column(c).cast(pa.string()) for c in ("source", *VERBATIM_QUERY_FIELDS)]
    return pc.binary_join_element_wise(*cols, "\x1f", null_handling="replace", null_replacement="")


def hash_query_keys(keys: pa.Array) -> pa.Array:
    """query_id of each distinct key text (the only per-value Python: one per distinct query)."""
    return pa.array(
        [hashlib.sha1(k.encode("utf-8")).hexdigest()[:20] for k in keys.to_pylist()], pa.string()
    )


def query_id_column(table: pa.Table) -> pa.ChunkedArray:
    """`records.query_id` of every row of a catalog, computed once per distinct query and
    spread back by dictionary index: at 10M rows the per-row Python loop this replaces held a
    dict per row and took minutes."""
    if table.num_rows == 0:
        return pa.chunked_array([], pa.string())
    encoded = query_keys(table).combine_chunks().dictionary_encode()
    return pa.chunked_array([pc.take(hash_query_keys(encoded.dictionary), encoded.indices)])
