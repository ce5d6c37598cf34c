"""A contact sheet of near-duplicate pairs: training image beside the evaluation image it copies.

So a person can check the chosen threshold by eye. Pairs are drawn in the order given (the
caller picks a deterministic sample); an image that cannot be decoded is drawn as a grey
tile saying so. The output is a JPEG written atomically; same pairs give the same bytes.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont, ImageOps

from treeoflife.io import atomic_path

TILE = 160
CAPTION = 30
COLUMNS = 3  # pairs per row


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


def render_contact_sheet(pairs: list[SheetPair]) -> Image.Image:
    """The sheet as an image: COLUMNS pairs per row, each pair two tiles and a caption."""
    font = ImageFont.load_default(size=11)
    rows = max(1, math.ceil(len(pairs) / COLUMNS))
    cell_w, cell_h = 2 * TILE + 12, TILE + CAPTION
    sheet = Image.new("RGB", (COLUMNS * cell_w, rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    if not pairs:
        draw.text((10, 10), "no near-duplicate pairs", fill=(0, 0, 0), font=font)
    for i, pair in enumerate(pairs):
        x, y = (i % COLUMNS) * cell_w, (i // COLUMNS) * cell_h
        sheet.paste(_tile(pair.train), (x + 4, y))
        sheet.paste(_tile(pair.evaluation), (x + 8 + TILE, y))
        for line_no, line in enumerate(_wrap(pair.caption, 52)[:2]):
            draw.text((x + 4, y + TILE + 2 + 13 * line_no), line, fill=(0, 0, 0), font=font)
    return sheet


def _wrap(text: str, width: int) -> list[str]:
    return [text[i : i + width] for i in range(0, len(text), width)] or [""]


def write_contact_sheet(pairs: list[SheetPair], path) -> None:
    sheet = render_contact_sheet(pairs)
    with atomic_path(path) as tmp:
        sheet.save(tmp, "JPEG", quality=85)


def sample_near_pairs(removals, k: int, reasons=("near_eval_duplicate",)):
    """Up to k removal rows to draw: the largest distances first (the ones worth a look),
    ties in a fixed pseudo-random order (sha1 of the key), so the choice is reproducible."""
    import hashlib

    rows = [r for r in removals.to_pylist() if r["reason"] in reasons]
    rows.sort(key=lambda r: (-(r["distance"] or 0), hashlib.sha1(r["key"].encode()).hexdigest()))
    return rows[: max(0, k)]
