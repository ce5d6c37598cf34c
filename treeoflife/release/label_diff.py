"""The label diff of a published rebuild: where our taxonomy stage disagrees with the
published labels, per image and rank, with the rule that decided our label.

`label_diff.parquet` (one row per changed image and rank: key, treeoflife_id, source, rank,
published, resolved, rule), `label_diff.json` (per rank: images compared and changed; the
largest changes by images) and `report/label_diff.html`. The rule is the resolved rank's
provenance and match type (e.g. `gbif-backbone:synonym`), `unresolved` when our taxonomy
gave the rank nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from treeoflife.io import write_parquet_atomic, write_text_atomic
from treeoflife.release.plots import esc
from treeoflife.schemas import RANKS
from treeoflife.vocabulary import IngestStatus

LABELS = (*RANKS, "common_name")
TOP = 25
PAGE_ROWS = 2000

DIFF_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("treeoflife_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("rank", pa.string(), nullable=False),  # kingdom .. species, common_name
        pa.field("published", pa.string()),
        pa.field("resolved", pa.string()),
        pa.field("rule", pa.string()),
    ]
)


def _changed(a, b) -> pa.Array:
    """Null-aware inequality: one null and one value differ; two nulls do not."""
    both_null = pc.and_(pc.is_null(a), pc.is_null(b))
    return pc.and_(pc.invert(both_null), pc.fill_null(pc.not_equal(a, b), True))


def _rule(joined: pa.Table, label: str) -> pa.Array:
    if label == "common_name":
        mt = joined["match_type"]
        return pc.binary_join_element_wise("vernacular", pc.fill_null(mt, "none"), ":")
    prov = joined[f"{label}_provenance"]
    mt = pc.fill_null(joined[f"{label}_match_type"], "")
    rule = pc.binary_join_element_wise(prov, mt, ":")
    return pc.fill_null(rule, "unresolved")


def label_diff(joined: pa.Table, plan: pa.Table) -> tuple[pa.Table, int]:
    """DIFF_SCHEMA rows: `joined` (stage tables, resolved labels) against the plan's labels,
    over the rows whose image was found (ingest ok)."""
    where = pc.index_in(joined["key"], value_set=plan["key"])
    return aligned_label_diff(joined, plan.take(where), pc.is_valid(where))


def aligned_label_diff(joined: pa.Table, plan: pa.Table, planned) -> tuple[pa.Table, int]:
    """label_diff for `joined` rows and their plan rows side by side (`planned`: the rows the
    plan names), so the release can diff one batch of the joined tables at a time."""
    found = pc.and_(planned, pc.equal(joined["status"], IngestStatus.OK.value))
    rows, p = joined.filter(found), plan.filter(found)
    parts = []
    for label in LABELS:
        published = p["common" if label == "common_name" else label]
        resolved = rows[label]
        mask = _changed(published, resolved)
        n = pc.sum(mask).as_py() or 0
        parts.append(
            pa.table(
                {
                    "key": rows["key"].filter(mask),
                    "treeoflife_id": p["treeoflife_id"].filter(mask),
                    "source": rows["source"].filter(mask),
                    "rank": pa.array([label] * n, pa.string()),
                    "published": published.filter(mask),
                    "resolved": resolved.filter(mask),
                    "rule": _rule(rows, label).filter(mask),
                },
                schema=DIFF_SCHEMA,
            )
        )
    diff = pa.concat_tables(parts) if parts else DIFF_SCHEMA.empty_table()
    return diff, rows.num_rows


def diff_summary(diff: pa.Table, compared: int) -> dict:
    """Per rank: images changed; the largest changes (rank, published -> resolved) by images."""
    per_rank = {label: 0 for label in LABELS}
    for r in diff.group_by("rank").aggregate([([], "count_all")]).to_pylist():
        per_rank[r["rank"]] = r["count_all"]
    groups = diff.group_by(["rank", "published", "resolved", "rule"]).aggregate([([], "count_all")])
    changes = sorted(
        groups.to_pylist(),
        key=lambda g: (-g["count_all"], g["rank"], g["published"] or "", g["resolved"] or ""),
    )
    return {
        "images_compared": compared,
        "images_changed": len(set(diff["key"].to_pylist())),
        "changed_by_rank": per_rank,
        "distinct_changes": len(changes),
        "largest_changes": [
            {
                "rank": g["rank"],
                "published": g["published"],
                "resolved": g["resolved"],
                "rule": g["rule"],
                "images": g["count_all"],
            }
            for g in changes[:TOP]
        ],  # fmt: skip
        "_all_changes": changes,
    }


def _table(header, rows) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_page(summary: dict, label_mode: str) -> str:
    ranks = [[k, v] for k, v in summary["changed_by_rank"].items()]
    changes = [
        [g["rank"], g["published"] or "—", g["resolved"] or "—", g["rule"], g["count_all"]]
        for g in summary["_all_changes"][:PAGE_ROWS]
    ]
    more = len(summary["_all_changes"]) - len(changes)
    note = f"<p>{more} more changes: see label_diff.parquet.</p>" if more > 0 else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Label diff</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}</style></head><body>"
        "<h1>Published labels against our taxonomy</h1>"
        f"<p>Label mode of this release: <b>{esc(label_mode)}</b>. "
        f"{summary['images_compared']} images compared, {summary['images_changed']} with at "
        "least one changed label.</p><h2>Images changed per rank</h2>"
        + _table(["rank", "images changed"], ranks)
        + "<h2>Every change (largest first)</h2>"
        + _table(["rank", "published", "resolved", "rule", "images"], changes)
        + note
        + "</body></html>\n"
    )


def write_label_diff(release_dir: Path, diff: pa.Table, compared: int, label_mode: str) -> dict:
    """Write the diff's Parquet (label_diff rows), JSON summary and HTML page; returns the
    summary."""
    diff = diff.sort_by([("rank", "ascending"), ("key", "ascending")])
    write_parquet_atomic(diff, Path(release_dir) / "label_diff.parquet")
    summary = diff_summary(diff, compared)
    write_text_atomic(
        Path(release_dir) / "report" / "label_diff.html", render_page(summary, label_mode)
    )
    public = {k: v for k, v in summary.items() if not k.startswith("_")}
    write_text_atomic(
        Path(release_dir) / "label_diff.json", json.dumps(public, indent=1, sort_keys=True)
    )
    return public
