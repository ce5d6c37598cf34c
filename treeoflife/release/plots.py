"""Static SVG plots for the stats page: bar charts and a log-log line with real axes, and a
kingdom > phylum > class treemap whose labels never overprint.

Plain SVG strings (no plotting library, no JavaScript), deterministic for the same numbers.
Axis plots (`svg.plot`) have both axes drawn with tick marks, tick labels and a title outside
the plot area. The treemap is squarified (Bruls, Huizing and van Wijk, 2000: cells near
square, so names fit), and every level reserves its own header band for its label, so a
kingdom's name and its classes' names never share pixels; a name that cannot fit in its cell,
even shortened, is left to the cell's hover title and the table under the map. Text widths are
estimated from the font size with DejaVu Sans's wide metrics (the widest common sans), so a
label that fits here fits in narrower fonts too; the page's browser test checks it.
"""

from __future__ import annotations

import html
import math
from collections import Counter

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
FONT = 12  # px, axis text
CHAR_EM = 0.64  # a conservative average advance of DejaVu Sans, in em
BOLD_EM = 0.74
ELLIPSIS = "\u2026"
PATH_SEP = " \u203a "  # " › " between kingdom, phylum and class in hover titles


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def _f(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def text_width(text: str, size: float, bold: bool = False) -> float:
    """Estimated rendered width of `text` (see the module docstring)."""
    return len(text) * size * (BOLD_EM if bold else CHAR_EM)


def fit(text: str, room: float, size: float, bold: bool = False) -> str | None:
    """`text`, or its start with an ellipsis, in `room` px; None if not even 3 letters fit."""
    if text_width(text, size, bold) <= room:
        return text
    chars = int(room / (size * (BOLD_EM if bold else CHAR_EM))) - 1
    return text[:chars] + ELLIPSIS if chars >= 3 else None


# --------------------------------------------------------------------------- axes


def nice_step(span: float, ticks: int = 5) -> float:
    """A 1, 2, 2.5 or 5 x 10^k step giving about `ticks` intervals over `span`."""
    raw = max(span, 1e-9) / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def linear_ticks(top: float) -> list[float]:
    """0, step, ..., first multiple of a nice step >= top (top <= 0 gives 0 and 1)."""
    if top <= 0:
        return [0, 1]
    step = nice_step(top)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def log_ticks(top: float) -> list[int]:
    """1, 2, 5, 10, 20, 50 ... up to the first one >= top (at least 1, 2, 5, 10); only
    powers of ten when that would make more than 9 ticks."""
    top = max(top, 10)
    ticks, power = [], 1
    while not ticks or ticks[-1] < top:
        ticks += [m * power for m in (1, 2, 5) if not ticks or m * power > ticks[-1]]
        power *= 10
    ticks = [t for i, t in enumerate(ticks) if i == 0 or ticks[i - 1] < top]
    if len(ticks) > 9:
        ticks = [t for t in ticks if str(t).strip("0") == "1"]
        if ticks[-1] < top:
            ticks.append(ticks[-1] * 10)
    return ticks


def _tick_label(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:g}"


def _x_axis(x0, x1, y, ticks, pos, title) -> list[str]:
    out = [f'<g class="axis x-axis"><line x1="{_f(x0)}" y1="{_f(y)}" x2="{_f(x1)}" y2="{_f(y)}"/>']
    for t in ticks:
        x = pos(t)
        out.append(
            f'<g class="tick"><line x1="{_f(x)}" y1="{_f(y)}" x2="{_f(x)}" y2="{_f(y + 5)}"/>'
            f'<text x="{_f(x)}" y="{_f(y + 18)}" text-anchor="middle">{_tick_label(t)}</text></g>'
        )
    mid = (x0 + x1) / 2
    out.append(
        f'<text class="axis-title" x="{_f(mid)}" y="{_f(y + 38)}" text-anchor="middle">'
        f"{esc(title)}</text></g>"
    )
    return out


def _y_axis(x, y0, y1, ticks, pos, title, labels=None, title_x=14) -> list[str]:
    """A vertical axis at x from y0 (top) to y1 (bottom); `labels` replace numeric ticks."""
    out = [f'<g class="axis y-axis"><line x1="{_f(x)}" y1="{_f(y0)}" x2="{_f(x)}" y2="{_f(y1)}"/>']
    for i, t in enumerate(ticks):
        y = pos(t)
        label = labels[i] if labels else _tick_label(t)
        out.append(
            f'<g class="tick"><line x1="{_f(x - 5)}" y1="{_f(y)}" x2="{_f(x)}" y2="{_f(y)}"/>'
            f'<text x="{_f(x - 8)}" y="{_f(y + 4)}" text-anchor="end">{esc(label)}</text></g>'
        )
    mid = (y0 + y1) / 2
    out.append(
        f'<text class="axis-title" x="{_f(title_x)}" y="{_f(mid)}" text-anchor="middle" '
        f'transform="rotate(-90 {_f(title_x)} {_f(mid)})">{esc(title)}</text></g>'
    )
    return out


def bar_chart(
    items: list[tuple[str, int]], x_title: str, y_title: str, width: int = 640, bar: int = 20
) -> str:
    """Horizontal bars, one per (label, value), on a labelled value axis."""
    if not items:
        return "<p><em>none</em></p>"
    label_room = 150  # category labels, left of the axis
    x0, x1 = 28 + label_room + 8, width - 50
    top_pad, bottom = 6, 46
    y1 = top_pad + bar * len(items)
    ticks = linear_ticks(max(v for _, v in items))

    def px(v):
        return x0 + (x1 - x0) * v / ticks[-1]

    height = y1 + bottom
    out = [f'<svg class="chart plot bar-chart" width="{width}" height="{height}" role="img">']
    for i, (label, value) in enumerate(items):
        y = top_pad + i * bar
        out.append(
            f'<rect class="bar" x="{_f(x0)}" y="{_f(y + 3)}" width="{_f(px(value) - x0)}" '
            f'height="{bar - 6}" fill="{PALETTE[i % len(PALETTE)]}">'
            f"<title>{esc(label)}: {value}</title></rect>"
            f'<text class="value" x="{_f(px(value) + 4)}" y="{_f(y + bar * 0.7)}">{value}</text>'
        )
    labels = [fit(label, label_room, FONT) or ELLIPSIS for label, _ in items]
    out += _y_axis(
        x0, top_pad, y1, range(len(items)), lambda i: top_pad + (i + 0.5) * bar, y_title, labels
    )
    out += _x_axis(x0, x1, y1, ticks, px, x_title)
    out.append("</svg>")
    return "".join(out)


def log_log_chart(
    values: list[int], x_title: str, y_title: str, width: int = 640, height: int = 320
) -> str:
    """values[i] against rank i + 1 (values sorted high to low), both axes log10."""
    if not values:
        return "<p><em>none</em></p>"
    values = sorted(values, reverse=True)
    x0, x1, y0, y1 = 78, width - 24, 12, height - 48
    xt, yt = log_ticks(len(values)), log_ticks(values[0])

    def px(rank):
        return x0 + (x1 - x0) * math.log10(rank) / math.log10(xt[-1])

    def py(v):
        return y1 - (y1 - y0) * math.log10(v) / math.log10(yt[-1])

    points = " ".join(f"{_f(px(i + 1))},{_f(py(v))}" for i, v in enumerate(values) if v > 0)
    out = [
        f'<svg class="chart plot line-chart" width="{width}" height="{height}" role="img">',
        f'<polyline class="data" fill="none" stroke="{PALETTE[0]}" stroke-width="2" '
        f'points="{points}"><title>{esc(y_title)} by {esc(x_title)}</title></polyline>',
    ]
    out += _y_axis(x0, y0, y1, yt, py, y_title)
    out += _x_axis(x0, x1, y1, xt, px, x_title)
    out.append("</svg>")
    return "".join(out)


# --------------------------------------------------------------------------- treemap


def _worst(row: list[float], side: float) -> float:
    s = sum(row)
    return max(max(side * side * a / (s * s), s * s / (side * side * a)) for a in row)


def squarify(sizes: list[float], x: float, y: float, w: float, h: float) -> list[tuple]:
    """(x, y, w, h) per size (sizes high to low, > 0): rows of cells kept near square."""
    total = sum(sizes)
    if total <= 0 or w <= 0 or h <= 0:
        return [(x, y, 0.0, 0.0) for _ in sizes]
    areas = [s * w * h / total for s in sizes]
    out: list[tuple] = []
    i = 0
    while i < len(areas):
        side = min(w, h)
        row = [areas[i]]
        i += 1
        while i < len(areas) and _worst([*row, areas[i]], side) <= _worst(row, side):
            row.append(areas[i])
            i += 1
        s = sum(row)
        if w >= h:  # a column at the left
            cw = s / h
            cy = y
            for a in row:
                out.append((x, cy, cw, a / cw))
                cy += a / cw
            x, w = x + cw, w - cw
        else:  # a row at the top
            rh = s / w
            cx = x
            for a in row:
                out.append((cx, y, a / rh, rh))
                cx += a / rh
            y, h = y + rh, h - rh
    return out


def _tree(paths: Counter) -> dict:
    root: dict = {"n": 0, "children": {}}
    for path, n in sorted(paths.items()):
        node = root
        node["n"] += n
        for name in path:
            node = node["children"].setdefault(name, {"n": 0, "children": {}})
            node["n"] += n
    return root


LEVELS = ("kingdom", "phylum", "class")
_HEADER = {0: 18.0, 1: 16.0}  # px reserved on top of a kingdom / phylum cell for its label
_LABEL_SIZE = {0: 13, 1: 12, 2: 11}


def _label(level: int, path: tuple, n: int, x, y, w, h) -> str | None:
    """The svg text of a cell's name (with its count when that fits too), inside the cell
    (x, y, w, h); None when not even a shortened name fits."""
    name, size, bold = path[-1], _LABEL_SIZE[level], level < 2
    weight = ' font-weight="bold"' if bold else ""
    attrs = (
        f'class="label" data-level="{LEVELS[level]}" data-path="{esc(PATH_SEP.join(path))}" '
        f'font-size="{size}" pointer-events="none"{weight}'
    )  # the pointer goes through to the cell, whose title is the tooltip
    if h >= size + 4:  # across the top of the cell
        with_count = f"{name} ({n:,})"
        fits = text_width(with_count, size, bold) <= w - 6
        text = with_count if fits else fit(name, w - 6, size, bold)
        if text:
            return f'<text {attrs} x="{_f(x + 3)}" y="{_f(y + size)}">{esc(text)}</text>'
    if w >= size + 4:  # up the side of a tall thin cell
        text = fit(name, h - 6, size, bold)
        if text:
            bx, by = x + 3 + size * 0.8, y + h - 3
            return (
                f'<text {attrs} x="{_f(bx)}" y="{_f(by)}" '
                f'transform="rotate(-90 {_f(bx)} {_f(by)})">{esc(text)}</text>'
            )
    return None


def _cells(node: dict, path: tuple, level: int, box: tuple, color: str, out: list, named=True):
    """Append the rects and labels of `node`'s children, laid out in `box`. A kingdom or
    phylum cell names itself in a header band above its children; one too small for a band
    gets its name over its children instead, who then stay unnamed (`named` False)."""
    children = sorted(node["children"].items(), key=lambda kv: (-kv[1]["n"], kv[0]))
    rects = squarify([c["n"] for _, c in children], *box)
    for i, ((name, child), (x, y, w, h)) in enumerate(zip(children, rects, strict=True)):
        if level == 0:
            color = PALETTE[i % len(PALETTE)]
        full = (*path, name)
        title = f"{PATH_SEP.join(full)}: {child['n']:,} images"
        out.append(
            f'<rect class="cell" data-level="{LEVELS[level]}" data-name="{esc(name)}" '
            f'data-path="{esc(PATH_SEP.join(full))}" x="{_f(x)}" y="{_f(y)}" width="{_f(w)}" '
            f'height="{_f(h)}" fill="{color}" fill-opacity="0.3" stroke="#fff" '
            f'stroke-width="{3 - level}"><title>{esc(title)}</title></rect>'
        )
        inner = (x + 2, y + 2, max(w - 4, 0), max(h - 4, 0))
        header = _HEADER.get(level)
        on_top, children_named = None, named
        if header is not None and h >= header + 12 and w >= 24:
            label = _label(level, full, child["n"], x, y, w, header) if named else None
            if label:
                out.append(label)
            inner = (x + 2, y + header, max(w - 4, 0), max(h - header - 2, 0))
        elif named:
            label = _label(level, full, child["n"], x, y, w, h)
            if label and child["children"] and level + 1 < len(LEVELS):
                on_top, children_named = label, False
            elif label:
                out.append(label)
        if child["children"] and level + 1 < len(LEVELS):
            _cells(child, full, level + 1, inner, color, out, children_named)
        if on_top:
            out.append(on_top)


def treemap(paths: Counter, width: int = 900, height: int = 480) -> str:
    """Kingdom > phylum > class treemap from {(kingdom, phylum, class): images}; hovering any
    cell shows its kingdom > phylum > class path and count."""
    if not paths:
        return "<p><em>no images</em></p>"
    out: list[str] = []
    _cells(_tree(paths), (), 0, (0.0, 0.0, float(width), float(height)), PALETTE[0], out)
    body = "".join(out)
    return f'<svg class="chart treemap" width="{width}" height="{height}" role="img">{body}</svg>'
