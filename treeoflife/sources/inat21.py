"""iNat21 ingest: COCO JSON + a streamed .tar.gz (never extracted, never read twice).

Rows are the JSON's images, in JSON order, `images_per_part` per part. The archive is read once
as a stream (a local file or an http(s) URL resumed with Range after a drop); each member is
handed to the decode pool as it arrives and a part is written as soon as all of its members
have arrived (at the end of the stream, what never arrived is `missing_in_archive`). Memory
holds the images of parts still waiting for members: one part when the tar follows the JSON
order, as the published archives do.

The annotations are read as published (`train.json.tar.gz`, a gzipped tar holding
`train.json`), gzipped, or plain; the format is sniffed from the bytes, not the name. Each
image maps to its category through the annotations and, failing that, through the
`<image_dir_name>` folder of its `file_name`; an image whose two disagree is
`category_mismatch`, one with neither is `unknown_category`.

The JSON's categories, every field as published plus the images per category, go to
`catalog/inat21/_categories-NN.parquet` (NN: the archive's place in the config).

`catalog/inat21/_archive-NN.json` says what an archive's parts come from (archive, annotations
and their md5, part numbering) from before the first part is written, and that the archive was
read to its end (and its md5, when configured, matched) once it was. A rerun skips an archive
only when that marker is complete and all its parts are there; a marker naming other inputs
makes the run redo every part of that archive. An md5 mismatch, or an unreadable stream with
a configured md5, removes every part of that archive: nothing derived from an unverified archive
is kept.
"""

from __future__ import annotations

import concurrent.futures as cf
import gzip
import hashlib
import http.client
import json
import logging
import sys
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import pyarrow as pa

from treeoflife.config import BuildConfig, INat21Archive
from treeoflife.errors import InputError
from treeoflife.images import DEFAULT_MAX_PIXELS
from treeoflife.io import write_parquet_atomic, write_text_atomic
from treeoflife.progress import Progress, or_null
from treeoflife.records import inat21_key
from treeoflife.sources.fetch_policy import id_fits_store
from treeoflife.sources.ingest import (
    IGNORED_DUPLICATE,
    IGNORED_UNLISTED,
    IGNORED_UNSAFE,
    REASON_DUPLICATE_KEY,
    REASON_MALFORMED,
    REASON_MEMBER_TOO_LARGE,
    REASON_MISSING,
    DecodePool,
    IngestStats,
    catalog_dir,
    clean,
    duplicate_of,
    fail,
    finish_stats,
    member_is_unsafe,
    new_row,
    normal_member_name,
    part_is_current,
    part_parquet,
    part_tar_relpath,
    pool_workers_for,
    prepare_source_dirs,
    remove_parts_from,
    reuse_index,
    tar_member_is_special,
    write_part,
)
from treeoflife.sources.partstore import PartKey, ReuseIndex, forget_key, image_id
from treeoflife.sources.remote import RangeReader, RemoteReadError, is_url

log = logging.getLogger(__name__)

SOURCE = "inat21"
_RANK_FIELDS = ("kingdom", "phylum", "class", "order", "family", "genus")

REASON_UNKNOWN_CATEGORY = "unknown_category"  # neither an annotation nor a folder names one
REASON_CATEGORY_MISMATCH = "category_mismatch"  # the annotation and the folder disagree

_GZIP_MAGIC = b"\x1f\x8b"


def open_input(spec: str, cfg: BuildConfig, what: str):
    """Open a configured input (local path, or http(s) URL streamed with Range resume)."""
    if is_url(spec):
        try:
            return RangeReader(spec)
        except (OSError, http.client.HTTPException) as exc:
            raise InputError(f"iNat21 {what} {spec}: {exc}") from exc
    path = cfg.path(spec)
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        raise InputError(f"iNat21 {what} {path}: {exc.strerror or exc}") from exc


def _where(spec: str, cfg: BuildConfig) -> str:
    return spec if is_url(spec) else str(cfg.path(spec))


# ------------------------------------------------------------------------------ annotations


class _Image(NamedTuple):
    """One entry of the JSON's `images`, kept compact (2.7M of them in train.json)."""

    id: object
    file_name: object
    license: object
    rights_holder: object
    category_id: object


class _Annotation(NamedTuple):
    image_id: object
    category_id: object


def _compact(obj: dict):
    """json object_hook: images and annotations become small tuples as they are parsed, so the
    2.7M dicts of train.json never all exist at once (~1 KB each as dicts)."""
    if "file_name" in obj:
        holder = obj.get("rights_holder")
        return _Image(
            obj.get("id"),
            obj.get("file_name"),
            obj.get("license"),
            sys.intern(holder) if isinstance(holder, str) else holder,
            obj.get("category_id"),
        )
    if "image_id" in obj and "category_id" in obj:
        return _Annotation(obj["image_id"], obj["category_id"])
    return obj


class _Peekable:
    """A forward-only reader that can look at its next bytes before handing them on."""

    def __init__(self, raw):
        self._raw = raw
        self._buf = b""

    def peek(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self._raw.read(n - len(self._buf))
            if not chunk:
                break
            self._buf += chunk
        return self._buf[:n]

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            data, self._buf = self._buf + self._raw.read(), b""
            return data
        if self._buf:
            data, self._buf = self._buf[:n], self._buf[n:]
            return data
        return self._raw.read(n)


def _is_tar_header(block: bytes) -> bool:
    return len(block) >= 262 and block[257:262] == b"ustar"


def parse_annotations(stream) -> object:
    """The COCO JSON in `stream`: plain, gzipped, or the first .json file of a (gzipped) tar."""
    head = _Peekable(stream)
    if head.peek(2) == _GZIP_MAGIC:
        head = _Peekable(gzip.GzipFile(fileobj=head, mode="rb"))
    if _is_tar_header(head.peek(512)):
        with tarfile.open(fileobj=head, mode="r|") as tar:
            for member in tar:
                name = normal_member_name(member.name)
                base = PurePosixPath(name).name
                if (
                    member.isfile()
                    and not member_is_unsafe(name)
                    and base.endswith(".json")
                    and not base.startswith("._")  # AppleDouble files of macOS-made tars
                ):
                    extracted = tar.extractfile(member)
                    return json.loads(extracted.read(), object_hook=_compact)
        raise ValueError("the tar holds no .json file")
    return json.loads(head.read(), object_hook=_compact)


def load_annotations(spec: str, cfg: BuildConfig, md5: str | None = None) -> dict:
    """Read and check one annotations file (path or URL; .json, .json.gz or .json.tar.gz)."""
    return read_annotations(spec, cfg, md5)[0]


def read_annotations(spec: str, cfg: BuildConfig, md5: str | None = None) -> tuple[dict, str]:
    """The parsed annotations and the md5 of the file's bytes (checked against `md5`)."""
    where = _where(spec, cfg)
    with open_input(spec, cfg, "annotations") as fh:
        reader = _HashingReader(fh, enabled=True)  # ~1 s for train.json.tar.gz
        try:
            data = parse_annotations(reader)
            reader.drain()
        except RemoteReadError as exc:
            raise InputError(f"iNat21 annotations {where}: {exc}") from exc
        except (tarfile.TarError, zlib.error, EOFError, gzip.BadGzipFile) as exc:
            raise InputError(f"iNat21 annotations {where}: unreadable archive ({exc})") from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"iNat21 annotations {where}: not valid JSON ({exc})") from exc
    if md5 and reader.hexdigest() != md5.lower():
        raise InputError(
            f"iNat21 annotations {where}: md5 {reader.hexdigest()} does not match the "
            f"configured {md5}"
        )
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"iNat21 annotations {where}: no 'images' list (not a COCO JSON?)")
    return data, reader.hexdigest()


class _HashingReader:
    """A file wrapper that md5s every byte read through it (tarfile's stream mode reads here)."""

    def __init__(self, fh, enabled: bool):
        self._fh = fh
        self._md5 = hashlib.md5(usedforsecurity=False) if enabled else None

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        if self._md5 is not None:
            self._md5.update(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def hexdigest(self) -> str | None:
        return self._md5.hexdigest() if self._md5 is not None else None


# ------------------------------------------------------------------------------ the plan


class _Entry(NamedTuple):
    """What the plan keeps per JSON image; the catalog row is built when its part is written."""

    key: str
    file_name: str | None
    category_id: int | None
    license: str | None
    rights_holder: str | None
    reason: str | None  # failed while planning


@dataclass
class _ArchivePlan:
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
) -> _ArchivePlan:
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
        if isinstance(ann, _Annotation) and ann.image_id is not None:
            image_category.setdefault(ann.image_id, ann.category_id)
    entries: list[_Entry] = []
    by_name: dict[str, int] = {}
    for i, image in enumerate(data["images"]):
        file_name = image.file_name if isinstance(image, _Image) else None
        name = normal_member_name(file_name.strip()) if isinstance(file_name, str) else ""
        if not name or member_is_unsafe(name) or not id_fits_store(inat21_key(_stem(name))):
            key = f"inat21/malformed/{archive_no}:{i}"  # no name, unsafe, or too long a key
            entries.append(_Entry(key, clean(file_name), None, None, None, REASON_MALFORMED))
            continue
        key = inat21_key(_stem(name))
        category_id, reason = _category_of(image, name, image_category, categories, by_dir)
        dup = duplicate_of(key, seen_keys)
        if dup is not None or name in by_name:
            key, reason = dup or f"{key}#dup-name{i}", REASON_DUPLICATE_KEY
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
    plan = _ArchivePlan(entries, categories, table, by_name, first_part, per_part)
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


def _category_of(image: _Image, name: str, image_category, categories, by_dir):
    """(category id, failure reason): the annotation's category, checked against the folder."""
    listed = image.category_id if image.category_id is not None else image_category.get(image.id)
    parent = name.rsplit("/", 2)[-2] if "/" in name else ""
    from_dir = by_dir.get(parent)
    listed = listed if _is_id(listed) and listed in categories else None
    if listed is None and from_dir is None:
        return None, REASON_UNKNOWN_CATEGORY
    if listed is not None and from_dir is not None and listed != from_dir:
        return listed, REASON_CATEGORY_MISMATCH
    return (listed if listed is not None else from_dir), None


# ------------------------------------------------------------------------------ ingest


def _archive_marker(cfg: BuildConfig, archive_no: int) -> Path:
    return catalog_dir(cfg, SOURCE) / f"_archive-{archive_no:02d}.json"


def _categories_parquet(cfg: BuildConfig, archive_no: int) -> Path:
    return catalog_dir(cfg, SOURCE) / f"_categories-{archive_no:02d}.parquet"


DECODE_SETTINGS = ("decode", DEFAULT_MAX_PIXELS, "originals")
"""What the stored bytes of an iNat21 image depend on besides the member (originals kept)."""


def _archive_identity(
    cfg: BuildConfig, archive: INat21Archive, plan: _ArchivePlan, annotations_md5: str
) -> dict:
    """What the archive's parts were made from: a marker that differs means redo them (the
    images a redone part already stored are reused: sources.partstore)."""
    return {
        "images": archive.images,
        "annotations": archive.annotations,
        "annotations_md5": annotations_md5,
        "md5": archive.md5,
        "first_part": plan.first_part,
        "parts": plan.n_parts,
        "rows": len(plan.entries),
        "settings": [cfg.sources.inat21.max_member_bytes, *DECODE_SETTINGS],
    }


def _file_validator(spec: str, cfg: BuildConfig) -> list | None:
    """A local archive's size and mtime (an image replaced in it changes them); None for a
    URL (its configured md5 is what checks it)."""
    if is_url(spec):
        return None
    try:
        st = cfg.path(spec).stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _member_id(name: str, member: tarfile.TarInfo) -> str:
    """An archive member's image id: its name, size and mtime, and the decode settings."""
    return image_id(SOURCE, name, member.size, member.mtime, DECODE_SETTINGS)


def _read_marker(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def ingest_inat21(cfg: BuildConfig, progress: Progress | None = None) -> IngestStats:
    """Ingest every configured iNat21 archive into catalog/inat21 and images/inat21 parts."""
    progress = or_null(progress)
    icfg = cfg.sources.inat21
    if icfg.images_per_part <= 0:
        raise InputError("sources.inat21.images_per_part must be positive")
    prepare_source_dirs(cfg, SOURCE)
    run = IngestStats(source=SOURCE)
    ignored_total: dict[str, int] = {}
    archives_out: list[dict] = []
    seen_keys: dict[str, int] = {}
    next_part = 0
    reuse = reuse_index(cfg, SOURCE)
    progress.start("ingest inat21", None)
    try:
        for archive_no, archive in enumerate(icfg.archives):
            data, json_md5 = read_annotations(archive.annotations, cfg, archive.annotations_md5)
            plan = plan_archive(data, archive_no, next_part, icfg.images_per_part, seen_keys)
            del data
            name = archive.images.rstrip("/").rsplit("/", 1)[-1]
            progress.start(f"ingest inat21 {name}", len(plan.entries))
            ignored = _ingest_archive(
                cfg, archive_no, archive, json_md5, plan, run, progress, reuse
            )
            for k, v in ignored.items():
                ignored_total[k] = ignored_total.get(k, 0) + v
            archives_out.append(
                {"images": archive.images, "rows": len(plan.entries), "ignored": ignored}
            )
            next_part += plan.n_parts
    finally:
        progress.finish()
    remove_parts_from(cfg, SOURCE, next_part)
    for stale in sorted(catalog_dir(cfg, SOURCE).glob("_*-[0-9][0-9].*")):
        if int(stale.name.split("-")[1][:2]) >= len(icfg.archives):
            stale.unlink()  # marker / categories of an archive no longer configured
    reuse.finish()  # every part of this plan is written
    return finish_stats(
        cfg, SOURCE, next_part, run, ignored_total, extra={"archives": archives_out}
    )


def _ingest_archive(
    cfg: BuildConfig,
    archive_no: int,
    archive: INat21Archive,
    json_md5: str,
    plan: _ArchivePlan,
    run: IngestStats,
    progress: Progress,
    reuse: ReuseIndex,
) -> dict[str, int]:
    marker_path = _archive_marker(cfg, archive_no)
    identity = _archive_identity(cfg, archive, plan, json_md5)
    # the parts' records also name the archive file's size + mtime (machine facts: not in the
    # marker, an output): an image replaced in the archive redoes its parts
    key = PartKey(SOURCE, identity, _file_validator(archive.images, cfg)).hexdigest()
    marker = _read_marker(marker_path)
    stale = marker is not None and marker.get("archive") != identity
    if stale:  # parts of an archive that has since changed: redo them all
        log.info("iNat21 archive %s changed since its parts were written; redoing", archive.images)
        marker_path.unlink(missing_ok=True)
    done = {
        p
        for p in range(plan.n_parts)
        if not stale and part_is_current(cfg, SOURCE, plan.first_part + p, f"{key}:{p}")
    }
    if len(done) < plan.n_parts:
        reuse.set_aside()  # the images earlier parts stored, before they are replaced
    categories = _categories_parquet(cfg, archive_no)
    complete = marker is not None and not stale and marker.get("complete") is True
    if complete and len(done) == plan.n_parts and categories.exists():
        run.parts_skipped += plan.n_parts
        progress.advance(len(plan.entries))
        return dict(sorted((marker.get("ignored") or {}).items()))
    # say what the parts about to be written come from, before writing any: a run killed
    # midway and resumed over changed inputs then redoes them instead of trusting them
    started = {"archive": identity, "complete": False}
    write_text_atomic(marker_path, json.dumps(started, indent=2, sort_keys=True))
    todo = sum(len(plan.part_rows(p)) for p in range(plan.n_parts) if p not in done)
    progress.advance(len(plan.entries) - todo)  # parts done earlier
    try:
        with DecodePool(pool_workers_for(todo)) as pool:
            stream = _Stream(key, reuse)
            ignored, digest = _stream_archive(cfg, archive, plan, done, pool, run, progress, stream)
    except InputError:
        if archive.md5:  # its parts were removed: so is what said the archive was read
            marker_path.unlink(missing_ok=True)
            categories.unlink(missing_ok=True)
        raise
    run.parts_skipped += len(done)
    if ignored:
        log.warning("iNat21 archive %s: ignored members %s", archive.images, ignored)
    write_parquet_atomic(plan.category_table, categories)
    body = {"archive": identity, "complete": True, "md5_read": digest, "ignored": ignored}
    write_text_atomic(marker_path, json.dumps(body, indent=2, sort_keys=True))
    return ignored


def _stream_archive(
    cfg: BuildConfig,
    archive: INat21Archive,
    plan: _ArchivePlan,
    done: set[int],
    pool: DecodePool,
    run: IngestStats,
    progress: Progress,
    stream: _Stream,
) -> tuple[dict[str, int], str | None]:
    """Read the archive once, writing each part as soon as its members are in."""
    ignored: dict[str, int] = {}
    pending: dict[int, cf.Future | str] = {}  # entry index -> decode future (or failure reason)

    # Parts are written on a writer thread while the stream goes on (gunzip and tar reading
    # keep the main thread busy); at most two parts wait for it, to bound memory.
    writer = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="inat21-writer")
    inflight: list[cf.Future] = []
    written: list[int] = []

    def write(part: int, rows: list[dict], outcomes: list, ids: list) -> None:
        images = [o.result() if isinstance(o, cf.Future) else o for o in outcomes]
        key = f"{stream.key}:{part}"
        write_part(cfg, SOURCE, plan.first_part + part, rows, images, key, ids)
        progress.advance(len(rows))

    def flush(part: int) -> None:
        rows, outcomes = [], []
        ids = [stream.ids.pop(i, None) for i in plan.part_rows(part)]
        for i in plan.part_rows(part):
            row = plan.row(i)
            rows.append(row)
            if row.get("status") is not None:  # failed while planning
                outcomes.append(None)
            elif i in pending:
                outcomes.append(pending.pop(i))
            else:
                outcomes.append(REASON_MISSING)
        while len(inflight) >= 2:
            inflight.pop(0).result()
        inflight.append(writer.submit(write, part, rows, outcomes, ids))
        written.append(part)
        run.parts_written += 1

    def wait_writes() -> None:
        while inflight:
            inflight.pop(0).result()  # re-raises a failed write

    where = _where(archive.images, cfg)
    try:
        try:
            digest = _read_stream(cfg, archive, plan, done, pool, flush, ignored, pending, stream)
        except InputError:
            wait_writes()
            if archive.md5:  # never verified: keep nothing derived from it
                _roll_back(cfg, plan)
            raise
        wait_writes()
        if archive.md5 and digest != archive.md5.lower():
            _roll_back(cfg, plan)
            raise InputError(
                f"iNat21 archive {where}: md5 {digest} does not match the configured "
                f"{archive.md5}; its parts were removed"
            )
        for part in range(plan.n_parts):
            if part not in done and part not in written:
                flush(part)  # members that never arrived: missing_in_archive
        wait_writes()
    finally:
        writer.shutdown(wait=True)
    return dict(sorted(ignored.items())), digest


@dataclass
class _Stream:
    """What a redone archive's parts carry: their record's key, the image ids of the members
    read so far, and the images earlier parts stored (reused instead of decoded again)."""

    key: str
    reuse: ReuseIndex
    ids: dict[int, str] = field(default_factory=dict)  # entry index -> image id


def _read_stream(cfg, archive, plan, done, pool, flush, ignored, pending, stream) -> str | None:
    """Hand each listed member to the decode pool; flush a part when complete. Returns md5."""
    received: set[int] = set()
    remaining = list(plan.expected)
    max_bytes = cfg.sources.inat21.max_member_bytes

    def note(reason: str, name: str) -> None:
        n = ignored[reason] = ignored.get(reason, 0) + 1
        if n <= 5:
            log.warning("iNat21 archive %s: member %r ignored (%s)", archive.images, name, reason)

    where = _where(archive.images, cfg)
    fh = open_input(archive.images, cfg, "images")
    reader = _HashingReader(fh, enabled=bool(archive.md5))
    try:
        with tarfile.open(fileobj=reader, mode="r|gz") as tar:
            for member in tar:
                tar.members = []  # a stream keeps every TarInfo otherwise (~0.6 KB a member)
                if member.isdir():
                    continue
                name = normal_member_name(member.name)
                if tar_member_is_special(member) or member_is_unsafe(name):
                    note(IGNORED_UNSAFE, member.name)
                    continue
                index = plan.by_name.get(name)
                if index is None:
                    note(IGNORED_UNLISTED, member.name)
                    continue
                if index in received:
                    note(IGNORED_DUPLICATE, member.name)
                    continue
                received.add(index)
                part = plan.part_of(index)
                if part in done or plan.entries[index].reason is not None:
                    continue
                stream.ids[index] = iid = _member_id(name, member)
                if member.size > max_bytes:
                    pending[index] = REASON_MEMBER_TOO_LARGE
                elif (stored := stream.reuse.load(iid)) is not None:
                    pending[index] = stored
                else:
                    extracted = tar.extractfile(member)
                    pending[index] = pool.submit(extracted.read() if extracted else b"")
                remaining[part] -= 1
                if remaining[part] == 0:
                    flush(part)
        reader.drain()
    except RemoteReadError as exc:
        raise InputError(f"iNat21 archive {where}: {exc}") from exc
    except (tarfile.TarError, zlib.error, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"iNat21 archive {where}: unreadable ({exc})") from exc
    finally:
        fh.close()
    return reader.hexdigest()


def _roll_back(cfg: BuildConfig, plan: _ArchivePlan) -> None:
    """Remove every part of an archive that failed its md5 check (this run's and earlier)."""
    for part in range(plan.n_parts):
        index = plan.first_part + part
        forget_key(part_parquet(cfg, SOURCE, index))
        part_parquet(cfg, SOURCE, index).unlink(missing_ok=True)
        (cfg.root / part_tar_relpath(SOURCE, index)).unlink(missing_ok=True)
