"""A contact sheet of near-duplicate pairs: training image beside the evaluation image it copies.

So a person can check the chosen threshold by eye. Pairs are drawn in the order given (the
caller picks a deterministic sample); an image that cannot be decoded is drawn as a grey
tile saying so. The sheet is no wider than its pairs need, and every caption is drawn whole,
wrapped at spaces and after '/' (keys and paths are long). The output is a JPEG written
atomically; same pairs give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont, ImageOps

from treeoflife.io import atomic_path

TILE = 160
COLUMNS = 3  # pairs per row, at most
GAP = 4  # px between the two tiles of a pair and around each pair
LINE = 13  # px per caption line
FONT_SIZE = 11
CELL_W = 2 * TILE + 3 * GAP
CAPTION_W = CELL_W - 2 * GAP


@dataclass(frozen=True)
class SheetPair:
    train: bytes | None
    evaluation: bytes | None
    caption: str  # e.g. "d=6  eol/123_4  ~  rare_species:img/5.jpg"


def _tile(data: bytes | None) -> Image.Image:
    tile = Image.new("RGB", (TILE, TILE), (96, 96, 96))
    if data is None:
        return tile
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (TILE, TILE))
            img = ImageOps.exif_transpose(img).convert("RGB")
            img.thumbnail((TILE, TILE), Image.Resampling.BICUBIC)
            tile.paste(img, ((TILE - img.width) // 2, (TILE - img.height) // 2))
    except Exception:  # noqa: BLE001 - draw what can be drawn; a broken image stays grey
        ImageDraw.Draw(tile).text((8, TILE // 2), "undecodable", fill=(255, 255, 255))
    return tile


def caption_lines(text: str, font, width: float = CAPTION_W) -> list[str]:
    """`text` in lines of at most `width` px, broken at spaces or after '/' (a word is never
    split unless it alone is wider than a line); joined back they give `text` whole."""
    pieces = re.findall(r"[^ /]*/|[^ /]+ ?| ", text) or [""]
    lines: list[str] = []
    line = ""
    for piece in pieces:
        if font.getlength((line + piece).rstrip()) <= width or not line:
            line += piece
        else:
            lines.append(line)
            line = piece
        while font.getlength(line.rstrip()) > width:  # one piece wider than a line
            fits = (k for k in range(len(line) - 1, 0, -1) if font.getlength(line[:k]) <= width)
            cut = next(fits, 1)
            lines.append(line[:cut])
            line = line[cut:]
    lines.append(line)
    return lines


def render_contact_sheet(pairs: list[SheetPair]) -> Image.Image:
    """The sheet as an image: up to COLUMNS pairs per row, each pair its two tiles over its
    whole caption; the sheet is as wide as its rows need and each row as tall as its longest
    caption."""
    font = ImageFont.load_default(size=FONT_SIZE)
    if not pairs:
        sheet = Image.new("RGB", (CELL_W, 2 * LINE + GAP), (255, 255, 255))
        ImageDraw.Draw(sheet).text((GAP, GAP), "no near-duplicate pairs", fill=(0, 0, 0), font=font)
        return sheet
    columns = min(COLUMNS, len(pairs))
    captions = [caption_lines(p.caption, font) for p in pairs]
    rows = [captions[i : i + columns] for i in range(0, len(captions), columns)]
    heights = [GAP + TILE + GAP + LINE * max(len(c) for c in row) + GAP for row in rows]
    sheet = Image.new("RGB", (columns * CELL_W, sum(heights)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (pair, lines) in enumerate(zip(pairs, captions, strict=True)):
        x, y = (i % columns) * CELL_W, sum(heights[: i // columns])
        sheet.paste(_tile(pair.train), (x + GAP, y + GAP))
        sheet.paste(_tile(pair.evaluation), (x + 2 * GAP + TILE, y + GAP))
        for line_no, line in enumerate(lines):
            top = y + 2 * GAP + TILE + LINE * line_no
            draw.text((x + GAP, top), line.rstrip(), fill=(0, 0, 0), font=font)
    return sheet


def write_contact_sheet(pairs: list[SheetPair], path) -> None:
    sheet = render_contact_sheet(pairs)
    with atomic_path(path) as tmp:
        sheet.save(tmp, "JPEG", quality=85)


def sample_near_pairs(removals, k: int, reasons=("near_eval_duplicate",)):
    """Up to k removal rows to draw: the largest distances first (the ones worth a look),
    ties in a fixed pseudo-random order (sha1 of the key), so the choice is reproducible."""
    rows = [r for r in removals.to_pylist() if r["reason"] in reasons]
    rows.sort(key=lambda r: (-(r["distance"] or 0), hashlib.sha1(r["key"].encode()).hexdigest()))
    return rows[: max(0, k)]
