"""What the three source ingests share: catalog rows, the part writer, stats, the decode pool.

A part is the unit of resume: `images/<source>/part-%05d.tar` is written first, then
`catalog/<source>/part-%05d.parquet`, both atomically; a part whose parquet exists is done.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import os
import re
import stat
import tarfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from treeoflife.config import BuildConfig
from treeoflife.images import (
    DEFAULT_MAX_PIXELS,
    KEEP_ORIGINALS,
    NormalizedImage,
    ResizePolicy,
    decode_outcome,
)
from treeoflife.io import (
    ImageStoreWriter,
    remove_stale_temporaries,
    store_member_name,
    write_parquet_atomic,
    write_text_atomic,
)
from treeoflife.procs import process_pool
from treeoflife.schemas import SOURCE_CATALOG
from treeoflife.sources.partstore import (
    ReuseIndex,
    StoredImage,
    forget_key,
    part_current,
    records_dir,
    write_record,
)
from treeoflife.vocabulary import IngestStatus

log = logging.getLogger(__name__)

PART_NAME = "part-{:05d}"


MAX_MEMBER_BYTES = 100_000_000  # an archive member larger than this is not read into memory


@dataclass
class IngestStats:
    """Counts of one ingest run. rows = ok + failed = every input row."""

    source: str
    rows: int = 0
    ok: int = 0
    failed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    parts_written: int = 0
    parts_skipped: int = 0
    ignored: dict[str, int] = field(default_factory=dict)  # archive members that are not rows

    def to_dict(self) -> dict:
        d = asdict(self)
        d["reasons"] = dict(sorted(self.reasons.items()))
        d["ignored"] = dict(sorted(self.ignored.items()))
        return d


def catalog_dir(cfg: BuildConfig, source: str) -> Path:
    return cfg.root / "catalog" / source


def images_dir(cfg: BuildConfig, source: str) -> Path:
    return cfg.root / "images" / source


def part_parquet(cfg: BuildConfig, source: str, index: int) -> Path:
    return catalog_dir(cfg, source) / (PART_NAME.format(index) + ".parquet")


def part_tar_relpath(source: str, index: int) -> str:
    return f"images/{source}/{PART_NAME.format(index)}.tar"


def part_done(cfg: BuildConfig, source: str, index: int) -> bool:
    return part_parquet(cfg, source, index).exists()


def part_is_current(cfg: BuildConfig, source: str, index: int, key: str) -> bool:
    """The part on disk was made from what `key` names (sources.partstore)."""
    tar = cfg.root / part_tar_relpath(source, index)
    return part_current(part_parquet(cfg, source, index), tar, key)


def reuse_index(cfg: BuildConfig, source: str) -> ReuseIndex:
    return ReuseIndex(catalog_dir(cfg, source), cfg.root)


def prepare_source_dirs(cfg: BuildConfig, source: str) -> None:
    """Create the output folders and drop temporaries an interrupted run left behind."""
    records = records_dir(catalog_dir(cfg, source))
    for folder in (catalog_dir(cfg, source), images_dir(cfg, source), records):
        folder.mkdir(parents=True, exist_ok=True)
        n = remove_stale_temporaries(folder)
        if n:
            log.info("%s: removed %d stale temporary file(s) in %s", source, n, folder)


def remove_parts_from(cfg: BuildConfig, source: str, first: int) -> int:
    """Remove parts numbered `first` and up (and their sidecars): what an earlier run over a
    longer input left would otherwise be read as rows of this one."""
    removed = 0
    records = records_dir(catalog_dir(cfg, source))
    for folder in (catalog_dir(cfg, source), images_dir(cfg, source), records):
        for path in sorted(folder.glob("part-*")):
            number = re.match(r"part-(\d+)\.", path.name)
            if number and int(number.group(1)) >= first:
                path.unlink()
                removed += 1
    if removed:
        log.info("%s: removed %d file(s) of parts >= %d (an earlier run)", source, removed, first)
    return removed


def new_row(key: str, source: str) -> dict:
    """A catalog row with every SOURCE_CATALOG field present (null)."""
    row = dict.fromkeys(SOURCE_CATALOG.names)
    row["key"] = key
    row["source"] = source
    return row


def fail(row: dict, reason: str) -> dict:
    row["status"] = IngestStatus.FAILED
    row["reason"] = reason
    return row


def clean(value: str | None, nulls: Sequence[str] = ()) -> str | None:
    """Strip a text field; empty and the given null markers become None."""
    if value is None:
        return None
    value = str(value).strip()
    if not value or value in nulls:
        return None
    return value


def fields_are_utf8(fields: list[str]) -> bool:
    """False when a field holds bytes that were not UTF-8 (decoded as surrogate escapes).

    Text inputs are read with errors="surrogateescape", so a bad byte spoils its own row only.
    """
    try:
        "".join(fields).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def duplicate_of(key: str, occurrences: dict[str, int]) -> str | None:
    """None the first time `key` is seen; else a distinct key for the duplicate row.

    Keys stay unique in the catalog: the n-th repeat of `k` is recorded as `k#dup<n>`.
    """
    n = occurrences.get(key, 0)
    occurrences[key] = n + 1
    return f"{key}#dup{n}" if n else None


def member_is_unsafe(name: str) -> bool:
    """Absolute paths and `..` components never name an image we read."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return True
    if ".." not in name:  # the common case, without building a path (millions of members)
        return False
    return ".." in PurePosixPath(name.replace("\\", "/")).parts


def tar_member_is_special(member: tarfile.TarInfo) -> bool:
    """Symlinks, hard links, devices and FIFOs are never read (only regular files are)."""
    return not member.isdir() and not member.isreg()


def zip_member_is_special(info: zipfile.ZipInfo) -> bool:
    """A zip entry whose Unix mode says symlink, device or FIFO (zips from `zip -y` keep them)."""
    mode = info.external_attr >> 16
    return mode != 0 and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def normal_member_name(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


def write_part(
    cfg: BuildConfig,
    source: str,
    index: int,
    rows: list[dict],
    images: Sequence[NormalizedImage | StoredImage | str | None],
    key: str | None = None,
    image_ids: Sequence[str | None] | None = None,
) -> pa.Table:
    """Write one part: images in row order into the store tar, then the catalog parquet.

    `images[i]` is the decoded image of `rows[i]` (or one an earlier part stored:
    sources.partstore), a reason code if it failed to decode, or None when the row already
    carries its failure. `key` (what the part is made from) goes into the catalog part,
    `image_ids` into its reuse sidecar, written before it.
    """
    if len(rows) != len(images):
        raise ValueError("rows and images differ in length")
    tar_rel = part_tar_relpath(source, index)
    with ImageStoreWriter(cfg.root / tar_rel) as store:
        for row, image in zip(rows, images, strict=True):
            if isinstance(image, StoredImage):
                image = image.load()
            if isinstance(image, NormalizedImage):
                offset, size = store.add(store_member_name(row["key"]), image.data)
                row.update(
                    status=IngestStatus.OK,
                    reason=None,
                    image_file=tar_rel,
                    image_offset=offset,
                    image_size=size,
                    md5=image.md5,
                    width=image.width,
                    height=image.height,
                )
            elif isinstance(image, str):
                fail(row, image)
            elif row.get("status") != IngestStatus.FAILED or not row.get("reason"):
                raise ValueError(f"row {row['key']} has neither an image nor a failure reason")
    table = pa.Table.from_pylist(rows, schema=SOURCE_CATALOG)
    parquet = part_parquet(cfg, source, index)
    if key is None:
        write_parquet_atomic(table, parquet)
        return table
    forget_key(parquet)  # killed before the new record is written: the part is not current
    write_parquet_atomic(table, parquet)
    ids = list(image_ids) if image_ids is not None else [None] * len(rows)
    write_record(parquet, key, [r["key"] for r in rows], ids)
    return table


def count_table(stats: IngestStats, table: pa.Table) -> None:
    statuses = table.column("status").to_pylist()
    reasons = table.column("reason").to_pylist()
    for status, reason in zip(statuses, reasons, strict=True):
        stats.rows += 1
        if status == IngestStatus.OK:
            stats.ok += 1
        else:
            stats.failed += 1
            stats.reasons[reason or "unknown"] = stats.reasons.get(reason or "unknown", 0) + 1


def finish_stats(
    cfg: BuildConfig,
    source: str,
    n_parts: int,
    run: IngestStats,
    ignored: dict[str, int],
    extra: dict | None = None,
) -> IngestStats:
    """Count every part on disk (written now or earlier) and write `_stats.json`.

    `_stats.json` holds only what the inputs determine (no run counters, no timestamps), so a
    rerun rewrites the same bytes.
    """
    total = IngestStats(source=source)
    for index in range(n_parts):
        table = pq.read_table(part_parquet(cfg, source, index), columns=["status", "reason"])
        count_table(total, table)
    total.parts_written = run.parts_written
    total.parts_skipped = run.parts_skipped
    total.ignored = dict(sorted(ignored.items()))
    total.reasons = dict(sorted(total.reasons.items()))
    content = {
        "source": source,
        "parts": n_parts,
        "rows": total.rows,
        "ok": total.ok,
        "failed": total.failed,
        "reasons": total.reasons,
        "ignored": total.ignored,
        **(extra or {}),
    }
    write_text_atomic(
        catalog_dir(cfg, source) / "_stats.json", json.dumps(content, indent=2, sort_keys=True)
    )
    log.info("%s: %s", source, json.dumps(total.to_dict(), sort_keys=True))
    return total


def read_previous_stats(cfg: BuildConfig, source: str) -> dict:
    path = catalog_dir(cfg, source) / "_stats.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


SMALL_JOB_IMAGES = 200
"""Below this many images a job decodes inline: starting worker processes costs ~0.5 s."""


def pool_workers_for(n_images: int) -> int | None:
    return 0 if n_images < SMALL_JOB_IMAGES else None


class DecodePool:
    """Owns the worker processes that validate/normalise images off the reading thread.

    Measured here (2 cores, 500x375 JPEGs): 2 processes ~800-1000 images/s, inline ~420-580/s,
    2 threads no better than inline (PIL holds the GIL for much of the work), so processes it
    is. (`threads=True` is for code already running in its own worker process, like the EOL
    download processes, where threads avoid piping every image between processes.) They start
    from a forkserver, never by forking this process: flows run the three
    ingests on threads at once, and forking a threaded process can deadlock. If the workers
    cannot start (a script without an `if __name__ == "__main__":` guard), decoding falls back
    to inline with a warning. `workers=0` decodes inline (tests, tiny inputs). Results never
    depend on the pool.
    """

    def __init__(
        self,
        workers: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        resize: ResizePolicy = KEEP_ORIGINALS,
        threads: bool = False,
    ):
        if workers is None:
            workers = min(2, os.cpu_count() or 1)
        self.workers = workers
        self.max_pixels = max_pixels
        self.resize = resize
        self.executor: cf.Executor | None = None
        if workers > 0 and threads:
            # inside a download process: PIL releases the GIL while decoding, resizing and
            # encoding, so threads overlap with the event loop without copying bytes around
            self.executor = cf.ThreadPoolExecutor(workers, thread_name_prefix="decode")
        elif workers > 0:
            self.executor = process_pool(workers, "forkserver")  # die with this process
            try:
                self.executor.submit(int).result()  # start now: fail early, not mid-part
            except cf.BrokenExecutor:
                log.warning("decode workers could not start; decoding inline instead")
                self.executor.shutdown(wait=False, cancel_futures=True)
                self.executor = None
                self.workers = 0

    def submit(self, data: bytes) -> cf.Future:
        if self.executor is None:
            fut: cf.Future = cf.Future()
            fut.set_result(decode_outcome(data, self.max_pixels, self.resize))
            return fut
        return self.executor.submit(decode_outcome, data, self.max_pixels, self.resize)

    def map(self, datas: Iterable[bytes]) -> list[NormalizedImage | str]:
        futures = [self.submit(d) for d in datas]
        return [f.result() for f in futures]

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
