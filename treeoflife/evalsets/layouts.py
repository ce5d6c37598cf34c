"""Evaluation sets in the layouts they ship in, read into one manifest shape.

Every reader returns rows shaped like a Rare Species metadata.csv row (kingdom, phylum, cls,
order, family, genus, species, common_name, filepath) plus `class`, the set's own label, in
a deterministic order. `filepath` is relative to the set's root folder. Layouts:

- `rare_species`: BioCLIP's Rare Species `metadata.csv` (the ranks are given; `class` is None:
  the set's classes are its taxa).
- `birds525`: Kaggle's BIRDS 525 SPECIES: `birds.csv` (`class id, filepaths, labels, data set,
  scientific name`) beside `train/ valid/ test/<LABEL>/<n>.jpg`; only the `test` split is read
  (its images are what the evaluation uses). Without birds.csv the `test/<LABEL>/` folders are
  listed. Every bird is Animalia / Chordata / Aves.
- `meta_album`: BioCLIP's Meta-Album lists (`,filepath,class`, as in
  tests/fixtures/real/bioclip-evalsets/) or Meta-Album's own `labels.csv`
  (`FILE_NAME, CATEGORY, ...`, images under `images/`).
- `folder`: any `<root>/<class>/<image>` tree (torchvision ImageFolder layout).
- `manifest`: a CSV with a `filepath` column and optionally `class` and the rank columns.

A label that reads as a Latin binomial (`Lamium_galeobdolon`, `Amanita excelsa Gonn. &
Rabenh.`) fills genus and species so the taxonomy stage can resolve it; any other label
(`Corn Gray leaf spot`, `Apidae`) is kept as `class` and `common_name` only.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable
from pathlib import Path

from treeoflife.errors import InputError

log = logging.getLogger(__name__)

RANK_COLUMNS = ("kingdom", "phylum", "cls", "order", "family", "genus", "species")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")

_BINOMIAL = re.compile(r"^([A-Z][a-z]+) ([a-z][a-z-]+)(?:\s.*)?$")


def _row(filepath: str, label: str | None, **ranks: str | None) -> dict:
    row = {c: None for c in RANK_COLUMNS}
    row.update({k: v for k, v in ranks.items() if v})
    row["common_name"] = ranks.get("common_name")
    row["filepath"] = filepath
    row["class"] = label
    return row


def label_row(filepath: str, label: str, **fixed: str | None) -> dict:
    """A manifest row for a raw class label; a Latin binomial fills genus + species."""
    text = " ".join(label.replace("_", " ").split())
    m = _BINOMIAL.match(text)
    if m:
        return _row(filepath, label, genus=m.group(1), species=text, **fixed)
    return _row(filepath, label, **{"common_name": text, **fixed})


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            return list(reader.fieldnames or []), [dict(r) for r in reader]
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


def _need(path: Path, header: list[str], columns: list[str]) -> None:
    missing = [c for c in columns if c not in header]
    if missing:
        raise InputError(f"{path} lacks columns {missing} (header: {', '.join(header)})")


def _blank(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def read_rare_species(metadata: Path) -> list[dict]:
    """The rows of a Rare Species metadata.csv, in file order."""
    header, rows = _read_csv(metadata)
    _need(metadata, header, [*RANK_COLUMNS, "filepath"])
    ranks = (*RANK_COLUMNS, "common_name")
    return [_row(r["filepath"] or "", None, **{c: _blank(r.get(c)) for c in ranks}) for r in rows]


_BIRD = {"kingdom": "Animalia", "phylum": "Chordata", "cls": "Aves"}


def read_birds525(root: Path, split: str = "test") -> list[dict]:
    csv_path = root / "birds.csv"
    if csv_path.is_file():
        header, rows = _read_csv(csv_path)
        _need(csv_path, header, ["filepaths", "labels", "data set"])
        out = []
        for r in rows:
            if (r.get("data set") or "").strip().lower() != split:
                continue
            label = r["labels"].strip()
            sci = _blank(r.get("scientific name"))
            m = _BINOMIAL.match(" ".join((sci or "").split()).capitalize()) if sci else None
            if m:
                name = f"{m.group(1)} {m.group(2)}"
                row = _row(
                    r["filepaths"].strip(),
                    label,
                    genus=m.group(1),
                    species=name,
                    common_name=label.title(),
                    **_BIRD,
                )
            else:
                row = _row(r["filepaths"].strip(), label, common_name=label.title(), **_BIRD)
            out.append(row)
        return sorted(out, key=lambda r: r["filepath"])
    return [
        _row(path, label, common_name=label.title(), **_BIRD)
        for path, label in _image_tree(root / split, prefix=split)
    ]


def read_meta_album(path: Path) -> list[dict]:
    """BioCLIP's list (`,filepath,class`) or Meta-Album's own labels.csv (images/...)."""
    path = _meta_album_list(path)
    header, rows = _read_csv(path)
    if "FILE_NAME" in header:
        _need(path, header, ["FILE_NAME", "CATEGORY"])
        out = [label_row(f"images/{r['FILE_NAME']}", r["CATEGORY"]) for r in rows]
    else:
        _need(path, header, ["filepath", "class"])
        out = [label_row(r["filepath"], r["class"]) for r in rows]
    return sorted(out, key=lambda r: r["filepath"])


def _meta_album_list(path: Path) -> Path:
    if not path.is_dir():
        return path
    return path / "labels.csv" if (path / "labels.csv").is_file() else path / "metadata.csv"


def _birds_root(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def _image_tree(root: Path, prefix: str = "") -> list[tuple[str, str]]:
    if not root.is_dir():
        raise InputError(f"evaluation image folder not found: {root}")
    out = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for image in sorted(class_dir.rglob("*")):
            if image.is_file() and image.suffix.lower() in IMAGE_SUFFIXES:
                rel = image.relative_to(root).as_posix()
                out.append((f"{prefix}/{rel}" if prefix else rel, class_dir.name))
    return out


def read_folder(root: Path) -> list[dict]:
    return [label_row(path, label) for path, label in _image_tree(root)]


def read_manifest(path: Path) -> list[dict]:
    header, rows = _read_csv(path)
    _need(path, header, ["filepath"])
    out = []
    for r in rows:
        ranks = {c: _blank(r.get(c)) for c in (*RANK_COLUMNS, "common_name")}
        label = _blank(r.get("class"))
        if any(ranks[c] for c in RANK_COLUMNS) or label is None:
            out.append(_row(r["filepath"], label, **ranks))
        else:
            out.append(label_row(r["filepath"], label))
    return out


# Every shipped layout: name -> reader of (metadata file or root folder). config.py checks a
# set's `layout` against these names; add a layout here (and a test) and it is accepted.
LAYOUTS: dict[str, Callable[[Path], list[dict]]] = {
    "rare_species": read_rare_species,
    "birds525": lambda path: read_birds525(_birds_root(path)),
    "meta_album": read_meta_album,
    "folder": read_folder,
    "manifest": read_manifest,
}


def read_layout(layout: str, path: Path) -> list[dict]:
    """Rows of one evaluation set; `path` is the metadata file or the set's root folder."""
    reader = LAYOUTS.get(layout)
    if reader is None:
        raise InputError(f"unknown evaluation set layout {layout!r} (known: {', '.join(LAYOUTS)})")
    return reader(Path(path))


def metadata_file(layout: str, path: Path) -> Path | None:
    """The list file a layout reads at `path` (None: the layout lists folders only)."""
    path = Path(path)
    if layout == "birds525":
        csv_path = _birds_root(path) / "birds.csv"
        return csv_path if csv_path.is_file() else None
    if layout == "meta_album":
        return _meta_album_list(path)
    if layout == "folder":
        return None
    return path
