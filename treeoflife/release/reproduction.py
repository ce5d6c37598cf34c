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

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa

from treeoflife.io import write_parquet_atomic, write_text_atomic
from treeoflife.schemas import RANKS, STATUS_FAILED, STATUS_KEPT, STATUS_REMOVED
from treeoflife.sources.download import is_transient

GROUPS = {
    "url_gone": {"not_found", "no_url", "http_404", "http_410", "http_403", "http_401"},
    "md5_changed": {"md5_mismatch"},
    "file_absent": {"file_absent", "missing_in_archive"},
    "catalog_row": {"unknown_split", "conflicting_splits", "no_source_id", "malformed_row",
                    "no_license_row", "duplicate_key"},
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


def _source_report(rows: list[dict]) -> dict:
    final = Counter(r["status"] for r in rows)
    missing = [r for r in rows if r["status"] == STATUS_FAILED]
    by_group: dict[str, dict[str, int]] = {}
    for r in missing:
        g = by_group.setdefault(reason_group(r["reason"]), {})
        g[r["reason"] or "unknown"] = g.get(r["reason"] or "unknown", 0) + 1
    full = sum(1 for r in rows if r["status"] == STATUS_KEPT and all(r[k] for k in RANKS))
    return {
        "published": len(rows),
        "found": len(rows) - len(missing),
        "missing": len(missing),
        "missing_by_reason": {g: dict(sorted(v.items())) for g, v in sorted(by_group.items())},
        "final": dict(sorted(final.items())),
        "kept_with_seven_ranks": full,
    }


def reproduction(
    plan: pa.Table, catalog: pa.Table, expected: dict[str, int]
) -> tuple[dict, pa.Table]:
    """(report, removals): `catalog` is the release catalog (published ids), `plan` the
    published plan (treeoflife_id, source, split, problem)."""
    cols = ["treeoflife_id", "key", "source", "status", "reason", "removal_evalset",
            "removal_eval_key", "removal_distance", *RANKS]  # fmt: skip
    by_id = {r["treeoflife_id"]: r for r in catalog.select(cols).to_pylist()}
    per_source: dict[str, list[dict]] = {}
    train_removed = []
    for p in plan.select(["treeoflife_id", "source", "split", "problem"]).to_pylist():
        row = by_id.get(p["treeoflife_id"])
        if row is None:  # not in the release: a row naming no source, or a repeated key
            reason = p["problem"] or ("duplicate_key" if p["source"] else "no_source_id")
            row = {"status": STATUS_FAILED, "reason": reason,
                   **dict.fromkeys(RANKS)}  # fmt: skip
        per_source.setdefault(p["source"] or "(none)", []).append(row)
        if p["split"] == "train" and row["status"] == STATUS_REMOVED:
            train_removed.append({**row, "treeoflife_id": p["treeoflife_id"]})
    sources = {s: _source_report(rows) for s, rows in sorted(per_source.items())}
    all_rows = [r for rows in per_source.values() for r in rows]
    totals = _source_report(all_rows)
    rebuilt = {s: v["found"] for s, v in sources.items()}
    rebuilt["images"] = totals["found"]
    rebuilt["full_taxonomy"] = totals["kept_with_seven_ranks"]
    compared = {
        k: {"published": v, "rebuilt": rebuilt.get(k),
            "difference": None if rebuilt.get(k) is None else rebuilt[k] - v}
        for k, v in sorted(expected.items())
    }  # fmt: skip
    removals = pa.Table.from_pylist(
        [{"treeoflife_id": r["treeoflife_id"], "key": r["key"], "source": r["source"],
          "reason": r["reason"], "evalset": r["removal_evalset"],
          "eval_key": r["removal_eval_key"], "distance": r["removal_distance"]}
         for r in sorted(train_removed, key=lambda r: r["treeoflife_id"])],
        schema=REMOVALS_SCHEMA,
    )  # fmt: skip
    report = {
        "sources": sources,
        "total": totals,
        "card_totals": compared,
        "published_training_removed_by_dedup": {
            "images": removals.num_rows,
            "by_reason": dict(sorted(Counter(removals["reason"].to_pylist()).items())),
            "by_evalset": dict(
                sorted(Counter(e or "-" for e in removals["evalset"].to_pylist()).items())
            ),
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
    return report


__all__ = ["reason_group", "reproduction", "write_reproduction"]
