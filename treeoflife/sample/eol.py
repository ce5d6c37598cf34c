"""The EOL look-alike: media manifests, pages.csv and the mirror of the media server, with
the payload trouble-makers (CMYK, alpha PNG, EXIF rotation, truncated, HTML, 404)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from treeoflife.io import stable_hash64
from treeoflife.sample import world
from treeoflife.sample.builder import (
    OWNERS,
    RARE_PER_SOURCE,
    Picture,
    World,
    genus_look,
    species_look,
)
from treeoflife.sample.evalsets import near_copy
from treeoflife.sample.file_formats import csv_bytes
from treeoflife.sample.render import Signature, jpeg_bytes, png_bytes, signature
from treeoflife.sample.species import RARE, SPECIES_BY_NAME

EOL_MEDIA_PREFIX = "https://content.eol.org/data/media/"
EOL_MANIFEST_HEADER = (
    "EOL content ID",
    "EOL page ID",
    "Medium Source URL",
    "EOL Full-Size Copy URL",
    "License Name",
    "Copyright Owner",
)
EOL_PAGES_HEADER = (
    "page_id",
    "scientific_name",
    "kingdom",
    "phylum",
    "class",
    "order",
    "family",
    "genus",
    "common_name",
)
LICENSES = ("cc-by-4.0", "cc-by-nc-4.0", "cc-by-sa-3.0", "cc-by-nc-sa-3.0", "cc-publicdomain")


@dataclass
class _EOLRow:
    page: world.EOLPage
    ident: str
    ext: str = "jpg"
    trouble: str = ""
    outcome: dict | None = None
    payload: str = "jpeg"  # jpeg|cmyk|png_alpha|exif|truncated|html|absent|near_copy


def _eol_rows(pages: list[world.EOLPage]) -> list[_EOLRow]:
    by_name = {p.scientific_name: p for p in pages}
    rows = []
    for p in pages:
        n = (
            RARE_PER_SOURCE
            if p.render_as in SPECIES_BY_NAME and SPECIES_BY_NAME[p.render_as].role == RARE
            else p.images
        )
        rows += [
            _EOLRow(p, f"eol/{p.page_id}/{j}", trouble=p.trouble, outcome=p.expect)
            for j in range(n)
        ]
    extras = (
        ("Amanita phalloides", "jpg", "cmyk_jpeg", {"status": "kept"}, "cmyk"),
        ("Bellis perennis", "png", "png_with_alpha", {"status": "kept"}, "png_alpha"),
        ("Sciurus vulgaris", "jpg", "exif_rotated", None, "exif"),
        (
            "Morus alba",
            "jpg",
            "truncated_jpeg",
            {"status": "failed", "reason": "truncated_image"},
            "truncated",
        ),
        (
            "Pleurotus ostreatus",
            "jpg",
            "html_as_image",
            {"status": "failed", "reason": "not_an_image"},
            "html",
        ),
        (
            "Turdus merula",
            "jpg",
            "http_404",
            {"status": "failed", "reason_in": ["http_404", "not_found"]},
            "absent",
        ),
        (
            "Acer pseudoplatanus",
            "jpg",
            "near_eval_duplicate",
            {"status": "removed", "reason": "near_eval_duplicate"},
            "near_copy",
        ),
    )
    for name, ext, trouble, outcome, payload in extras:
        rows.append(
            _EOLRow(
                by_name[name],
                f"eol/{by_name[name].page_id}/{trouble}",
                ext,
                trouble,
                outcome,
                payload,
            )
        )
    return rows


def _eol_look(p: world.EOLPage) -> Signature:
    if p.render_as is None:
        return signature("", "nonsense", "Zzyxqor", "blimptavia")
    if "|" in p.render_as:
        name, kingdom = p.render_as.split("|")
        if " " in name:  # the Archaea synonym: a species of a genus outside SPECIES
            genus, epithet = name.split(" ")
            ranks = world.genus_rank_path(genus, kingdom)
            return signature(kingdom, ranks[4], genus, epithet)
        return genus_look(name, kingdom)
    return species_look(SPECIES_BY_NAME[p.render_as])


def build_eol(w: World, near_original: Picture) -> None:
    """Manifests, pages.csv and the mirror; `near_original` is the eval picture copied near."""
    pages = world.eol_pages()
    manifest, mirror = [], {}
    for k, row in enumerate(_eol_rows(pages)):
        p = row.page
        content_id = 21_000_000 + 1009 * k + p.page_id % 997
        key = f"eol/{content_id}_{p.page_id}"
        h = hashlib.blake2b(row.ident.encode(), digest_size=4).hexdigest()
        rest = f"{h[0:2]}/{h[2:4]}/{h[4:6]}/{k + 500}.{content_id}.{row.ext}"
        if k % 2:
            source_url = (
                f"https://farm{k % 9 + 1}.staticflickr.com/{4000 + k}/{content_id}_{h}_o.jpg"
            )
        else:
            source_url = f"https://inaturalist-open-data.s3.amazonaws.com/photos/{content_id}/original.{row.ext}"
        n = stable_hash64("eol-meta", row.ident)
        manifest.append(
            (
                str(content_id),
                str(p.page_id),
                source_url,
                EOL_MEDIA_PREFIX + rest,
                LICENSES[n % len(LICENSES)],
                OWNERS[n % len(OWNERS)],
            )
        )
        outcome = row.outcome
        path = f"eol/mirror/{rest}"
        if row.payload == "absent":
            pass
        elif row.payload == "html":
            mirror[path] = (
                b"<!DOCTYPE html>\n<html><head><title>Temporarily unavailable</title></head>"
                b"<body><h1>503 Service Temporarily Unavailable</h1><p>The media server is busy;"
                b" please retry later.</p></body></html>\n"
            )
        elif row.payload == "near_copy":
            mirror[path] = near_copy(near_original)[0]
        else:
            size = w.size(row.ident, 120, 320)
            if row.payload == "exif":
                size = (240, 160)  # raw pixels; shown rotated, 160 x 240
                outcome = {"status": "kept", "width": 160, "height": 240}
            upright = (size[1], size[0]) if row.payload == "exif" else size
            pic = w.picture(row.ident, _eol_look(p), upright, "train")
            mirror[path] = _eol_payload(row.payload, pic)
        if outcome is not None:
            w.expect(key, row.trouble or "", outcome)
        elif p.render_as in SPECIES_BY_NAME and SPECIES_BY_NAME[p.render_as].role == RARE:
            w.expect(key, "held_out_species", {"status": "removed", "reason": "held_out_species"})
    manifest.sort(key=lambda r: int(r[0]))
    half = (len(manifest) + 1) // 2
    w.files["eol/media_manifest_1.csv"] = csv_bytes(EOL_MANIFEST_HEADER, manifest[:half])
    w.files["eol/media_manifest_2.csv"] = csv_bytes(EOL_MANIFEST_HEADER, manifest[half:])
    page_rows = [
        (str(p.page_id), p.scientific_name, *p.ranks, p.common_name)
        for p in sorted(pages, key=lambda p: p.page_id)
    ]
    w.files["eol/pages.csv"] = csv_bytes(EOL_PAGES_HEADER, page_rows)
    w.files.update(mirror)
    w.counts["eol_rows"] = len(manifest)


def _eol_payload(kind: str, pic: Picture) -> bytes:
    if kind == "cmyk":
        return jpeg_bytes(pic.image.convert("CMYK"))
    if kind == "png_alpha":
        rgba = pic.image.convert("RGBA")
        alpha = np.full((pic.image.height, pic.image.width), 255, np.uint8)
        alpha[:, : pic.image.width // 5] = 0  # a transparent margin, like a cut-out
        rgba.putalpha(Image.fromarray(alpha, "L"))
        return png_bytes(rgba)
    if kind == "exif":
        raw = pic.image.transpose(Image.Transpose.ROTATE_90)  # Orientation 6 turns it back
        exif = Image.Exif()
        exif[0x0112] = 6
        return jpeg_bytes(raw, exif=exif.tobytes())
    if kind == "truncated":
        return pic.data[: len(pic.data) * 3 // 5]
    return pic.data
