"""The stats page of the sample build as a browser lays it out: headless Chromium (Debian's
`chromium`, driven over CDP by tests/support/chromium.py) reads the boxes of every label and
moves the pointer over the treemap's cells."""

from __future__ import annotations

import pytest

from tests.support.chromium import Chromium, chromium_binary
from treeoflife.release.plots import PATH_SEP

pytestmark = pytest.mark.skipif(
    chromium_binary() is None,
    reason="chromium is not installed (Debian package `chromium`; .ci/run installs it)",
)

BOX = "(e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })"


def _overlap(a, b, tolerance=0.5) -> bool:
    return min(a[2], b[2]) - max(a[0], b[0]) > tolerance and (
        min(a[3], b[3]) - max(a[1], b[1]) > tolerance
    )


def _inside(inner, outer, tolerance=1.0) -> bool:
    return (
        inner[0] >= outer[0] - tolerance
        and inner[1] >= outer[1] - tolerance
        and inner[2] <= outer[2] + tolerance
        and inner[3] <= outer[3] + tolerance
    )


@pytest.fixture(scope="module")
def page(built_sample):
    with Chromium(width=1100, height=900) as browser:
        browser.open((built_sample["release"] / "report" / "index.html").as_uri())
        yield browser


def _elements(page, selector: str, fields: str) -> list[dict]:
    """[{box, ...fields}] of every element matching `selector`; `fields` is a JS object
    literal body over `e` (the element)."""
    return page.evaluate(
        f"[...document.querySelectorAll({selector!r})].map(e => ({{box: {BOX}(e), {fields}}}))"
    )


def test_treemap_labels_never_overlap_and_name_every_cell(page):
    page.evaluate("document.querySelector('svg.treemap').scrollIntoView()")
    cells = _elements(page, "svg.treemap rect", "path: e.dataset.path, level: e.dataset.level")
    labels = _elements(page, "svg.treemap text", "path: e.dataset.path, text: e.textContent")
    assert len(cells) >= 10 and labels
    by_path = {c["path"]: c for c in cells}
    for label in labels:
        assert _inside(label["box"], by_path[label["path"]]["box"]), label
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            assert not _overlap(a["box"], b["box"]), (a, b)
    # Every cell is named on the map: by its own label, or (a cell too small for its own)
    # by the label of the kingdom or phylum drawn over it.
    named = {label["path"] for label in labels}
    for cell in cells:
        parts = cell["path"].split(PATH_SEP)
        ancestors = {PATH_SEP.join(parts[: k + 1]) for k in range(len(parts))}
        assert ancestors & named, f"{cell['path']} has no label"
    for label in labels:  # a shortened label still starts with its name
        name = label["path"].split(PATH_SEP)[-1]
        assert label["text"].startswith(name[:3]), label


def test_hovering_phylum_and_class_cells_shows_their_names(page):
    page.evaluate("document.querySelector('svg.treemap').scrollIntoView()")
    cells = _elements(
        page,
        "svg.treemap rect[data-level=phylum], svg.treemap rect[data-level=class]",
        "name: e.dataset.name, level: e.dataset.level, path: e.dataset.path",
    )
    assert {c["level"] for c in cells} == {"phylum", "class"}
    hovered = 0
    for cell in cells:
        x0, y0, x1, y1 = cell["box"]
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue
        # A phylum's own area is its header band (its classes cover the rest).
        y = y0 + 6 if cell["level"] == "phylum" else (y0 + y1) / 2
        page.hover((x0 + x1) / 2, y)
        title = page.evaluate(
            "(() => { const e = [...document.querySelectorAll(':hover')].pop();"
            " const t = e && e.querySelector('title'); return t ? t.textContent : ''; })()"
        )
        # The tooltip of what is under the pointer names the cell (and its kingdom).
        assert cell["name"] in title and cell["path"].split(PATH_SEP)[0] in title, (cell, title)
        hovered += 1
    assert hovered >= 10


def test_every_plot_has_labelled_axes_with_ticks(page):
    plots = page.evaluate("document.querySelectorAll('svg.chart:not(.treemap)').length")
    assert plots >= 3
    for i in range(plots):
        svg = f"document.querySelectorAll('svg.chart:not(.treemap)')[{i}]"
        page.evaluate(f"{svg}.scrollIntoView()")
        frame = page.evaluate(f"{BOX}({svg})")
        marks = page.evaluate(f"[...{svg}.querySelectorAll('.bar, .data')].map({BOX})")
        assert marks, i
        data = [min(m[0] for m in marks), min(m[1] for m in marks)]
        data += [max(m[2] for m in marks), max(m[3] for m in marks)]
        for axis in ("x-axis", "y-axis"):
            title = page.evaluate(
                f"(e => ({{box: {BOX}(e), text: e.textContent}}))"
                f"({svg}.querySelector('.{axis} .axis-title'))"
            )
            ticks = page.evaluate(
                f"[...{svg}.querySelectorAll('.{axis} .tick text')]"
                f".map(e => ({{box: {BOX}(e), text: e.textContent}}))"
            )
            assert title["text"].strip(), (i, axis)
            assert len({t["text"] for t in ticks}) >= 3, (i, axis, ticks)
            boxes = [t["box"] for t in ticks] + [title["box"]]
            for k, a in enumerate(boxes):
                assert _inside(a, frame), (i, axis, a, frame)  # nothing drawn off the plot
                for b in boxes[k + 1 :]:
                    assert not _overlap(a, b), (i, axis, a, b)
            # The axis title sits outside the data: not on the curve, not on the bars.
            assert not _overlap(title["box"], data), (i, axis, title)
