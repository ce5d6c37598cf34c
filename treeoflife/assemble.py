"""Assemble the release catalog: every input row with its taxonomy, hashes and final status.

Joins the stage tables on disk (source catalogs, taxa, hashes, removals), decides each row's
final status with the reason, assigns splits and shard positions. Pure table work: the same
tables and config give the same catalog, row for row.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from treeoflife import records, schemas, splits
from treeoflife.config import ShardsConfig, SplitsConfig
from treeoflife.vocabulary import IngestStatus, Reason, Status

TAXA_COLUMNS = [
    "query_id",
    *schemas.RANKS,
    "scientific_name",
    "common_name",
    "taxon_id",
    "match_type",
    *[f"{r}_provenance" for r in schemas.RANKS],
    *[f"{r}_match_type" for r in schemas.RANKS],
]

# Columns kept beside the catalog to read images; never published.
IMAGE_LOCATION = ["image_file", "image_offset", "image_size"]


def final_status(catalog: pa.Table) -> tuple[pa.Array, pa.Array]:
    """status and reason per row: failed (ingest) > excluded (no taxon) > removed > kept."""
    failed = pc.equal(catalog.column("status"), IngestStatus.FAILED)
    no_taxon = pc.is_null(catalog.column("kingdom"))
    removed = pc.is_valid(catalog.column("removal_reason"))
    status = pc.if_else(
        failed,
        Status.FAILED,
        pc.if_else(
            no_taxon,
            Status.EXCLUDED,
            pc.if_else(removed, Status.REMOVED, Status.KEPT),
        ),
    )
    null = pa.scalar(None, pa.string())
    reason = pc.if_else(
        failed,
        catalog.column("reason"),
        pc.if_else(
            no_taxon,
            Reason.TAXON_UNRESOLVED,
            pc.if_else(removed, catalog.column("removal_reason"), null),
        ),
    )
    return status, reason


def join_stage_tables(
    source_catalog: pa.Table, taxa: pa.Table, hashes: pa.Table, removals: pa.Table
) -> pa.Table:
    """Source rows (with query_id) + resolved taxa + pHash + removal, sorted by key."""
    removals = removals.rename_columns(
        {
            "reason": "removal_reason",
            "evalset": "removal_evalset",
            "eval_key": "removal_eval_key",
            "distance": "removal_distance",
        }
    )
    joined = (
        source_catalog.join(taxa.select(TAXA_COLUMNS), "query_id", join_type="left outer")
        .join(hashes.select(["key", "phash", "phash_algo"]), "key", join_type="left outer")
        .join(removals, "key", join_type="left outer")
    )
    return joined.sort_by("key")


SHARD_ORDER = "shard_order"
"""Column of assembled rows (never published): the row's place in its split's seeded shard
order (splits.order_key), ties broken by key."""


def assemble_rows(joined: pa.Table, split_cfg: SplitsConfig, shard_cfg: ShardsConfig) -> pa.Table:
    """CATALOG columns + image location + SHARD_ORDER for rows of the joined stage tables.

    Row by row (a row's status, split, id and shard order depend on that row alone), so any
    batch of the joined tables can be assembled on its own. `shard` / `shard_position` stay
    null: the shard writer decides them, since byte-sized shards end where the encoded bytes
    say (see `fill_shard_locations`)."""
    status, reason = final_status(joined)
    keys = joined.column("key").to_pylist()
    kept = [s == Status.KEPT for s in status.to_pylist()]
    split_col: list[str | None] = []
    small_col: list[bool | None] = []
    for key, is_kept in zip(keys, kept, strict=True):
        if not is_kept:
            split_col.append(None)
            small_col.append(None)
            continue
        split = splits.assign_split(key, split_cfg.seed, split_cfg.val_fraction)
        split_col.append(split)
        small_col.append(
            split == "train"
            and splits.in_train_small(key, split_cfg.seed, split_cfg.train_small_fraction)
        )
    columns = {
        "key": joined.column("key"),
        "treeoflife_id": pa.array([records.treeoflife_id(k) for k in keys], pa.string()),
        "status": status,
        "reason": reason,
        "split": pa.array(split_col, pa.string()),
        "in_train_small": pa.array(small_col, pa.bool_()),
        "shard": pa.nulls(len(keys), pa.string()),
        "shard_position": pa.nulls(len(keys), pa.int32()),
    }
    out = []
    for field in schemas.CATALOG:
        col = columns[field.name] if field.name in columns else joined.column(field.name)
        out.append(col.cast(field.type) if col.type != field.type else col)
    rows = pa.Table.from_arrays(out, schema=schemas.CATALOG)
    for name in IMAGE_LOCATION:
        rows = rows.append_column(name, joined.column(name))
    order = [splits.order_key(k, shard_cfg.seed) for k in keys]
    return rows.append_column(SHARD_ORDER, pa.array(order, pa.uint64()))


def split_orders(rows: pa.Table) -> dict[str, list[str]]:
    """`train`, `val`, `train_small` -> their keys in shard order (assembled rows in memory)."""
    order: dict[str, list[str]] = {}
    placed = rows.select(["key", "split", "in_train_small", SHARD_ORDER]).sort_by(
        [(SHARD_ORDER, "ascending"), ("key", "ascending")]
    )
    split = placed.column("split")
    for name in ("train", "val"):
        order[name] = placed.column("key").filter(pc.fill_null(pc.equal(split, name), False))
        order[name] = order[name].to_pylist()
    small = pc.and_(pc.fill_null(pc.equal(split, "train"), False),
                    pc.fill_null(placed.column("in_train_small"), False))  # fmt: skip
    order["train_small"] = placed.column("key").filter(small).to_pylist()
    return order


def assemble_catalog(
    joined: pa.Table, split_cfg: SplitsConfig, shard_cfg: ShardsConfig
) -> tuple[pa.Table, dict[str, list[str]]]:
    """The release catalog (CATALOG columns + image location) and the key order per shard split,
    all in memory (tests and small tables; the release stage streams: treeoflife.release.tables).

    The second value maps `train`, `val`, `train_small` to their keys in shard order: a global
    seeded shuffle across sources (a pure function of each key and `shard_cfg.seed`), so a shard
    mixes sources and species."""
    rows = assemble_rows(joined, split_cfg, shard_cfg)
    return rows.drop_columns([SHARD_ORDER]), split_orders(rows)


def fill_shard_locations(catalog: pa.Table, index: pa.Table, split: str) -> pa.Table:
    """`catalog` with `shard` / `shard_position` set from a split's shard index (key, shard,
    position); rows not in the index keep their values. An empty split (e.g. `val_fraction: 0`)
    leaves the catalog as it is: there is no row to take a location from."""
    if index.num_rows == 0:
        return catalog
    keys = catalog.column("key")
    where = pc.index_in(keys, value_set=index.column("key"))
    found = pc.is_valid(where)
    take = pc.fill_null(where, 0)
    shard = pc.binary_join_element_wise(split, index.column("shard").take(take), "/")
    position = index.column("position").take(take).cast(pa.int32())
    i_shard = catalog.schema.get_field_index("shard")
    i_pos = catalog.schema.get_field_index("shard_position")
    catalog = catalog.set_column(
        i_shard, catalog.schema.field(i_shard), pc.if_else(found, shard, catalog.column("shard"))
    )
    return catalog.set_column(
        i_pos,
        catalog.schema.field(i_pos),
        pc.if_else(found, position, catalog.column("shard_position")),
    )


def catalog_summary(catalog: pa.Table) -> dict:
    """Counts per source, per status, per reason and per split (what the build prints).

    Arrow group-bys, not a Python dict per row (~5 GB of driver memory at 10M rows)."""
    t = catalog.select(["source", "status", "reason", "split", "in_train_small"])
    counts = t.group_by(["source", "status", "reason"], use_threads=False).aggregate(
        [([], "count_all")]
    )
    by_source: dict[str, Counter] = {}
    by_status: Counter = Counter()
    by_reason: Counter = Counter()
    for r in counts.to_pylist():
        by_source.setdefault(r["source"], Counter())[r["status"]] += r["count_all"]
        by_status[r["status"]] += r["count_all"]
        if r["reason"]:
            by_reason[f"{r['status']}:{r['reason']}"] += r["count_all"]
    split = t.column("split")
    return {
        "images": t.num_rows,
        "by_source": {s: dict(sorted(c.items())) for s, c in sorted(by_source.items())},
        "by_status": dict(sorted(by_status.items())),
        "by_reason": dict(sorted(by_reason.items())),
        "by_split": {
            "train": pc.sum(pc.equal(split, "train")).as_py() or 0,
            "val": pc.sum(pc.equal(split, "val")).as_py() or 0,
            "train_small": pc.sum(pc.fill_null(t.column("in_train_small"), False)).as_py() or 0,
        },
    }
