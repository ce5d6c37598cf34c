"""Small real inputs made by code: COCO JSON + tar.gz, BIOSCAN TSV + zips, EOL CSVs + files."""

from __future__ import annotations

import csv
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from treeoflife.io import md5_hex, read_image_bytes

HTML = b"<!DOCTYPE html><html><body><h1>Oops</h1></body></html>"


def jpeg(seed: int, width: int = 24, height: int = 16) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def png_rgba(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (10, 10, 4), dtype=np.uint8), "RGBA")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def add_member(tar: tarfile.TarFile, name: str, data: bytes, **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data) if info.isfile() else None)


INAT_CATEGORIES = [
    {
        "id": 0,
        "name": "Lumbricus terrestris",
        "common_name": "Common Earthworm",
        "supercategory": "Animals",
        "kingdom": "Animalia",
        "phylum": "Annelida",
        "class": "Clitellata",
        "order": "Haplotaxida",
        "family": "Lumbricidae",
        "genus": "Lumbricus",
        "specific_epithet": "terrestris",
        "image_dir_name": (
            "00000_Animalia_Annelida_Clitellata_Haplotaxida_Lumbricidae_Lumbricus_terrestris"
        ),
    },
    {
        "id": 1,
        "name": "Bellis perennis",
        "common_name": "Common Daisy",
        "supercategory": "Plants",
        "kingdom": "Plantae",
        "phylum": "Tracheophyta",
        "class": "Magnoliopsida",
        "order": "Asterales",
        "family": "Asteraceae",
        "genus": "Bellis",
        "specific_epithet": "perennis",
        "image_dir_name": (
            "00001_Plantae_Tracheophyta_Magnoliopsida_Asterales_Asteraceae_Bellis_perennis"
        ),
    },
]


def inat_file_name(split: str, i: int) -> str:
    cat = INAT_CATEGORIES[i % 2]
    return f"{split}/{cat['image_dir_name']}/{i:08x}-0000-4000-8000-{i:012x}.jpg"


def make_inat(
    folder: Path,
    split: str = "train",
    n: int = 5,
    *,
    missing: tuple[int, ...] = (),
    html: tuple[int, ...] = (),
    reverse: bool = False,
    extras: bool = True,
    seed: int = 0,
) -> tuple[dict, dict[str, bytes]]:
    """Write <split>.json and <split>.tar.gz; return (archive config mapping, member bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    payloads = {}
    for i in range(n):
        name = inat_file_name(split, i)
        images.append(
            {
                "id": seed * 1000 + i,
                "file_name": name,
                "width": 24,
                "height": 16,
                "license": 1,
                "rights_holder": f"observer {i}",
            }
        )
        payloads[name] = HTML if i in html else jpeg(seed * 1000 + i)
    data = {
        "info": {"year": 2021},
        "licenses": [{"id": 1, "name": "CC BY 4.0", "url": "https://creativecommons.org/"}],
        "categories": INAT_CATEGORIES,
        "images": images,
        "annotations": [
            {"id": im["id"], "image_id": im["id"], "category_id": i % 2}
            for i, im in enumerate(images)
        ],
    }
    (folder / f"{split}.json").write_text(json.dumps(data))
    names = [inat_file_name(split, i) for i in range(n) if i not in missing]
    if reverse:
        names.reverse()
    with tarfile.open(folder / f"{split}.tar.gz", "w:gz") as tar:
        add_member(tar, f"{split}/", b"", type=tarfile.DIRTYPE)
        for name in names:
            add_member(tar, name, payloads[name])
        if extras:
            add_member(tar, f"{split}/unlisted.jpg", jpeg(999))
            add_member(tar, "../escape.jpg", jpeg(998))
            add_member(tar, "/etc/absolute.jpg", jpeg(997))
            add_member(tar, f"{split}/link.jpg", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd")
    return {
        "images": str(folder / f"{split}.tar.gz"),
        "annotations": str(folder / f"{split}.json"),
    }, payloads


BIOSCAN_HEADER = [
    "sampleid",
    "processid",
    "uri",
    "name",
    "phylum",
    "class",
    "order",
    "family",
    "subfamily",
    "tribe",
    "genus",
    "species",
    "subspecies",
    "nucraw",
    "image_file",
    "large_diptera_family",
    "medium_diptera_family",
    "small_diptera_family",
    "large_insect_order",
    "medium_insect_order",
    "small_insect_order",
    "chunk_number",
    "copyright_license",
    "copyright_holder",
]


def bioscan_line(processid: str, chunk: int, ranks: dict[str, str], image_file=None) -> list[str]:
    values = {h: "not_classified" for h in BIOSCAN_HEADER}
    values.update(
        sampleid=f"S-{processid}",
        processid=processid,
        uri="BOLD:AAA0001",
        name=ranks.get("species") or ranks.get("genus") or ranks.get("family") or "Insecta",
        phylum="Arthropoda",
        nucraw="ACGT",
        image_file=image_file or f"{processid}.jpg",
        chunk_number=str(chunk),
        copyright_license="CreativeCommons - Attribution",
        copyright_holder="CBG Photography Group",
        **{k: "train" for k in BIOSCAN_HEADER[15:21]},
    )
    values["class"] = "Insecta"
    values.update(ranks)
    return [values[h] for h in BIOSCAN_HEADER]


def write_tsv(path: Path, header: list[str], lines: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        w.writerows(lines)


def write_zip(path: Path, members: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o100644 << 16
            zf.writestr(info, data)
        for name in symlinks:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")


EOL_HEADER = [
    "EOL content ID",
    "EOL page ID",
    "Medium Source URL",
    "EOL Full-Size Copy URL",
    "License Name",
    "Copyright Owner",
]

PAGES_HEADER = [
    "page_id",
    "scientific_name",
    "kingdom",
    "phylum",
    "class",
    "order",
    "family",
    "genus",
    "common_name",
]


def write_csv(path: Path, header: list[str], lines: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(lines)


def read_catalog(data_root: Path, source: str):
    """All parts of a source catalog, in part order, plus the list of part files."""
    parts = sorted((data_root / "catalog" / source).glob("part-?????.parquet"))
    tables = [pq.read_table(p) for p in parts]
    return tables, parts


def rows_of(tables) -> list[dict]:
    return [row for t in tables for row in t.to_pylist()]


def stored_bytes(data_root: Path, row: dict) -> bytes:
    data = read_image_bytes(data_root, row["image_file"], row["image_offset"], row["image_size"])
    assert md5_hex(data) == row["md5"]
    return data


def snapshot(folder: Path, exclude_suffix: str = ".status.parquet") -> dict[str, bytes]:
    """Relative path -> bytes of every file under `folder` (status files excluded, and the
    parts' records in state/parts: they name input paths and mtimes, facts of one machine)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and not p.name.endswith(exclude_suffix)
        and "state/parts" not in p.relative_to(folder).as_posix()
    }
