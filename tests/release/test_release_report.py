import re
import xml.etree.ElementTree as ET
from collections import Counter

import pyarrow as pa

from treeoflife.release.report import render_report, report_data, treemap, write_stats_report

from .conftest import catalog_table


def _catalog() -> pa.Table:
    rows = catalog_table(60).to_pylist()
    for i, row in enumerate(rows):
        if row["status"] != "kept":
            continue
        row["kingdom"] = ("Animalia", "Plantae")[i % 2]
        row["phylum"] = "Chordata" if i % 2 == 0 else "Tracheophyta"
        row["class"] = None if i % 5 == 0 else ("Aves" if i % 2 == 0 else "Magnoliopsida")
        row["genus"] = f"Genus{i % 4}"
        row["species"] = None if row["source"] == "bioscan" else f"sp{i % 3}"
    return pa.Table.from_pylist(rows, schema=catalog_table(1).schema)


def test_numbers_match_the_catalog():
    table = _catalog()
    rows = table.to_pylist()
    d = report_data(table)
    kept = [r for r in rows if r["status"] == "kept"]
    assert d["images"] == 60 and d["kept"] == len(kept)
    assert d["by_source_split"] == Counter((r["source"], r["split"]) for r in kept)
    expected = Counter((r["genus"], r["species"]) for r in kept if r["species"])
    assert d["species_counts"] == sorted(expected.values(), reverse=True)
    assert d["completeness"]["bioscan"]["species"] == 0.0
    assert d["completeness"]["eol"]["kingdom"] == 1.0
    assert sum(d["tree"].values()) == len(kept)
    assert d["not_kept_by_reason"] == Counter(r["reason"] for r in rows if r["status"] != "kept")


def test_page_is_static_with_wellformed_svg_plots(tmp_path):
    table = _catalog()
    path = write_stats_report(tmp_path, table)
    text = path.read_text()
    assert path == tmp_path / "report" / "index.html"
    assert text == render_report(table)  # reproducible
    assert "<script" not in text and "://" not in text  # no JavaScript, no remote assets
    for heading in (
        "Images per source and split",
        "Long tail: images per species",
        "Rank completeness per source",
        "Taxonomic overview",
        "Images not in the shards, per reason",
    ):
        assert heading in text
    svgs = re.findall(r"<svg.*?</svg>", text, flags=re.S)
    assert len(svgs) >= 5
    for svg in svgs:
        ET.fromstring(svg)  # well-formed
    assert "near_eval_duplicate" in text and "http_404" in text


def test_treemap_areas_are_proportional():
    svg = treemap(
        Counter({("A", "p1", "c1"): 30, ("A", "p1", "c2"): 10, ("B", "p2", "c3"): 60}),
        width=100,
        height=100,
    )
    root = ET.fromstring(svg)
    rects = {
        r.get("data-path"): float(r.get("width")) * float(r.get("height"))
        for r in root.iter("rect")
    }
    assert abs(rects["A"] - 4000) < 1 and abs(rects["B"] - 6000) < 1
    # classes share their phylum's area (under its label band) by their images
    assert abs(rects["A › p1 › c1"] / rects["A › p1 › c2"] - 3) < 0.01
    titles = [r.find("title").text for r in root.iter("rect")]
    assert "A › p1 › c1: 30 images" in titles  # the hover names kingdom, phylum and class
    assert all(r.get("fill") != "none" for r in root.iter("rect"))  # every cell takes hovers
