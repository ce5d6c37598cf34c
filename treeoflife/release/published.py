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

from treeoflife.config import BuildConfig
from treeoflife.io import write_text_atomic
from treeoflife.release.reproduction import write_reproduction
from treeoflife.schemas import RANKS
from treeoflife.sources.published.ingest import plan_path
from treeoflife.vocabulary import Status

PROVENANCE = "published"  # provenance and match type of a published label

PLAN_COLUMNS = ["treeoflife_id", "key", "split", "in_train_small", *RANKS, "common"]


def read_plan(cfg: BuildConfig, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(plan_path(cfg), columns=columns or PLAN_COLUMNS)


PLAN_PREFIX = "plan:"
"""Prefix of the plan's columns beside the joined stage tables (treeoflife.release.tables)."""


def split_plan(joined: pa.Table) -> tuple[pa.Table, pa.Table, pa.Array]:
    """(stage columns, the plan's columns renamed back, which rows the plan names) of a batch
    of the joined tables that carries the plan's columns beside them."""
    names = joined.column_names
    ours = [n for n in names if not n.startswith(PLAN_PREFIX)]
    plan = pa.table({n[len(PLAN_PREFIX) :]: joined[n] for n in names if n.startswith(PLAN_PREFIX)})
    return joined.select(ours), plan, pc.is_valid(plan["key"])


def _set(table: pa.Table, name: str, values, mask) -> pa.Table:
    i = table.schema.get_field_index(name)
    field = table.schema.field(i)
    values = values.cast(field.type) if values.type != field.type else values
    return table.set_column(i, field, pc.if_else(mask, values, table.column(i)))


def scientific_names(plan: pa.Table) -> pa.Array:
    """`Genus species` when both are given, else the most specific rank given."""
    both = pc.binary_join_element_wise(plan["genus"], plan["species"], " ")
    return pc.coalesce(both, *[plan[r] for r in reversed(RANKS[:-1])])


def published_labels(joined: pa.Table, plan: pa.Table, planned) -> pa.Table:
    """The joined stage tables with the published seven ranks and common name (exactly);
    `plan` holds each row's plan row (`planned`: the rows the plan names)."""
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


def published_splits(rows: pa.Table, plan: pa.Table, planned) -> pa.Table:
    """Assembled rows with the published treeoflife_id, split and train_small flag (their shard
    order stays the seeded shuffle of their keys)."""
    kept = pc.equal(rows.column("status"), Status.KEPT.value)
    rows = _set(rows, "treeoflife_id", plan["treeoflife_id"], planned)
    split = pc.if_else(kept, plan["split"], pa.scalar(None, pa.string()))
    rows = _set(rows, "split", split, planned)
    small = pc.if_else(
        pc.and_(kept, pc.equal(plan["split"], "train")),
        pc.fill_null(plan["in_train_small"], False),
        pa.scalar(None, pa.bool_()),
    )
    return _set(rows, "in_train_small", small, planned)


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
