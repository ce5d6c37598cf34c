"""The release's stats report: one static HTML page with inline SVG plots (`report/index.html`).

What a dataset user asks first: how many images per source and split, how long the tail of
images per species is, how complete the ranks are per source, what the tree looks like
(kingdom > phylum > class treemap), and what was removed and why. Plots are plain SVG written
by treeoflife.release.plots (no plotting library, no JavaScript, no server), so the page opens
anywhere and the same catalog gives the same bytes. A test renders it in headless Chromium.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from treeoflife.io import write_text_atomic
from treeoflife.release.plots import PATH_SEP, bar_chart, esc, log_log_chart, treemap
from treeoflife.schemas import RANKS
from treeoflife.vocabulary import Status

REPORT_DIR = "report"
_esc = esc


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_data(catalog: pa.Table) -> dict:
    """The numbers the report shows, from one Arrow group-by over the columns it counts: the
    groups (about one per species, split and status) are what Python walks, never the rows,
    and no filtered copy of ten million rows is made."""
    keys = ["source", "status", "reason", "split", *RANKS]
    groups = catalog.select(keys).group_by(keys).aggregate([([], "count_all")]).to_pylist()
    kept = [g for g in groups if g["status"] == Status.KEPT]

    def counts(rows: list[dict], by: list[str]) -> Counter:
        out: Counter = Counter()
        for g in rows:
            k = tuple(g[c] for c in by)
            out[k if len(by) > 1 else k[0]] += g["count_all"]
        return out

    sources = sorted({g["source"] for g in groups})
    completeness = {s: dict.fromkeys(RANKS, 0.0) for s in sources}
    per_source = counts(kept, ["source"])
    for source, total in per_source.items():
        completeness[source] = {
            r: sum(g["count_all"] for g in kept if g["source"] == source and g[r] is not None)
            / total
            for r in RANKS
        }
    tree = Counter()
    for (k, p, c), n in counts(kept, ["kingdom", "phylum", "class"]).items():
        tree[(k, p or "(unknown)", c or "(unknown)")] += n
    named = [g for g in kept if g["genus"] is not None and g["species"] is not None]
    return {
        "images": sum(g["count_all"] for g in groups),
        "kept": sum(g["count_all"] for g in kept),
        "sources": sources,
        "by_source_split": counts(kept, ["source", "split"]),
        "by_source_status": counts(groups, ["source", "status"]),
        "species_counts": sorted(counts(named, ["genus", "species"]).values(), reverse=True),
        "completeness": completeness,
        "tree": tree,
        "not_kept_by_reason": counts([g for g in groups if g["status"] != Status.KEPT], ["reason"]),
        "statuses": sorted({g["status"] for g in groups}),
    }


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}td:first-child,th:first-child{text-align:left}
.chart{display:block;margin:.6em 0;font-family:"DejaVu Sans",Verdana,sans-serif}
.chart text{font-size:12px;fill:#222}.axis line{stroke:#333}.axis-title{font-weight:bold}
.treemap .cell:hover{fill-opacity:.55}.note{color:#555}
details{margin:.6em 0}summary{cursor:pointer}
"""


def render_report(catalog: pa.Table, title: str = "TreeOfLife release: statistics") -> str:
    """The report page for a release catalog (CATALOG columns)."""
    d = report_data(catalog)
    splits = ["train", "val"]
    split_rows = [
        [s, *[d["by_source_split"].get((s, sp), 0) for sp in splits]]
        + [sum(d["by_source_split"].get((s, sp), 0) for sp in splits)]
        for s in d["sources"]
    ]
    status_rows = [
        [s, *[d["by_source_status"].get((s, st), 0) for st in d["statuses"]]] for s in d["sources"]
    ]
    counts = d["species_counts"]
    singletons = sum(1 for c in counts if c == 1)
    median = sorted(counts)[len(counts) // 2] if counts else 0
    top10 = sum(counts[: max(1, len(counts) // 10)]) if counts else 0
    completeness_rows = [
        [s, *[f"{100 * d['completeness'][s][r]:.1f}%" for r in RANKS]] for s in d["sources"]
    ]
    all_ranks = [
        (s, round(100 * d["completeness"][s]["species"])) for s in d["sources"]
    ]  # share with a species epithet
    reasons = sorted(d["not_kept_by_reason"].items(), key=lambda kv: (-kv[1], kv[0] or ""))
    kingdoms = Counter()
    for (k, _p, _c), n in d["tree"].items():
        kingdoms[k] += n
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f"<p>{d['images']} images considered, {d['kept']} in the shards (status kept).</p>",
        "<h2>Images per source and split</h2>",
        _table(["source", *splits, "kept"], split_rows),
        bar_chart(
            [(s, r[-1]) for s, r in zip(d["sources"], split_rows, strict=True)],
            "images in the shards",
            "source",
        ),
        "<h3>Final status per source</h3>",
        _table(["source", *d["statuses"]], status_rows),
        "<h2>Long tail: images per species</h2>",
        f"<p>{len(counts)} species with a species epithet; median {median} images per species;"
        f" {singletons} species with a single image; the largest 10% of species hold "
        f"{top10} images.</p>",
        log_log_chart(counts, "species, largest first (log scale)", "images (log scale)"),
        "<h2>Rank completeness per source</h2>",
        '<p class="note">Share of kept images with each rank resolved.</p>',
        _table(["source", *RANKS], completeness_rows),
        bar_chart(all_ranks, "% of kept images with a species", "source"),
        '<p class="note">Bars: % of kept images resolved to species.</p>',
        "<h2>Taxonomic overview</h2>",
        '<p class="note">Kingdom &gt; phylum &gt; class, area by kept images '
        "(hover for names and counts).</p>",
        treemap(d["tree"]),
        _table(["kingdom", "images"], [[k, n] for k, n in sorted(kingdoms.items())]),
        f"<details><summary>Every class of the map ({len(d['tree'])})</summary>",
        _table(
            ["kingdom" + PATH_SEP + "phylum" + PATH_SEP + "class", "images"],
            [[PATH_SEP.join(path), n] for path, n in sorted(d["tree"].items())],
        ),
        "</details>",
        "<h2>Images not in the shards, per reason</h2>",
        '<p class="note">Dedup removals (exact/near evaluation duplicates, held-out species, '
        "in-train duplicates), failed ingests and unresolved taxa.</p>",
        _table(["reason", "images"], [[r, n] for r, n in reasons]),
        bar_chart([(r or "(none)", n) for r, n in reasons], "images", "reason"),
        "</body></html>",
        "",
    ]
    return "\n".join(parts)


def write_stats_report(release_dir: Path, catalog: pa.Table) -> Path:
    """Write `<release_dir>/report/index.html`; returns its path."""
    if "status" in catalog.column_names and catalog.num_rows:
        catalog = catalog.filter(pc.is_valid(catalog.column("status")))
    path = Path(release_dir) / REPORT_DIR / "index.html"
    write_text_atomic(path, render_report(catalog))
    return path
