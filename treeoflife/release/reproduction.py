"""The reproduction report of a published rebuild: per source, what the published catalog
lists, what was found, what is missing and why, against the dataset card's totals; and the
published training images our evaluation-set dedup removes.

`reproduction.json`, `reproduction.md` and `published_dedup_removals.parquet` in the release.
Missing reasons are grouped: `url_gone` (the EOL URLs answer 404/410/403 or no file),
`md5_changed` (the bytes differ from licenses.csv), `file_absent` (not in the user's copy or
the image sets), `unreadable` (bytes that are not a usable image), `transient` (a timeout or
5xx: the next run fetches again), `catalog_row` (the published row itself cannot be used).
"""

from __future__ import annotations

import html as _html
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from treeoflife.io import write_parquet_atomic, write_text_atomic
from treeoflife.schemas import RANKS
from treeoflife.sources.download import is_transient
from treeoflife.vocabulary import Reason, Status, http_reason

FAILED, KEPT, REMOVED = Status.FAILED.value, Status.KEPT.value, Status.REMOVED.value

GROUPS = {
    "url_gone": {Reason.NOT_FOUND, Reason.NO_URL, *(http_reason(s) for s in (401, 403, 404, 410))},
    "md5_changed": {Reason.MD5_MISMATCH},
    "file_absent": {Reason.FILE_ABSENT, Reason.MISSING_IN_ARCHIVE},
    "catalog_row": {Reason.UNKNOWN_SPLIT, Reason.CONFLICTING_SPLITS, Reason.NO_SOURCE_ID,
                    Reason.MALFORMED_ROW, Reason.NO_LICENSE_ROW, Reason.DUPLICATE_KEY},
}  # fmt: skip


def reason_group(reason: str | None) -> str:
    for group, reasons in GROUPS.items():
        if reason in reasons:
            return group
    if reason and reason.startswith("http_4"):
        return "url_gone"
    if is_transient(reason):
        return "transient"
    return "unreadable"


def _counts(table: pa.Table, keys: list[str]) -> list[dict]:
    return table.group_by(keys).aggregate([([], "count_all")]).to_pylist()


def _source_report(rows: pa.Table) -> dict:
    """Counts of one source's rows (or all): published, found, missing by reason, final."""
    final = {r["status"]: r["count_all"] for r in _counts(rows, ["status"])}
    missing = rows.filter(pc.equal(rows["status"], FAILED))
    by_group: dict[str, dict[str, int]] = {}
    for r in _counts(missing, ["reason"]):
        reason = r["reason"] or "unknown"
        by_group.setdefault(reason_group(r["reason"]), {})[reason] = r["count_all"]
    seven = pc.equal(rows["status"], KEPT)
    for rank in RANKS:
        seven = pc.and_(seven, pc.is_valid(rows[rank]))
    return {
        "published": rows.num_rows,
        "found": rows.num_rows - missing.num_rows,
        "missing": missing.num_rows,
        "missing_by_reason": {g: dict(sorted(v.items())) for g, v in sorted(by_group.items())},
        "final": dict(sorted(final.items())),
        "kept_with_seven_ranks": pc.sum(pc.cast(seven, pa.int64())).as_py() or 0,
    }


def reproduction(
    plan: pa.Table, catalog: pa.Table, expected: dict[str, int]
) -> tuple[dict, pa.Table]:
    """(report, removals): `catalog` is the release catalog (published ids), `plan` the
    published plan (treeoflife_id, source, split, problem). Arrow joins and group-bys, so
    10M rows stay columnar."""
    cols = ["treeoflife_id", "key", "status", "reason", "removal_evalset",
            "removal_eval_key", "removal_distance", *RANKS]  # fmt: skip
    rows = plan.select(["treeoflife_id", "source", "split", "problem"]).join(
        catalog.select(cols), "treeoflife_id", join_type="left outer"
    )
    # Not in the release: a row naming no source, or a repeated key (its `#dup` row keeps
    # our own id): failed, with the plan's problem as the reason.
    absent = pc.is_null(rows["status"])
    fallback = pc.coalesce(
        rows["problem"],
        pc.if_else(
            pc.is_valid(rows["source"]), Reason.DUPLICATE_KEY.value, Reason.NO_SOURCE_ID.value
        ),
    )
    rows = rows.set_column(
        rows.schema.get_field_index("status"), "status",
        pc.if_else(absent, FAILED, rows["status"]),
    )  # fmt: skip
    rows = rows.set_column(
        rows.schema.get_field_index("reason"), "reason",
        pc.if_else(absent, fallback, rows["reason"]),
    )  # fmt: skip
    rows = rows.set_column(
        rows.schema.get_field_index("source"), "source", pc.fill_null(rows["source"], "(none)")
    )
    sources = {}
    for name in sorted(set(rows["source"].unique().to_pylist())):
        sources[name] = _source_report(rows.filter(pc.equal(rows["source"], name)))
    totals = _source_report(rows)
    rebuilt = {s: v["found"] for s, v in sources.items()}
    rebuilt["images"] = totals["found"]
    rebuilt["full_taxonomy"] = totals["kept_with_seven_ranks"]
    compared = {
        k: {"published": v, "rebuilt": rebuilt.get(k),
            "difference": None if rebuilt.get(k) is None else rebuilt[k] - v}
        for k, v in sorted(expected.items())
    }  # fmt: skip
    removed = rows.filter(
        pc.and_(pc.equal(rows["split"], "train"), pc.equal(rows["status"], REMOVED))
    )
    removals = (
        pa.table(
            {
                "treeoflife_id": removed["treeoflife_id"],
                "key": removed["key"],
                "source": removed["source"],
                "reason": removed["reason"],
                "evalset": removed["removal_evalset"],
                "eval_key": removed["removal_eval_key"],
                "distance": removed["removal_distance"],
            }
        )
        .cast(REMOVALS_SCHEMA)
        .sort_by("treeoflife_id")
    )
    report = {
        "sources": sources,
        "total": totals,
        "card_totals": compared,
        "published_training_removed_by_dedup": {
            "images": removals.num_rows,
            "by_reason": {r["reason"]: r["count_all"] for r in _counts(removals, ["reason"])},
            "by_evalset": {
                (r["evalset"] or "-"): r["count_all"] for r in _counts(removals, ["evalset"])
            },
        },
    }
    return report, removals


REMOVALS_SCHEMA = pa.schema(
    [
        pa.field("treeoflife_id", pa.string(), nullable=False),
        pa.field("key", pa.string()),
        pa.field("source", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("evalset", pa.string()),
        pa.field("eval_key", pa.string()),
        pa.field("distance", pa.int32()),
    ]
)


def render_markdown(report: dict) -> str:
    lines = ["# Reproduction report", "",
             "| source | published | found | missing | kept | removed | excluded "
             "| missing by reason |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for name, s in [*report["sources"].items(), ("total", report["total"])]:
        reasons = "; ".join(
            f"{g}: " + ", ".join(f"{r} {n}" for r, n in v.items())
            for g, v in s["missing_by_reason"].items()
        )
        f = s["final"]
        lines.append(
            f"| {name} | {s['published']} | {s['found']} | {s['missing']} | "
            f"{f.get('kept', 0)} | {f.get('removed', 0)} | {f.get('excluded', 0)} "
            f"| {reasons or '-'} |"
        )
    if report["card_totals"]:
        lines += ["", "## Against the dataset card", "", "| figure | card | rebuilt | difference |",
                  "|---|---:|---:|---:|"]  # fmt: skip
        for k, v in report["card_totals"].items():
            lines.append(f"| {k} | {v['published']} | {v['rebuilt']} | {v['difference']} |")
    d = report["published_training_removed_by_dedup"]
    lines += ["", "## Published training images our dedup removes", "",
              f"{d['images']} images (published_dedup_removals.parquet): "
              + (", ".join(f"{k} {v}" for k, v in d["by_reason"].items()) or "none")]  # fmt: skip
    return "\n".join(lines) + "\n"


def render_html(report: dict) -> str:
    """The reproduction report as a page of the HTML report (its tables, escaped)."""
    rows = render_markdown(report).splitlines()
    body, table = [], []
    for line in rows + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not set("".join(cells)) <= set("-:"):
                table.append(cells)
            continue
        if table:
            head, *rest = table
            body.append("<table><thead><tr>" + "".join(f"<th>{_html.escape(c)}</th>" for c in head)
                        + "</tr></thead><tbody>" + "".join(
                            "<tr>" + "".join(f"<td>{_html.escape(c)}</td>" for c in r) + "</tr>"
                            for r in rest) + "</tbody></table>")  # fmt: skip
            table = []
        if line.startswith("# "):
            body.append(f"<h1>{_html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{_html.escape(line[3:])}</h2>")
        elif line:
            body.append(f"<p>{_html.escape(line)}</p>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Reproduction report</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )


def write_reproduction(
    release_dir: Path, plan: pa.Table, catalog: pa.Table, expected: dict[str, int]
) -> dict:
    report, removals = reproduction(plan, catalog, expected)
    release_dir = Path(release_dir)
    write_parquet_atomic(removals, release_dir / "published_dedup_removals.parquet")
    write_text_atomic(
        release_dir / "reproduction.json", json.dumps(report, indent=1, sort_keys=True)
    )
    write_text_atomic(release_dir / "reproduction.md", render_markdown(report))
    write_text_atomic(release_dir / "report" / "reproduction.html", render_html(report))
    return report


__all__ = ["reason_group", "reproduction", "write_reproduction"]
