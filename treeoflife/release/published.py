"""A published rebuild's release: the published ids, split and (label mode `published`)
labels replace ours, row for row, joined by key from the plan (`published/plan.parquet`).

Rows the plan does not name (a duplicate key's `#dup` rows) keep what assembly gave them.
Our dedup still removes copies of evaluation images and held-out species: which published
training images that removes is in the reproduction report.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from treeoflife import splits
from treeoflife.config import BuildConfig
from treeoflife.io import write_text_atomic
from treeoflife.release.label_diff import write_label_diff
from treeoflife.release.reproduction import write_reproduction
from treeoflife.schemas import RANKS
from treeoflife.sources.published.ingest import plan_path
from treeoflife.vocabulary import Status

PROVENANCE = "published"  # provenance and match type of a published label

PLAN_COLUMNS = ["treeoflife_id", "key", "split", "in_train_small", *RANKS, "common"]


def read_plan(cfg: BuildConfig, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(plan_path(cfg), columns=columns or PLAN_COLUMNS)


def _aligned(plan: pa.Table, keys: pa.Array) -> tuple[pa.Table, pa.Array]:
    """The plan rows in the order of `keys` (nulls where a key is not planned), and a mask."""
    where = pc.index_in(keys, value_set=plan.column("key"))
    return plan.take(where), pc.is_valid(where)


def _set(table: pa.Table, name: str, values, mask) -> pa.Table:
    i = table.schema.get_field_index(name)
    field = table.schema.field(i)
    values = values.cast(field.type) if values.type != field.type else values
    return table.set_column(i, field, pc.if_else(mask, values, table.column(i)))


def scientific_names(plan: pa.Table) -> pa.Array:
    """`Genus species` when both are given, else the most specific rank given."""
    both = pc.binary_join_element_wise(plan["genus"], plan["species"], " ")
    return pc.coalesce(both, *[plan[r] for r in reversed(RANKS[:-1])])


def published_labels(cfg: BuildConfig, joined: pa.Table) -> pa.Table:
    """The joined stage tables with the published seven ranks and common name (exactly)."""
    plan, planned = _aligned(read_plan(cfg), joined.column("key"))
    out = joined
    for rank in RANKS:
        out = _set(out, rank, plan[rank], planned)
        tag = pc.if_else(pc.is_valid(plan[rank]), PROVENANCE, pa.scalar(None, pa.string()))
        out = _set(out, f"{rank}_provenance", tag, planned)
        out = _set(out, f"{rank}_match_type", tag, planned)
    out = _set(out, "scientific_name", scientific_names(plan), planned)
    out = _set(out, "common_name", plan["common"], planned)
    out = _set(out, "match_type", pa.array([PROVENANCE] * len(plan), pa.string()), planned)
    return _set(out, "taxon_id", pa.nulls(len(plan), pa.string()), planned)


def published_splits(
    cfg: BuildConfig, catalog: pa.Table, order: dict[str, list[str]]
) -> tuple[pa.Table, dict[str, list[str]]]:
    """The assembled catalog with the published treeoflife_id, split and train_small flag,
    and the shard order of each split re-derived from them (same seeded shuffle)."""
    plan, planned = _aligned(read_plan(cfg), catalog.column("key"))
    kept = pc.equal(catalog.column("status"), Status.KEPT.value)
    catalog = _set(catalog, "treeoflife_id", plan["treeoflife_id"], planned)
    split = pc.if_else(kept, plan["split"], pa.scalar(None, pa.string()))
    catalog = _set(catalog, "split", split, planned)
    small = pc.if_else(
        pc.and_(kept, pc.equal(plan["split"], "train")),
        pc.fill_null(plan["in_train_small"], False),
        pa.scalar(None, pa.bool_()),
    )
    catalog = _set(catalog, "in_train_small", small, planned)
    seed = cfg.shards.seed
    keys = catalog.column("key")
    order = {
        name: splits.shuffled(
            keys.filter(pc.fill_null(pc.equal(catalog["split"], name), False)).to_pylist(), seed
        )
        for name in ("train", "val")
    }
    small_keys = set(keys.filter(pc.fill_null(catalog["in_train_small"], False)).to_pylist())
    order["train_small"] = [k for k in order["train"] if k in small_keys]
    return catalog, order


def before_assembly(cfg: BuildConfig, release_dir, joined: pa.Table) -> tuple[pa.Table, dict]:
    """Write the label diff (resolved labels against the published ones); in label mode
    `published`, return the joined tables with the published labels."""
    plan = read_plan(cfg)
    mode = cfg.published.label_mode
    diff = write_label_diff(release_dir, joined, plan, mode)
    if mode == "published":
        joined = published_labels(cfg, joined)
    return joined, {"label_mode": mode, "label_diff": diff}


def link_report_pages(release_dir) -> None:
    """Link the label diff and reproduction pages from the stats report's first screen."""
    index = Path(release_dir) / "report" / "index.html"
    html = index.read_text(encoding="utf-8")
    links = (
        "<p>Published rebuild: <a href='reproduction.html'>reproduction report</a> · "
        "<a href='label_diff.html'>label diff</a></p>"
    )
    head, sep, tail = html.partition("</h1>")
    write_text_atomic(index, head + sep + links + tail if sep else html)


def after_release(cfg: BuildConfig, release_dir, public: pa.Table) -> dict:
    """The reproduction report, from the release catalog and the plan."""
    plan = read_plan(cfg, ["treeoflife_id", "source", "split", "problem"])
    report = write_reproduction(release_dir, plan, public, dict(cfg.published.expected_totals))
    return {"reproduction": {"total": report["total"], "card_totals": report["card_totals"]}}
