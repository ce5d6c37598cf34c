"""The release's stats report: one static HTML page with inline SVG plots (`report/index.html`).

What a dataset user asks first: how many images per source and split, how long the tail of
images per species is, how complete the ranks are per source, what the tree looks like
(kingdom > phylum > class treemap), and what was removed and why. Plots are plain SVG written
here (no plotting library, no JavaScript, no server), so the page opens anywhere and the same
catalog gives the same bytes.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from treeoflife.io import write_text_atomic
from treeoflife.schemas import RANKS, STATUS_KEPT

REPORT_DIR = "report"
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def bar_chart(items: list[tuple[str, int]], width: int = 640, bar: int = 18) -> str:
    """Horizontal bars, one per (label, value), with the value printed."""
    if not items:
        return "<p><em>none</em></p>"
    top = max(v for _, v in items) or 1
    label_w, value_w = 220, 80
    plot_w = width - label_w - value_w
    height = bar * len(items) + 4
    out = [f'<svg class="chart" width="{width}" height="{height}" role="img">']
    for i, (label, value) in enumerate(items):
        y = 2 + i * bar
        w = plot_w * value / top
        color = PALETTE[i % len(PALETTE)]
        out.append(
            f'<text x="{label_w - 6}" y="{y + bar * 0.7:.1f}" text-anchor="end">'
            f"{_esc(label)}</text>"
            f'<rect x="{label_w}" y="{y + 2}" width="{_num(w)}" height="{bar - 4}" fill="{color}">'
            f"<title>{_esc(label)}: {value}</title></rect>"
            f'<text x="{label_w + w + 4:.1f}" y="{y + bar * 0.7:.1f}">{value}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def long_tail_chart(counts: list[int], width: int = 640, height: int = 300) -> str:
    """Images per species against species rank, both axes log10."""
    if not counts:
        return "<p><em>no species</em></p>"
    counts = sorted(counts, reverse=True)
    pad = 40
    max_x = math.log10(len(counts)) or 1.0
    max_y = math.log10(counts[0]) or 1.0
    points = []
    for i, c in enumerate(counts):
        x = pad + (width - 2 * pad) * math.log10(i + 1) / max_x
        y = height - pad - (height - 2 * pad) * math.log10(c) / max_y
        points.append(f"{x:.1f},{y:.1f}")
    out = [
        f'<svg class="chart" width="{width}" height="{height}" role="img">',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="#333"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#333"/>',
        f'<polyline fill="none" stroke="{PALETTE[0]}" stroke-width="2" '
        f'points="{" ".join(points)}"/>',
        f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle">species rank (log)</text>',
        f'<text x="{pad - 4}" y="{pad - 8}">{counts[0]}</text>',
        f'<text x="{pad - 4}" y="{height - pad + 14}">1</text>',
        f'<text x="{width - pad}" y="{height - pad + 14}" text-anchor="end">{len(counts)}</text>',
        f'<text x="{pad + 6}" y="{pad + 4}">images per species (log)</text>',
        "</svg>",
    ]
    return "".join(out)


def _treemap_rects(node: dict, x: float, y: float, w: float, h: float, depth: int, out: list):
    """Slice-and-dice treemap: children split the box along alternating axes by size."""
    children = sorted(node["children"].items(), key=lambda kv: (-kv[1]["n"], kv[0]))
    offset = 0.0
    for name, child in children:
        share = child["n"] / node["n"]
        if depth % 2 == 0:
            cx, cy, cw, ch = x + offset * w, y, w * share, h
        else:
            cx, cy, cw, ch = x, y + offset * h, w, h * share
        offset += share
        out.append((depth, name, child, cx, cy, cw, ch))
        if child["children"]:
            _treemap_rects(child, cx, cy, cw, ch, depth + 1, out)


def treemap(paths: Counter, width: int = 900, height: int = 420) -> str:
    """Kingdom > phylum > class treemap from {(kingdom, phylum, class): images}."""
    if not paths:
        return "<p><em>no images</em></p>"
    root: dict = {"n": 0, "children": {}}
    for path, n in sorted(paths.items()):
        node = root
        node["n"] += n
        for name in path:
            node = node["children"].setdefault(name, {"n": 0, "children": {}})
            node["n"] += n
    rects: list = []
    _treemap_rects(root, 0, 0, width, height, 0, rects)
    colors: dict[str, str] = {}
    out = [f'<svg class="chart" width="{width}" height="{height}" role="img">']
    for depth, name, child, x, y, w, h in rects:
        if depth == 0:
            colors[name] = PALETTE[len(colors) % len(PALETTE)]
            current = colors[name]
        fill = current if depth == 0 else "none"
        stroke_w = 3 - depth
        out.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{fill}" '
            f'fill-opacity="0.35" stroke="#fff" stroke-width="{stroke_w}">'
            f"<title>{_esc(name)}: {child['n']} images</title></rect>"
        )
        if depth == 2 and w > 60 and h > 14:
            out.append(f'<text x="{x + 3:.1f}" y="{y + 12:.1f}">{_esc(name)[: int(w / 7)]}</text>')
        elif depth < 2 and w > 80 and h > 30:
            out.append(
                f'<text x="{x + 3:.1f}" y="{y + 14 + 14 * depth:.1f}" font-weight="bold">'
                f"{_esc(name)[: int(w / 8)]}</text>"
            )
    out.append("</svg>")
    return "".join(out)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _counts(table: pa.Table, keys: list[str]) -> Counter:
    """{tuple of key values (or the value for one key): rows}, by an Arrow group-by."""
    grouped = table.group_by(keys).aggregate([([], "count_all")]).to_pylist()
    out: Counter = Counter()
    for g in grouped:
        k = tuple(g[c] for c in keys)
        out[k if len(keys) > 1 else k[0]] = g["count_all"]
    return out


def report_data(catalog: pa.Table) -> dict:
    """The numbers the report shows (Arrow group-bys: fine for ten million rows)."""
    catalog = catalog.select(["source", "status", "reason", "split", *RANKS])
    kept = catalog.filter(pc.equal(catalog.column("status"), STATUS_KEPT))
    sources = sorted(set(catalog.column("source").to_pylist()))
    named = kept.filter(
        pc.and_(pc.is_valid(kept.column("genus")), pc.is_valid(kept.column("species")))
    )
    per_source = (
        kept.group_by("source")
        .aggregate([([], "count_all"), *[(r, "count") for r in RANKS]])
        .to_pylist()
    )
    completeness = {s: dict.fromkeys(RANKS, 0.0) for s in sources}
    for g in per_source:
        completeness[g["source"]] = {r: g[f"{r}_count"] / g["count_all"] for r in RANKS}
    tree = Counter()
    for (k, p, c), n in _counts(kept, ["kingdom", "phylum", "class"]).items():
        tree[(k, p or "(unknown)", c or "(unknown)")] += n
    not_kept = catalog.filter(pc.not_equal(catalog.column("status"), STATUS_KEPT))
    return {
        "images": catalog.num_rows,
        "kept": kept.num_rows,
        "sources": sources,
        "by_source_split": _counts(kept, ["source", "split"]),
        "by_source_status": _counts(catalog, ["source", "status"]),
        "species_counts": sorted(_counts(named, ["genus", "species"]).values(), reverse=True),
        "completeness": completeness,
        "tree": tree,
        "not_kept_by_reason": _counts(not_kept, ["reason"]),
        "statuses": sorted(set(catalog.column("status").to_pylist())),
    }


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}td:first-child,th:first-child{text-align:left}
.chart text{font-size:12px}.note{color:#555}
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
        bar_chart([(s, r[-1]) for s, r in zip(d["sources"], split_rows, strict=True)]),
        "<h3>Final status per source</h3>",
        _table(["source", *d["statuses"]], status_rows),
        "<h2>Long tail: images per species</h2>",
        f"<p>{len(counts)} species with a species epithet; median {median} images per species;"
        f" {singletons} species with a single image; the largest 10% of species hold "
        f"{top10} images.</p>",
        long_tail_chart(counts),
        "<h2>Rank completeness per source</h2>",
        '<p class="note">Share of kept images with each rank resolved.</p>',
        _table(["source", *RANKS], completeness_rows),
        bar_chart(all_ranks, width=640),
        '<p class="note">Bars: % of kept images resolved to species.</p>',
        "<h2>Taxonomic overview</h2>",
        '<p class="note">Kingdom &gt; phylum &gt; class, area by kept images '
        "(hover for names and counts).</p>",
        treemap(d["tree"]),
        _table(["kingdom", "images"], [[k, n] for k, n in sorted(kingdoms.items())]),
        "<h2>Images not in the shards, per reason</h2>",
        '<p class="note">Dedup removals (exact/near evaluation duplicates, held-out species, '
        "in-train duplicates), failed ingests and unresolved taxa.</p>",
        _table(["reason", "images"], [[r, n] for r, n in reasons]),
        bar_chart([(r or "(none)", n) for r, n in reasons]),
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
