"""Content-keyed parts and the reuse of images already stored, shared by the three sources.

A part is kept by a rerun only when its key, a hash of what it is made from (its input rows'
content, its images' validators, the settings that shape it), is the key in its record,
`state/parts/<source>/part-%05d.parquet` (written after the catalog part, removed before it is
replaced): a changed row redoes its part, a re-parted input re-parts. Records live in the state
folder because validators (file mtimes) are facts of this machine, not outputs.

A part redone does not decode (or fetch) again an image it already has: the record names each
row's stored image by its `image_id` (where it came from + its validators + the settings that
shaped the stored bytes). Before the first part is rewritten, every current part is set aside
in `state/parts/<source>/_previous/<part key>/` (hard links: no copy, and the old bytes stay
readable while the part is replaced), and the reuse index maps image ids to those stored
bytes. The folder is removed once every part of the new plan is written (a run killed before
keeps it, and the next run reuses it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from treeoflife.images import NormalizedImage
from treeoflife.io import md5_hex, read_image_bytes, write_parquet_atomic
from treeoflife.vocabulary import IngestStatus

log = logging.getLogger(__name__)

KEY_METADATA = b"treeoflife.part_key"
PREVIOUS = "_previous"
REUSE_SCHEMA = pa.schema([pa.field("key", pa.string()), pa.field("image_id", pa.string())])


class PartKey:
    """A part's key, fed piece by piece (settings, then each row with its validators)."""

    def __init__(self, *settings):
        self._h = hashlib.sha256(_canonical(settings))

    def add(self, *item) -> None:
        self._h.update(_canonical(item))
        self._h.update(b"\n")

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def _canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":")).encode()


def image_id(*parts) -> str:
    """An image's identity: where it comes from, its validators, the settings of its bytes."""
    return hashlib.sha256(_canonical(parts)).hexdigest()


def records_dir(catalog_dir: Path) -> Path:
    """`<root>/state/parts/<source>` for `<root>/catalog/<source>`."""
    catalog_dir = Path(catalog_dir)
    return catalog_dir.parents[1] / "state" / "parts" / catalog_dir.name


def reuse_parquet(parquet: Path) -> Path:
    """A catalog part's record: its key (metadata) and its rows' image ids."""
    return records_dir(parquet.parent) / parquet.name


def record_key(record: Path | BinaryIO) -> str | None:
    """The key in a part's record, a file here or one opened on shared storage (None:
    unreadable or unkeyed)."""
    try:
        meta = pq.read_schema(record).metadata or {}
    except (OSError, pa.ArrowException):
        return None
    value = meta.get(KEY_METADATA)
    return value.decode() if value is not None else None


def stored_key(parquet: Path) -> str | None:
    """The key a catalog part was written with (None: no record, unreadable or unkeyed)."""
    key = record_key(reuse_parquet(parquet))
    return key if key is not None and parquet.exists() else None


def part_current(parquet: Path, tar: Path, key: str) -> bool:
    """The part on disk was made from exactly what `key` names (and its image store is there)."""
    return stored_key(parquet) == key and tar.exists()


def forget_key(parquet: Path) -> None:
    """Before a catalog part is replaced: its old record must not vouch for the new rows."""
    reuse_parquet(parquet).unlink(missing_ok=True)


def write_record(parquet: Path, key: str, keys: list[str], ids: list[str | None]) -> None:
    """The part's record, written after its catalog part: from then on the part is current."""
    table = pa.table({"key": keys, "image_id": ids}, schema=REUSE_SCHEMA)
    table = table.replace_schema_metadata({KEY_METADATA: key})
    write_parquet_atomic(table, reuse_parquet(parquet))


@dataclass(frozen=True)
class StoredImage:
    """An image already normalised and stored by an earlier part (a set-aside store)."""

    path: Path
    offset: int
    size: int
    md5: str
    width: int
    height: int

    def load(self) -> NormalizedImage:
        data = read_image_bytes(self.path.parent, self.path.name, self.offset, self.size)
        return NormalizedImage(data, self.width, self.height, converted=False, md5=self.md5)

    def checked(self) -> NormalizedImage | None:
        """The image, if its bytes are still what the record says (md5); else None: the
        caller fetches or decodes it again."""
        try:
            image = self.load()
        except OSError:
            return None
        return image if md5_hex(image.data) == self.md5 else None


class ReuseIndex:
    """image id -> the stored image of a set-aside part (empty until `set_aside` is called)."""

    def __init__(self, catalog_dir: Path, data_root: Path):
        self.catalog_dir = Path(catalog_dir)
        self.data_root = Path(data_root)
        self.previous = records_dir(catalog_dir) / PREVIOUS
        self._index: dict[str, StoredImage] | None = None

    def set_aside(self) -> None:
        """Hard-link every current part into `_previous/<key>/` and index its images (once)."""
        if self._index is not None:
            return
        for parquet in sorted(self.catalog_dir.glob("part-*[0-9].parquet")):
            key = stored_key(parquet)
            reuse = reuse_parquet(parquet)
            if key is None or not reuse.exists():
                continue
            folder = self.previous / key
            if (folder / "record.parquet").exists():
                continue
            try:
                columns = ["image_file"]
                files = pq.read_table(parquet, columns=columns).column(0).drop_null().unique()
            except (OSError, pa.ArrowException):
                continue
            folder.mkdir(parents=True, exist_ok=True)
            tars = [self.data_root / f for f in files.to_pylist()]
            for src in [*tars, parquet]:
                if src.exists():
                    _link(src, folder / src.name)
            _link(reuse, folder / "record.parquet")  # last: it marks a whole copy
        self._index = {}
        for folder in sorted(self.previous.glob("*")) if self.previous.exists() else []:
            self._load(folder)
        if self._index:
            log.info("%s: %d stored image(s) reusable", self.catalog_dir.name, len(self._index))

    def _load(self, folder: Path) -> None:
        reuse = folder / "record.parquet"
        for parquet in folder.glob("part-*[0-9].parquet"):
            if not reuse.exists():
                continue
            try:
                ids = dict(zip(*pq.read_table(reuse).to_pydict().values(), strict=True))
                cols = ["key", "status", "image_file", "image_offset", "image_size", "md5"]
                rows = pq.read_table(parquet, columns=[*cols, "width", "height"]).to_pylist()
            except (OSError, pa.ArrowException, ValueError):
                continue
            for r in rows:
                iid = ids.get(r["key"])
                if iid is None or r["status"] != IngestStatus.OK or r["image_file"] is None:
                    continue
                path = folder / Path(r["image_file"]).name
                if path.exists():
                    self._index.setdefault(
                        iid,
                        StoredImage(path, r["image_offset"], r["image_size"], r["md5"],
                                    r["width"], r["height"]),
                    )  # fmt: skip

    def get(self, iid: str | None) -> StoredImage | None:
        if iid is None or not self._index:
            return None
        return self._index.get(iid)

    def load(self, iid: str | None) -> NormalizedImage | None:
        """The stored image of `iid`, read and checked against its md5 (None: not stored, or
        its bytes are not what the record says: the caller fetches or decodes it again)."""
        stored = self.get(iid)
        return stored.checked() if stored is not None else None

    def finish(self) -> None:
        """Every part of the new plan is written: drop what was set aside."""
        if self.previous.exists():
            shutil.rmtree(self.previous)
        self._index = None


def _link(src: Path, dst: Path) -> None:
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
