"""iNat21 archive planning: one row per JSON image, in JSON order, before the archive is read.

Each image maps to its category through the annotations and, failing that, through the
`<image_dir_name>` folder of its `file_name`; an image whose two disagree is
`category_mismatch`, one with neither is `unknown_category`. The JSON's categories, every field
as published plus the images per category, make the table the ingest writes to
`catalog/inat21/_categories-NN.parquet`.

The plan is held column-wise (train.json has 2.7M images): the images' text fields stay in the
Arrow batches the JSON was read into (folders, licences and rights holders dictionary-encoded),
the category and failure of each row are numpy arrays, and the member name -> row lookup is a
sorted array of 64-bit key hashes, each hit checked against the row's own name. Keys are not
kept: a row's key is its file name's stem, made again when its part is written. ~100 bytes an
image in all (`bench/inat21_plan_memory.py`).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from treeoflife.io import stable_hash64
from treeoflife.records import inat21_key
from treeoflife.sources.fetch_policy import id_fits_store
from treeoflife.sources.inat21_annotations import INT64, CocoJson
from treeoflife.sources.ingest import (
    clean,
    fail,
    member_is_unsafe,
    new_row,
    normal_member_name,
)
from treeoflife.sources.seen import SeenKeys
from treeoflife.vocabulary import Reason

SOURCE = "inat21"
_RANK_FIELDS = ("kingdom", "phylum", "class", "order", "family", "genus")

REASONS = (
    None,
    Reason.MALFORMED_ROW,
    Reason.UNKNOWN_CATEGORY,
    Reason.CATEGORY_MISMATCH,
    Reason.DUPLICATE_KEY,
)
"""A row's planning failure, by its code in `ArchivePlan.reasons`."""
OK, MALFORMED, UNKNOWN, MISMATCH, DUPLICATE = range(len(REASONS))


def _signed(h: int) -> int:
    """A 64-bit hash as the int64 numpy holds."""
    return h - (1 << 64) if h >= 1 << 63 else h


def _key_hash(key: str) -> int:
    return _signed(stable_hash64(key))


@dataclass
class ArchivePlan:
    """One archive's rows, column-wise; `row`/`rows` build the catalog rows when a part is
    written, `index_of` maps a member to its row."""

    archive_no: int
    images: list[pa.RecordBatch]  # the JSON's images (inat21_annotations.IMAGE_COLUMNS) ...
    dirs: list[str]  # ... their file names' folders (by number) ...
    chunk_rows: int  # ... rows per batch (all but the last), licences named
    category_ids: np.ndarray  # the JSON's category ids, sorted
    categories: dict[int, dict]  # category id -> verbatim_* fields of the catalog row
    category_table: pa.Table  # every JSON category, all its fields (`_categories-NN.parquet`)
    category_of: np.ndarray  # int32 per row: index in category_ids, -1 for none
    reasons: np.ndarray  # uint8 per row: index in REASONS
    duplicate_rows: np.ndarray  # rows whose key was seen before (sorted) ...
    duplicate_numbers: np.ndarray  # ... and which repeat each is (`key#dup<n>`)
    listed_hashes: np.ndarray  # 64-bit hashes of the keys of the rows members map to, sorted
    listed_rows: np.ndarray  # ... and those rows
    first_part: int
    per_part: int
    expected: list[int] = field(default_factory=list)  # rows still waiting, per part

    @property
    def n_rows(self) -> int:
        return len(self.reasons)

    @property
    def n_parts(self) -> int:
        return len(self.expected)

    def part_of(self, index: int) -> int:
        return index // self.per_part

    def part_rows(self, part: int) -> range:
        return range(part * self.per_part, min(self.n_rows, (part + 1) * self.per_part))

    def failed(self, index: int) -> bool:
        """Whether the row failed while planning (its member is never decoded)."""
        return bool(self.reasons[index])

    def index_of(self, name: str) -> int | None:
        """The row a member name (normalized) maps to: the first JSON image of that key, if
        its file name is this name."""
        h = _key_hash(inat21_key(_stem(name)))
        pos = int(np.searchsorted(self.listed_hashes, h))
        if pos < len(self.listed_hashes) and self.listed_hashes[pos] == h:
            index = int(self.listed_rows[pos])
            d, b = self._file(index)
            if normal_member_name((d + b).strip()) == name:
                return index
        return None

    def _file(self, index: int) -> tuple[str | None, str | None]:
        batch = self.images[index // self.chunk_rows]
        j = index % self.chunk_rows
        d = batch.column(0)[j].as_py()
        return (None if d is None else self.dirs[d]), batch.column(1)[j].as_py()

    def row(self, index: int) -> dict:
        return self.rows_between(index, index + 1)[0]

    def rows(self, part: int) -> list[dict]:
        """The catalog rows of one part, in row order."""
        span = self.part_rows(part)
        return self.rows_between(span.start, span.stop)

    def rows_between(self, start: int, stop: int) -> list[dict]:
        """The catalog rows of rows start..stop-1, their text read from the batches at once."""
        columns: list[list] = [[], [], [], []]
        c = start // self.chunk_rows
        while c < len(self.images) and c * self.chunk_rows < stop:
            batch = self.images[c]
            lo = max(start - c * self.chunk_rows, 0)
            hi = min(stop - c * self.chunk_rows, batch.num_rows)
            if hi <= lo:
                break
            piece = batch.slice(lo, hi - lo)
            for col, values in zip(columns, piece.columns, strict=True):
                col.extend(values.to_pylist())
            c += 1
        lo_dup = int(np.searchsorted(self.duplicate_rows, start))
        hi_dup = int(np.searchsorted(self.duplicate_rows, stop))
        dups = dict(
            zip(
                self.duplicate_rows[lo_dup:hi_dup].tolist(),
                self.duplicate_numbers[lo_dup:hi_dup].tolist(),
                strict=True,
            )
        )
        out = []
        dirs = self.dirs
        for j, (d, b, lic, holder) in enumerate(zip(*columns, strict=True)):
            i = start + j
            d = None if d is None else dirs[d]
            reason = int(self.reasons[i])
            if reason == MALFORMED:
                row = new_row(f"inat21/malformed/{self.archive_no}:{i}", SOURCE)
                row["inat21_file"] = clean(None if b is None else (d or "") + b)
                row["inat21_category_id"] = None
                row["license"] = None
                row["rights_holder"] = None
            else:
                file_name = d + b
                key = inat21_key(_stem(normal_member_name(file_name.strip())))
                if i in dups:
                    key = f"{key}#dup{dups[i]}"
                row = new_row(key, SOURCE)
                row["inat21_file"] = file_name
                cat = int(self.category_of[i])
                category_id = int(self.category_ids[cat]) if cat >= 0 else None
                row["inat21_category_id"] = category_id
                if category_id is not None:
                    row.update(self.categories[category_id])
                row["license"] = lic
                row["rights_holder"] = holder
            if reason:
                fail(row, REASONS[reason])
            out.append(row)
        return out


def _license_name(value, licenses: dict) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value in licenses:
        return licenses[value]
    return clean(str(value))


def _license_of_token(token: str | None, licenses: dict) -> str | None:
    """The licence name of a token inat21_annotations.license_token made."""
    if token is None:
        return None
    if token.startswith("i:"):
        return _license_name(int(token[2:]), licenses)
    return clean(token[2:])


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
    data: CocoJson, archive_no: int, first_part: int, per_part: int, seen_keys: SeenKeys
) -> ArchivePlan:
    """One row per JSON image, in JSON order, with its category and any planning failure.

    `data`'s id and annotation arrays are released once used (the plan keeps its image
    batches)."""
    categories: dict[int, dict] = {}
    by_dir: dict[str, int] = {}
    for c in data.categories or []:
        if isinstance(c, dict) and _is_id(c.get("id")) and c["id"] not in categories:
            categories[c["id"]] = category_fields(c)
            dir_name = clean(c.get("image_dir_name"))
            if dir_name:
                by_dir.setdefault(dir_name, c["id"])
    licenses = {
        lic.get("id"): clean(lic.get("name"))
        for lic in data.licenses or []
        if isinstance(lic, dict)
    }
    category_ids = np.array(sorted(categories), dtype=np.int64)
    index_of_id = {cid: i for i, cid in enumerate(category_ids.tolist())}
    dir_index = {d: index_of_id[cid] for d, cid in by_dir.items()}

    images = data.images
    n = images.n
    listed = _listed_categories(data, category_ids)  # first: its id arrays are then released
    reasons = np.zeros(n, dtype=np.uint8)
    from_dir = np.full(n, -1, dtype=np.int32)
    duplicate_rows, duplicate_numbers = array("q"), array("q")
    listed_hashes, listed_rows = array("q"), array("i")
    batches = []
    i = 0
    dirs = images.dirs
    for batch in images.chunks:
        for d, b in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
            name = normal_member_name((dirs[d] + b).strip()) if d is not None else ""
            key = inat21_key(_stem(name))
            if not name or member_is_unsafe(name) or not id_fits_store(key):
                reasons[i] = MALFORMED  # no name, unsafe, or too long a key
            else:
                parent = name.rsplit("/", 2)[-2] if "/" in name else ""
                from_dir[i] = dir_index.get(parent, -1)
                dup = seen_keys.duplicate_of(key)
                if dup is not None:
                    duplicate_rows.append(i)
                    duplicate_numbers.append(int(dup[len(key) + 4 :]))  # key#dup<n>
                else:
                    listed_hashes.append(_key_hash(key))
                    listed_rows.append(i)
            i += 1
        licences = batch.column(2)
        named = [_license_of_token(t, licenses) for t in licences.dictionary.to_pylist()]
        licences = pa.DictionaryArray.from_arrays(licences.indices, pa.array(named, pa.string()))
        batches.append(
            pa.RecordBatch.from_arrays(
                [batch.column(0), batch.column(1), licences, batch.column(3)],
                names=batch.schema.names,
            )
        )

    good = reasons == OK
    unknown = good & (listed < 0) & (from_dir < 0)
    mismatch = good & (listed >= 0) & (from_dir >= 0) & (listed != from_dir)
    category_of = np.where(listed >= 0, listed, from_dir).astype(np.int32)
    del listed
    category_of[~good] = -1
    reasons[unknown] = UNKNOWN
    reasons[mismatch] = MISMATCH
    del good, unknown, mismatch
    dup_rows = np.frombuffer(duplicate_rows, dtype=np.int64).copy()
    reasons[dup_rows] = DUPLICATE

    hashes = np.frombuffer(listed_hashes, dtype=np.int64)
    order = np.argsort(hashes, kind="stable")
    sorted_hashes = hashes[order]
    del hashes, listed_hashes
    rows = np.frombuffer(listed_rows, dtype=np.int32)[order]
    del order, listed_rows

    counts = np.bincount(category_of[category_of >= 0], minlength=len(category_ids))
    counted = dict(zip(category_ids.tolist(), counts.tolist(), strict=True))
    table = category_table(data.categories or [], counted)
    n_parts = (n + per_part - 1) // per_part
    waiting = rows[reasons[rows] == OK]
    expected = np.bincount(waiting // per_part, minlength=n_parts).tolist() if n_parts else []
    return ArchivePlan(
        archive_no=archive_no,
        images=batches,
        dirs=dirs,
        chunk_rows=images.chunks[0].num_rows if images.chunks else 1,
        category_ids=category_ids,
        categories=categories,
        category_table=table,
        category_of=category_of,
        reasons=reasons,
        duplicate_rows=dup_rows,
        duplicate_numbers=np.frombuffer(duplicate_numbers, dtype=np.int64).copy(),
        listed_hashes=sorted_hashes,
        listed_rows=rows,
        first_part=first_part,
        per_part=per_part,
        expected=expected,
    )


_BLOCK = 1 << 20
"""Rows (or annotations) handled per numpy step: bounds the temporaries of each."""


def _category_index(kinds: np.ndarray, values: np.ndarray, category_ids: np.ndarray):
    """Index in `category_ids` of each (kind, value) category_key, -1 when not a category."""
    out = np.full(len(kinds), -1, dtype=np.int32)
    for lo in range(0, len(kinds) if len(category_ids) else 0, _BLOCK):
        k, v = kinds[lo : lo + _BLOCK], values[lo : lo + _BLOCK]
        pos = np.minimum(np.searchsorted(category_ids, v), len(category_ids) - 1)
        hit = (k == INT64) & (category_ids[pos] == v)
        out[lo : lo + _BLOCK][hit] = pos[hit]
    return out


def _first_annotations(image_ids: np.ndarray):
    """A lookup of the first annotation of each image id: (ids -> annotation index, -1 when
    none). A table over the id range when the ids are dense (iNat21's), else sorted ids."""
    m = len(image_ids)
    if m == 0:
        return lambda ids: np.full(len(ids), -1, dtype=np.int64)
    low, high = int(image_ids.min()), int(image_ids.max())
    if high - low < 2 * m + 1024:
        table = np.full(high - low + 1, m, dtype=np.int64 if m >= 1 << 31 else np.int32)
        for lo in range(0, m, _BLOCK):
            block = image_ids[lo : lo + _BLOCK] - low
            np.minimum.at(table, block, np.arange(lo, lo + len(block), dtype=table.dtype))

        def dense(ids: np.ndarray) -> np.ndarray:
            inside = (ids >= low) & (ids <= high)
            found = np.full(len(ids), m, dtype=table.dtype)
            found[inside] = table[ids[inside] - low]
            return np.where(found < m, found, -1)

        return dense
    order = np.argsort(image_ids, kind="stable")  # equal ids keep their JSON order
    sorted_ids = image_ids[order]
    starts = np.ones(m, dtype=bool)
    starts[1:] = sorted_ids[1:] != sorted_ids[:-1]
    unique_ids, first = sorted_ids[starts], order[starts]
    del order, sorted_ids, starts

    def sparse(ids: np.ndarray) -> np.ndarray:
        pos = np.minimum(np.searchsorted(unique_ids, ids), len(unique_ids) - 1)
        return np.where(unique_ids[pos] == ids, first[pos], -1)

    return sparse


def _listed_categories(data: CocoJson, category_ids: np.ndarray) -> np.ndarray:
    """Per row, the index in `category_ids` of the category its JSON lists (its own
    `category_id`, else its first annotation's), -1 when none or not a category. Releases
    `data`'s id and annotation arrays."""
    images, annotations = data.images, data.annotations
    ann_category = _category_index(
        np.frombuffer(annotations.category_kinds, dtype=np.int8),
        np.frombuffer(annotations.category_ids, dtype=np.int64),
        category_ids,
    )
    annotations.category_kinds = annotations.category_ids = None
    first_of = _first_annotations(np.frombuffer(annotations.image_ids, dtype=np.int64))
    annotations.image_ids = None
    listed = np.full(images.n, -1, dtype=np.int32)
    ids = np.frombuffer(images.ids, dtype=np.int64)
    id_kinds = np.frombuffer(images.id_kinds, dtype=np.int8)
    for lo in range(0, images.n, _BLOCK):
        rows = lo + np.flatnonzero(id_kinds[lo : lo + _BLOCK] == INT64)
        first = first_of(ids[rows])
        hit = first >= 0
        listed[rows[hit]] = ann_category[first[hit]]
    del first_of, ann_category, ids, id_kinds
    images.ids = images.id_kinds = None
    index_of_id = {cid: i for i, cid in enumerate(category_ids.tolist())}
    for row, image_id in images.other_ids.items():
        kind, value = annotations.others.get(image_id, (0, 0))
        listed[row] = index_of_id.get(value, -1) if kind == INT64 else -1
    own = np.frombuffer(images.category_rows, dtype=np.int64)  # a category_id of its own
    listed[own] = _category_index(
        np.frombuffer(images.category_kinds, dtype=np.int8),
        np.frombuffer(images.category_ids, dtype=np.int64),
        category_ids,
    )
    return listed


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


def category_table(categories: list, counts: dict[int, int]) -> pa.Table:
    """The JSON's categories as published (id, the fields above as text) + images per category
    in this archive (`counts`, failed rows included), sorted by id."""
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
