"""The two evaluation sets (Rare Species-style folders) and the near-duplicate of an eval
picture that a training source carries."""

from __future__ import annotations

import io
import logging

from PIL import Image

from treeoflife.sample.builder import Picture, World, species_look, stable_uuid
from treeoflife.sample.file_formats import csv_bytes
from treeoflife.sample.render import jpeg_bytes, phash64
from treeoflife.sample.species import RARE, SEEN, SPECIES

log = logging.getLogger(__name__)

EVAL_PER_SPECIES = 10

EVALSET_HEADER = (
    "kingdom",
    "phylum",
    "cls",
    "order",
    "family",
    "genus",
    "species",
    "common_name",
    "filepath",
)


def build_evalsets(w: World) -> dict[str, list[tuple[str, Picture]]]:
    """Rare Species-style folders; returns each set's (filepath, picture) for later copies."""
    made: dict[str, list[tuple[str, Picture]]] = {}
    for evalset, role in (("rare_species", RARE), ("seen_species", SEEN)):
        rows, pics = [], []
        for s in (s for s in SPECIES if s.role == role):
            for j in range(EVAL_PER_SPECIES):
                ident = f"eval/{evalset}/{s.name}/{j}"
                pic = w.picture(ident, species_look(s), w.size(ident, 128, 320), "eval")
                name = stable_uuid("eval", evalset, s.name, str(j))
                filepath = f"{s.genus}_{s.epithet}/{name}.jpg"
                w.files[f"evalsets/{evalset}/{filepath}"] = pic.data
                rows.append((*s.ranks, s.epithet, s.common_name or "", filepath))
                pics.append((filepath, pic))
        rows.sort(key=lambda r: r[-1])
        w.files[f"evalsets/{evalset}/metadata.csv"] = csv_bytes(EVALSET_HEADER, rows)
        w.counts[f"evalset_{evalset}"] = len(rows)
        made[evalset] = pics
    return made


def near_copy(original: Picture) -> tuple[bytes, Image.Image]:
    """A smaller, re-encoded copy of a picture: a near duplicate dedup must catch."""
    img = original.image
    small = img.resize((round(img.width * 0.6), round(img.height * 0.6)), Image.Resampling.LANCZOS)
    return jpeg_bytes(small, quality=70), small


def _draft_phash(data: bytes) -> int:
    """The hash as a reader using JPEG draft decoding (DCT-domain downscale) would see it."""
    with Image.open(io.BytesIO(data)) as im:
        im.draft("L", (64, 64))
        return phash64(im)


def pick_near_original(pics: list[tuple[str, Picture]]) -> tuple[str, Picture, bytes]:
    """The eval picture whose re-encoded, resized copy stays closest under both decoders."""
    best = None
    for filepath, pic in pics:
        data, small = near_copy(pic)
        d = max(
            bin(phash64(Image.open(io.BytesIO(data))) ^ pic.phash).count("1"),
            bin(_draft_phash(data) ^ _draft_phash(pic.data)).count("1"),
        )
        if best is None or d < best[0]:
            best = (d, filepath, pic, data)
    assert best is not None
    if best[0] > 4:
        log.warning("sample near-duplicate copy is %d bits from its original", best[0])
    return best[1], best[2], best[3]
