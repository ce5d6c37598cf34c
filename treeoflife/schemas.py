"""Arrow schemas of every table treeoflife writes.

These are the data contracts between stages (and with users' notebooks). Each schema carries a
version in its metadata; `schemas/*.json` publishes them and a test checks the two agree.
"""

from __future__ import annotations

import pyarrow as pa

from treeoflife.vocabulary import IngestStatus, Source, Status

RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")
"""The seven ranks. `species` always holds the specific epithet, never the binomial."""

SOURCES = tuple(s.value for s in Source)
"""Source names, in build order (the words are defined in treeoflife.vocabulary)."""

FINAL_STATUSES = tuple(s.value for s in Status)
"""Every final status of a catalog row (treeoflife.vocabulary.Status)."""

# Until sources/ingest.py and dedup/hashing.py import IngestStatus (the vocabulary sweep).
INGEST_OK = IngestStatus.OK.value
INGEST_FAILED = IngestStatus.FAILED.value

SPLITS = ("train", "val")
"""Primary splits; `train_small` is a deterministic subset of `train` (flag `in_train_small`)."""


def _with_meta(schema: pa.Schema, name: str, version: str) -> pa.Schema:
    return schema.with_metadata({"treeoflife.table": name, "treeoflife.version": version})


_VERBATIM = [
    pa.field("verbatim_kingdom", pa.string()),
    pa.field("verbatim_phylum", pa.string()),
    pa.field("verbatim_class", pa.string()),
    pa.field("verbatim_order", pa.string()),
    pa.field("verbatim_family", pa.string()),
    pa.field("verbatim_genus", pa.string()),
    pa.field("verbatim_scientific_name", pa.string()),
    pa.field("verbatim_common_name", pa.string()),
]

_SOURCE_IDS = [
    pa.field("eol_content_id", pa.int64()),
    pa.field("eol_page_id", pa.int64()),
    pa.field("inat21_file", pa.string()),
    pa.field("inat21_category_id", pa.int64()),
    pa.field("bioscan_processid", pa.string()),
    pa.field("bioscan_part", pa.string()),
    pa.field("bioscan_filename", pa.string()),
]

_IMAGE = [
    pa.field("image_file", pa.string()),  # image store tar, relative to the data root
    pa.field("image_offset", pa.int64()),  # byte offset of the member's data in that tar
    pa.field("image_size", pa.int64()),  # member size in bytes
    pa.field("md5", pa.string()),  # hex md5 of the stored (normalised) bytes
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
]

SOURCE_CATALOG = _with_meta(
    pa.schema(
        [
            pa.field("key", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            *_SOURCE_IDS,
            *_VERBATIM,
            pa.field("license", pa.string()),
            pa.field("rights_holder", pa.string()),
            pa.field("source_url", pa.string()),
            pa.field("status", pa.string(), nullable=False),  # ok | failed
            pa.field("reason", pa.string()),  # why failed (null when ok)
            *_IMAGE,
        ]
    ),
    "source_catalog",
    "1",
)
"""One row per input row of a source (every row counted, failed ones included).

Written per chunk as `catalog/<source>/part-%05d.parquet`; images go to
`images/<source>/part-%05d.tar`.
"""

TAXA = _with_meta(
    pa.schema(
        [
            pa.field("query_id", pa.string(), nullable=False),
            *_VERBATIM[:7],
            *[pa.field(r, pa.string()) for r in RANKS],
            pa.field("scientific_name", pa.string()),  # canonical name of the resolved taxon
            pa.field("common_name", pa.string()),
            pa.field("taxon_id", pa.string()),  # authority key, always TEXT
            pa.field("authority", pa.string()),  # e.g. gbif-backbone
            pa.field("match_type", pa.string()),  # exact|synonym|fuzzy|higherrank|source|none
            pa.field("confidence", pa.float64()),
            *[pa.field(f"{r}_provenance", pa.string()) for r in RANKS],
            *[pa.field(f"{r}_match_type", pa.string()) for r in RANKS],
            pa.field("flags", pa.list_(pa.string())),
            pa.field("reason", pa.string()),  # why unresolved (null when resolved)
        ]
    ),
    "taxa",
    "2",
)
"""One row per distinct (verbatim ranks, verbatim name) query; catalog rows join it by query_id."""

HASHES = _with_meta(
    pa.schema(
        [
            pa.field("key", pa.string(), nullable=False),
            pa.field("md5", pa.string()),
            pa.field("phash", pa.uint64()),
            pa.field("phash_algo", pa.string()),
        ]
    ),
    "hashes",
    "1",
)

REMOVALS = _with_meta(
    pa.schema(
        [
            pa.field("key", pa.string(), nullable=False),
            pa.field("reason", pa.string(), nullable=False),
            pa.field("evalset", pa.string()),
            pa.field("eval_key", pa.string()),
            pa.field("distance", pa.int32()),
        ]
    ),
    "removals",
    "1",
)

CATALOG = _with_meta(
    pa.schema(
        [
            pa.field("key", pa.string(), nullable=False),
            pa.field("treeoflife_id", pa.string(), nullable=False),  # uuid5 of the key
            pa.field("source", pa.string(), nullable=False),
            *_SOURCE_IDS,
            *[pa.field(r, pa.string()) for r in RANKS],
            pa.field("scientific_name", pa.string()),
            pa.field("common_name", pa.string()),
            pa.field("taxon_id", pa.string()),
            pa.field("match_type", pa.string()),
            *[pa.field(f"{r}_provenance", pa.string()) for r in RANKS],
            *[pa.field(f"{r}_match_type", pa.string()) for r in RANKS],
            pa.field("query_id", pa.string()),
            *_VERBATIM,
            pa.field("license", pa.string()),
            pa.field("rights_holder", pa.string()),
            pa.field("source_url", pa.string()),
            pa.field("md5", pa.string()),
            pa.field("phash", pa.uint64()),
            pa.field("phash_algo", pa.string()),
            pa.field("width", pa.int32()),
            pa.field("height", pa.int32()),
            pa.field("status", pa.string(), nullable=False),  # kept|failed|removed|excluded
            pa.field("reason", pa.string()),
            pa.field("removal_evalset", pa.string()),
            pa.field("removal_eval_key", pa.string()),
            pa.field("removal_distance", pa.int32()),
            pa.field("split", pa.string()),  # train|val, null unless kept
            pa.field("in_train_small", pa.bool_()),
            pa.field("shard", pa.string()),  # e.g. train/shard-000000.tar
            pa.field("shard_position", pa.int32()),  # sample index inside that shard
        ]
    ),
    "catalog",
    "2",
)
"""The release catalog: one row per input image, with its final status."""

SHARD_INDEX = _with_meta(
    pa.schema(
        [
            pa.field("treeoflife_id", pa.string(), nullable=False),
            pa.field("key", pa.string(), nullable=False),
            pa.field("shard", pa.string(), nullable=False),  # file name, e.g. shard-000000.tar
            pa.field("position", pa.int32(), nullable=False),
            pa.field("offset", pa.int64(), nullable=False),
            pa.field("size", pa.int64(), nullable=False),
            pa.field("jpg_offset", pa.int64(), nullable=False),
            pa.field("jpg_size", pa.int64(), nullable=False),
        ]
    ),
    "shard_index",
    "1",
)
"""`shards/<split>/index.parquet`: where each sample's bytes are, one row group per shard."""

EVAL_HASHES = _with_meta(
    pa.schema(
        [
            pa.field("evalset", pa.string(), nullable=False),
            pa.field("eval_key", pa.string(), nullable=False),  # filepath relative to its root
            pa.field("label", pa.string()),  # the set's own class label, verbatim
            pa.field("kingdom", pa.string()),
            pa.field("phylum", pa.string()),
            pa.field("class", pa.string()),
            pa.field("order", pa.string()),
            pa.field("family", pa.string()),
            pa.field("genus", pa.string()),
            pa.field("species", pa.string()),
            pa.field("common_name", pa.string()),
            pa.field("md5", pa.string()),
            pa.field("phash", pa.uint64()),
            pa.field("phash_algo", pa.string()),
            pa.field("status", pa.string(), nullable=False),  # ok | failed
            pa.field("reason", pa.string()),  # null when ok
        ]
    ),
    "eval_hashes",
    "2",
)
"""One row per image an evaluation set lists, in the set's order (failed rows included).

Written as `hashes/evalsets/<name>.parquet`; the dedup stage matches training hashes to it.
"""

EOL_FETCH_STATUS = _with_meta(
    pa.schema(
        [
            pa.field("key", pa.string(), nullable=False),
            pa.field("url", pa.string()),  # after mirror rewriting; null when the row has none
            pa.field("status", pa.string(), nullable=False),  # ok | failed | skipped
            pa.field("reason", pa.string()),  # null when ok
            pa.field("http_status", pa.int32()),  # last HTTP status seen
            pa.field("bytes", pa.int64()),  # body bytes received
            pa.field("md5", pa.string()),  # of the stored image
            pa.field("width", pa.int32()),
            pa.field("height", pa.int32()),
            pa.field("attempts", pa.int32()),
            pa.field("elapsed", pa.float64()),  # seconds, retries and waits included
            pa.field("runs", pa.int32()),  # runs that fetched the row (transient reruns)
        ]
    ),
    "eol_fetch_status",
    "2",
)
"""One row per EOL manifest row, beside each part: `catalog/eol/part-%05d.status.parquet`.

Not byte-reproducible (attempts and elapsed depend on the servers); the catalog part is.
"""

ALL = {
    "source_catalog": SOURCE_CATALOG,
    "eol_fetch_status": EOL_FETCH_STATUS,
    "taxa": TAXA,
    "hashes": HASHES,
    "removals": REMOVALS,
    "eval_hashes": EVAL_HASHES,
    "catalog": CATALOG,
    "shard_index": SHARD_INDEX,
}
