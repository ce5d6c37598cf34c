"""iNat21 archive planning: one entry per JSON image, in JSON order, before the archive is read.

Each image maps to its category through the annotations and, failing that, through the
`<image_dir_name>` folder of its `file_name`; an image whose two disagree is
`category_mismatch`, one with neither is `unknown_category`. The JSON's categories, every field
as published plus the images per category, make the table the ingest writes to
`catalog/inat21/_categories-NN.parquet`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import pyarrow as pa

from treeoflife.records import inat21_key
from treeoflife.sources.fetch_policy import id_fits_store
from treeoflife.sources.inat21_annotations import CocoAnnotation, CocoImage
from treeoflife.sources.ingest import (
    clean,
    duplicate_of,
    fail,
    member_is_unsafe,
    new_row,
    normal_member_name,
)
from treeoflife.vocabulary import Reason

SOURCE = "inat21"
_RANK_FIELDS = ("kingdom", "phylum", "class", "order", "family", "genus")


class _Entry(NamedTuple):
    """What the plan keeps per JSON image; the catalog row is built when its part is written."""

    key: str
    file_name: str | None
    category_id: int | None
    license: str | None
    rights_holder: str | None
    reason: str | None  # failed while planning


@dataclass
class ArchivePlan:
    entries: list[_Entry]
    categories: dict[int, dict]  # category id -> verbatim_* fields of the catalog row
    category_table: pa.Table  # every JSON category, all its fields (`_categories-NN.parquet`)
    by_name: dict[str, int]  # member name (JSON file_name) -> entry index
    first_part: int
    per_part: int
    expected: list[int] = field(default_factory=list)  # entries still waiting, per part

    @property
    def n_parts(self) -> int:
        return len(self.expected)

    def part_of(self, index: int) -> int:
        return index // self.per_part

    def part_rows(self, part: int) -> range:
        return range(part * self.per_part, min(len(self.entries), (part + 1) * self.per_part))

    def row(self, index: int) -> dict:
        e = self.entries[index]
        row = new_row(e.key, SOURCE)
        row["inat21_file"] = e.file_name
        row["inat21_category_id"] = e.category_id
        if e.category_id is not None:
            row.update(self.categories[e.category_id])
        row["license"] = e.license
        row["rights_holder"] = e.rights_holder
        if e.reason is not None:
            fail(row, e.reason)
        return row


def _license_name(value, licenses: dict) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value in licenses:
        return licenses[value]
    return clean(str(value))


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def category_fields(category: dict) -> dict:
    """The verbatim catalog fields of one iNat21 category (seven ranks + common name)."""
    out = {f"verbatim_{rank}": clean(category.get(rank)) for rank in _RANK_FIELDS}
    genus = clean(category.get("genus"))
    epithet = clean(category.get("specific_epithet"))
    out["verbatim_scientific_name"] = (
        f"{genus} {epithet}" if genus and epithet else clean(category.get("name"))
    )
    out["verbatim_common_name"] = clean(category.get("common_name"))
    return out


def plan_archive(
    data: dict, archive_no: int, first_part: int, per_part: int, seen_keys: dict[str, int]
) -> ArchivePlan:
    """One entry per JSON image, in JSON order, with its category and any planning failure."""
    categories: dict[int, dict] = {}
    by_dir: dict[str, int] = {}
    for c in data.get("categories") or []:
        if isinstance(c, dict) and _is_id(c.get("id")) and c["id"] not in categories:
            categories[c["id"]] = category_fields(c)
            dir_name = clean(c.get("image_dir_name"))
            if dir_name:
                by_dir.setdefault(dir_name, c["id"])
    licenses = {
        lic.get("id"): clean(lic.get("name"))
        for lic in data.get("licenses", []) or []
        if isinstance(lic, dict)
    }
    image_category: dict = {}
    for ann in data.get("annotations", []) or []:
        if isinstance(ann, CocoAnnotation) and ann.image_id is not None:
            image_category.setdefault(ann.image_id, ann.category_id)
    entries: list[_Entry] = []
    by_name: dict[str, int] = {}
    for i, image in enumerate(data["images"]):
        file_name = image.file_name if isinstance(image, CocoImage) else None
        name = normal_member_name(file_name.strip()) if isinstance(file_name, str) else ""
        if not name or member_is_unsafe(name) or not id_fits_store(inat21_key(_stem(name))):
            key = f"inat21/malformed/{archive_no}:{i}"  # no name, unsafe, or too long a key
            entries.append(_Entry(key, clean(file_name), None, None, None, Reason.MALFORMED_ROW))
            continue
        key = inat21_key(_stem(name))
        category_id, reason = _category_of(image, name, image_category, categories, by_dir)
        dup = duplicate_of(key, seen_keys)
        if dup is not None or name in by_name:
            key, reason = dup or f"{key}#dup-name{i}", Reason.DUPLICATE_KEY
        else:
            by_name[name] = i
        holder = image.rights_holder
        entries.append(
            _Entry(
                key,
                file_name,
                category_id,
                _license_name(image.license, licenses),
                clean(holder) if isinstance(holder, str) or holder is None else str(holder),
                reason,
            )
        )
    n_parts = (len(entries) + per_part - 1) // per_part
    table = category_table(data.get("categories") or [], entries)
    plan = ArchivePlan(entries, categories, table, by_name, first_part, per_part)
    plan.expected = [0] * n_parts
    for i in by_name.values():
        if entries[i].reason is None:
            plan.expected[plan.part_of(i)] += 1
    return plan


CATEGORY_COLUMNS = (
    "name",
    "common_name",
    "supercategory",
    "kingdom",
    "phylum",
    "class",
    "order",
    "family",
    "genus",
    "specific_epithet",
    "image_dir_name",
)


def category_table(categories: list, entries: list[_Entry]) -> pa.Table:
    """The JSON's categories as published (id, the fields above as text) + images per category
    in this archive (failed rows included), sorted by id."""
    counts: dict[int, int] = {}
    for e in entries:
        if e.category_id is not None:
            counts[e.category_id] = counts.get(e.category_id, 0) + 1
    by_id = {}
    for c in categories:
        if isinstance(c, dict) and _is_id(c.get("id")):
            by_id.setdefault(c["id"], c)
    ids = sorted(by_id)
    columns: dict[str, list] = {"id": ids}
    for col in CATEGORY_COLUMNS:
        columns[col] = [clean(by_id[i].get(col)) for i in ids]
    columns["images"] = [counts.get(i, 0) for i in ids]
    schema = pa.schema(
        [pa.field("id", pa.int64(), nullable=False)]
        + [pa.field(col, pa.string()) for col in CATEGORY_COLUMNS]
        + [pa.field("images", pa.int64(), nullable=False)]
    )
    return pa.Table.from_pydict(columns, schema=schema)


def _stem(name: str) -> str:
    """PurePosixPath(name).stem, without building a path object for each of 2.7M images."""
    base = name.rsplit("/", 1)[-1]
    dot = base.rfind(".")
    return base[:dot] if 0 < dot < len(base) - 1 else base


def _category_of(image: CocoImage, name: str, image_category, categories, by_dir):
    """(category id, failure reason): the annotation's category, checked against the folder."""
    listed = image.category_id if image.category_id is not None else image_category.get(image.id)
    parent = name.rsplit("/", 2)[-2] if "/" in name else ""
    from_dir = by_dir.get(parent)
    listed = listed if _is_id(listed) and listed in categories else None
    if listed is None and from_dir is None:
        return None, Reason.UNKNOWN_CATEGORY
    if listed is not None and from_dir is not None and listed != from_dir:
        return listed, Reason.CATEGORY_MISMATCH
    return (listed if listed is not None else from_dir), None
