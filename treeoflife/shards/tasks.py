"""A split's shards as independent per-shard tasks that any mapper runs (treeoflife.fanout:
here, Prefect threads, a Dask cluster), for the shard driver (treeoflife.shards.writer): the
same bytes as its in-process path whatever the mapper or the number of workers.

1. The split's rows, in shard order, go to `<split>/.work/rows.parquet`, one row group per
   `samples_per_shard` rows: tasks get row ranges and paths, never rows or image bytes.
2. Without a byte limit, shard k holds rows [k*S, (k+1)*S). With `max_shard_bytes` the
   boundaries depend on the encoded sizes: an encode pass (one task per S rows) stores each
   chunk's encoded images in `.work/chunk-NNNNNN.jpg` and the sizes of every sample's members
   in `.work/chunk-NNNNNN.sizes.npy` (with a `.json` record naming its inputs, so a rerun after
   a kill keeps finished chunks); a plan over the sizes alone (about a microsecond a row) puts
   the boundaries where the in-process writer would; each shard task then copies its images
   from the chunk stores and checks the plan's byte count. The json member names the sample's
   shard and position, so its planned length is its length at shard 0 position 0 plus the
   extra digits.
3. The driver keeps every planned shard that passes the manifest's resume rule (kept_shard) and
   maps the others to write_planned_shard, which returns the shard's entry and index rows
   (treeoflife.fanout.Parts: kept and written shards come back in plan order).

Tasks use the split folder and the data root given to them (treeoflife.exchange): the driver's
own, or their places on shared storage (object storage), where the driver pushes the inputs
first, pulls each shard into the split folder (checking its sha256) and leaves the whole split
at the end.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from treeoflife.errors import InputError, OutputError
from treeoflife.exchange import exchange_folder, pull_outputs
from treeoflife.fanout import Done, PartMapper, Parts, local_processes
from treeoflife.io import atomic_path
from treeoflife.progress import Progress
from treeoflife.schemas import CATALOG
from treeoflife.shards.encode import encoded_images
from treeoflife.shards.manifest import (
    INDEX_FILE,
    MANIFEST_FILE,
    SIZES_FILE,
    Fingerprint,
    ShardEntry,
    ShardResult,
    SplitManifest,
    fingerprint_rows,
    index_table,
    kept_shard,
    shard_index,
)
from treeoflife.shards.parts import located, packed_size, row_parts, shard_name
from treeoflife.shards.settings import ShardSettings
from treeoflife.shards.shard_file import ShardFile, closed_size
from treeoflife.shards.tar import padded
from treeoflife.storage import FsspecStorage, Storage, output_path

log = logging.getLogger(__name__)

WORK_DIR = ".work"
ROWS_FILE = "rows.parquet"
ROWS_SCHEMA = pa.schema(
    [
        *CATALOG,
        pa.field("image_file", pa.string()),
        pa.field("image_offset", pa.int64()),
        pa.field("image_size", pa.int64()),
    ]
)
"""What a shard needs of a row: the catalog columns and where the image is stored."""


def rows_table(rows: Iterable[Mapping]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=ROWS_SCHEMA)


@dataclass(frozen=True)
class OrderedRows:
    """A split's rows in shard order: how many, and `batches()` reading them (Arrow tables of
    `schema`) in one pass, so the shard driver never holds the split (the release streams them
    from DuckDB: treeoflife.release.tables)."""

    count: int
    batches: Callable[[], Iterator[pa.Table]]
    schema: pa.Schema = ROWS_SCHEMA

    @classmethod
    def from_table(
        cls, table: pa.Table, keys: Sequence[str] | None = None, batch: int = 4096
    ) -> OrderedRows:
        """The rows of `table` (which has a `key` column) in the order of `keys` (table order
        without)."""
        if keys is None:
            keys = table.column("key").to_pylist()
        positions = pc.index_in(pa.array(keys, pa.string()), value_set=table.column("key"))
        if positions.null_count:
            raise InputError(f"{positions.null_count} keys to shard are not in the catalog")

        def batches() -> Iterator[pa.Table]:
            for start in range(0, len(keys), batch):
                yield table.take(positions[start : start + batch])

        return cls(len(keys), batches, table.schema)

    def dicts(self) -> Iterator[dict]:
        for table in self.batches():
            yield from table.to_pylist()


@dataclass(frozen=True)
class SplitJob:
    """What every task of one split shares (absolute paths: workers may run elsewhere).

    Tasks read the row table from `files` and leave shards and chunk stores there, and read
    image stores from `images` (treeoflife.exchange): the split folder and the data root
    themselves (one machine, or a POSIX folder all workers mount), or their places on shared
    storage.
    """

    split_dir: str
    settings: ShardSettings
    params: dict  # what the bytes depend on, as in the manifest
    files: Storage  # the split's folder for the tasks
    images: Storage  # where image stores are read (image_file is relative to it)

    @property
    def work(self) -> Path:
        return Path(self.split_dir) / WORK_DIR

    @property
    def split(self) -> str:
        return Path(self.split_dir).name

    def encoded(self, rows: Iterable[Mapping]) -> Iterator[tuple[dict, bytes]]:
        s = self.settings
        workers = local_processes(s.workers)
        yield from encoded_images(
            rows, self.images, s.image_size, s.jpeg_quality, s.resize_mode, workers
        )

    def placed(self, index: int, rows: list[dict]) -> list[dict]:
        """Rows as the json members of shard `index` show them."""
        if not self.params["assign_location"]:
            return rows
        return [located(r, self.split, index, i) for i, r in enumerate(rows)]


@dataclass(frozen=True)
class EncodeChunk:
    """Rows [start, stop) of the split: encode their images into a chunk store."""

    job: SplitJob
    chunk: int
    start: int
    stop: int


@dataclass(frozen=True)
class ShardTask:
    """Rows [start, stop) of the split: shard number `index`."""

    job: SplitJob
    index: int
    start: int
    stop: int
    planned_bytes: int | None = None  # byte-limited splits: the plan's size (checked)
    from_chunks: bool = False  # images from the encode pass's chunk stores


# --------------------------------------------------------------------------- rows


def _read_rows(job: SplitJob, start: int, stop: int) -> list[dict]:
    """Rows [start, stop) of the split, reading only the row groups they sit in."""
    with job.files.open(f"{WORK_DIR}/{ROWS_FILE}") as fh:
        return _rows_in(fh, job.settings.samples_per_shard, start, stop)


def _rows_in(fh, group: int, start: int, stop: int) -> list[dict]:
    first, last = start // group, (stop - 1) // group
    table = pq.ParquetFile(fh).read_row_groups(list(range(first, last + 1)))
    return table.slice(start - first * group, stop - start).to_pylist()


# --------------------------------------------------------------------------- encode pass


def _chunk_paths(chunk: int) -> tuple[str, str, str]:
    """(encoded images, member sizes, done record) of an encode chunk, in the split's files."""
    stem = f"{WORK_DIR}/chunk-{chunk:06d}"
    return f"{stem}.jpg", f"{stem}.sizes.npy", f"{stem}.json"


def _read_record(files: Storage, rel: str) -> dict | None:
    try:
        return json.loads(files.read_bytes(rel))
    except (OSError, ValueError):
        return None


def encode_chunk(item: EncodeChunk) -> int:
    """Encode rows [start, stop) into `.work/chunk-N.jpg` + per-row member sizes (jpg, padded
    text members, json at shard 0 position 0); the `.json` record, written last, marks it done
    and names its inputs. A finished chunk with the same inputs is kept. Returns rows."""
    job, files = item.job, item.job.files
    data_path, sizes_path, record_path = _chunk_paths(item.chunk)
    rows = _read_rows(job, item.start, item.stop)
    if job.params["assign_location"]:  # every row at shard 0 position 0: the plan adds digits
        rows = [located(r, job.split, 0, 0) for r in rows]
    fp = fingerprint_rows(f"chunk-{item.chunk:06d}", rows, job.params)
    record = _read_record(files, record_path)
    if (
        record is not None
        and record.get("fingerprint") == fp
        and files.size(data_path) == record.get("bytes")
        and files.exists(sizes_path)
    ):
        return len(rows)
    files.remove(record_path)  # the old record must not vouch for new bytes
    sizes = np.zeros((len(rows), 3), dtype=np.int64)
    total = 0
    with output_path(files, data_path) as tmp, open(tmp, "wb") as fh:
        for i, (row, jpg) in enumerate(job.encoded(rows)):
            _, _, texts, (_, json_member) = row_parts(row, b"", job.settings)
            fh.write(jpg)
            total += len(jpg)
            sizes[i] = (len(jpg), sum(padded(len(d)) for _, d in texts), len(json_member))
    with output_path(files, sizes_path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, sizes)
    record = {"fingerprint": fp, "rows": len(rows), "bytes": total}
    files.write_bytes(record_path, json.dumps(record, sort_keys=True).encode())
    return len(rows)


def plan_shards(sizes: Iterator[np.ndarray], params: Mapping) -> list[tuple[int, int, int]]:
    """(start, stop, shard bytes) per shard: the boundaries the in-process writer finds.

    `sizes` yields, chunk by chunk in row order, (jpg bytes, padded text members, json bytes at
    shard 0 position 0) per row. A shard ends at `samples_per_shard` samples or before a sample
    that would take it past `max_shard_bytes` (a sample alone in its shard is never moved).
    """
    limit, max_bytes = params["samples_per_shard"], params["max_shard_bytes"]
    assign = params["assign_location"]
    base = len(shard_name(0))
    shards: list[tuple[int, int, int]] = []
    start = count = size = index = row = 0
    extra_name = 0

    for chunk in sizes:
        for jpg, text, js in chunk.tolist():
            fixed = padded(jpg) + text
            sample = fixed + padded(js + (len(str(count)) - 1 + extra_name if assign else 0))
            if count and (count >= limit or (max_bytes and closed_size(size + sample) > max_bytes)):
                shards.append((start, row, closed_size(size)))
                start, count, size, index = row, 0, 0, index + 1
                extra_name = len(shard_name(index)) - base
                sample = fixed + padded(js + (extra_name if assign else 0))
            size += sample
            count += 1
            row += 1
    if count:
        shards.append((start, row, closed_size(size)))
    return shards


def _load_sizes(files: Storage, rel: str) -> np.ndarray:
    with files.open(rel) as fh:
        return np.load(fh)


def _chunk_images(job: SplitJob, start: int, stop: int) -> Iterator[bytes]:
    """The encoded images of rows [start, stop), read from the chunk stores in order."""
    group = job.settings.samples_per_shard
    files = job.files
    for chunk in range(start // group, (stop - 1) // group + 1):
        data_path, sizes_path, _ = _chunk_paths(chunk)
        lengths = _load_sizes(files, sizes_path)[:, 0].tolist()
        lo = max(start, chunk * group) - chunk * group
        hi = min(stop, (chunk + 1) * group) - chunk * group
        with files.open(data_path) as fh:
            fh.seek(sum(lengths[:lo]))
            for length in lengths[lo:hi]:
                data = fh.read(length)
                if len(data) != length:
                    raise InputError(
                        f"{files.url(data_path)}: chunk store is shorter than its sizes"
                    )
                yield data


# --------------------------------------------------------------------------- shard tasks


def write_planned_shard(item: ShardTask) -> ShardResult:
    """Write shard `item.index` from rows [start, stop) of the split (the same bytes when run
    again: a retried task rewrites its shard). Returns its entry and index rows."""
    job = item.job
    name = shard_name(item.index)
    rows = _read_rows(job, item.start, item.stop)
    if item.from_chunks:
        jpgs = _chunk_images(job, item.start, item.stop)
    else:
        jpgs = (jpg for _, jpg in job.encoded(rows))
    rows = job.placed(item.index, rows)
    with output_path(job.files, name, renames_itself=True) as target:
        shard, fp = ShardFile(target), Fingerprint(name, job.params)
        try:
            for row, jpg in zip(rows, jpgs, strict=True):
                parts = row_parts(row, jpg, job.settings)
                shard.add_sample(parts, str(row["key"]), packed_size(parts))
                fp.add(parts[3][1], row)
            info = shard.close()
        except BaseException:
            shard.abort()
            raise
        if item.planned_bytes is not None and info.bytes != item.planned_bytes:
            target.unlink(missing_ok=True)
            raise RuntimeError(
                f"{job.files.url(name)}: {info.bytes} bytes written, the boundary plan expected "
                f"{item.planned_bytes} (the plan and the writer disagree: a bug)"
            )
    entry = ShardEntry(info.samples, info.bytes, info.sha256, fp.hexdigest())
    return ShardResult(name, entry, index_table(shard.index))


# --------------------------------------------------------------------------- the split


class MappedSplit:
    """One split's shards by tasks: plan, keep what the resume rule keeps, map the rest."""

    def __init__(
        self,
        rows: OrderedRows,
        split_dir: Path,
        data_root: Path,
        settings: ShardSettings,
        params: dict,
        shared: FsspecStorage | None = None,
    ):
        files = exchange_folder(split_dir, data_root, shared)
        images = exchange_folder(data_root, data_root, shared)
        self.job = SplitJob(str(Path(split_dir).resolve()), settings, params, files, images)
        self.n = rows.count
        self._write_rows(rows)

    def _write_rows(self, rows: OrderedRows) -> None:
        """The split's rows in shard order, one row group per `samples_per_shard` rows."""
        job, group = self.job, self.job.settings.samples_per_shard
        job.work.mkdir(parents=True, exist_ok=True)
        path = job.work / ROWS_FILE
        written = 0
        with (
            atomic_path(path) as tmp,
            pq.ParquetWriter(tmp, rows.schema, compression="zstd") as w,
        ):
            pending: list[pa.Table] = []
            held = 0
            for table in rows.batches():
                pending.append(table)
                held += table.num_rows
                while held >= group:
                    rows_now = pa.concat_tables(pending)
                    w.write_table(rows_now.slice(0, group), group)
                    pending, held = [rows_now.slice(group)], held - group
                    written += group
            if held:
                w.write_table(pa.concat_tables(pending), group)
                written += held
        if written != self.n:
            raise InputError(f"{job.split}: {written} rows to shard, {self.n} expected")
        job.files.put(path, f"{WORK_DIR}/{ROWS_FILE}")  # nothing to copy to the split folder

    def _placed_rows(self, index: int, start: int, stop: int) -> list[dict]:
        with open(self.job.work / ROWS_FILE, "rb") as fh:
            rows = _rows_in(fh, self.job.settings.samples_per_shard, start, stop)
        return self.job.placed(index, rows)

    def _plan(self, map_parts: PartMapper, progress: Progress) -> list[tuple[int, int, int | None]]:
        group = self.job.settings.samples_per_shard
        spans = [(s, min(s + group, self.n)) for s in range(0, self.n, group)]
        if not self.job.settings.max_shard_bytes:
            return [(s, e, None) for s, e in spans]
        progress.start(f"encode {self.job.split}", self.n)
        chunks = [EncodeChunk(self.job, i, s, e) for i, (s, e) in enumerate(spans)]
        for done in map_parts(encode_chunk, chunks):
            progress.advance(done)
        progress.finish()
        files = self.job.files
        sizes = (_load_sizes(files, _chunk_paths(i)[1]) for i in range(len(spans)))
        return plan_shards(sizes, self.job.params)

    def shards(
        self, old: SplitManifest, map_parts: PartMapper, progress: Progress
    ) -> Iterator[ShardResult]:
        """Every shard of the plan in order, kept or written by a task (and pulled here from
        shared storage)."""
        job, split_dir = self.job, Path(self.job.split_dir)
        plan = self._plan(map_parts, progress)
        from_chunks = bool(job.settings.max_shard_bytes)

        def to_do(shard: tuple[int, tuple[int, int, int | None]]) -> ShardTask | Done:
            i, (start, stop, planned) = shard
            name = shard_name(i)
            rows = functools.partial(self._placed_rows, i, start, stop)
            if result := kept_shard(split_dir, name, old.shards.get(name), rows, job.params):
                return Done(result)
            return ShardTask(job, i, start, stop, planned, from_chunks)

        def samples(shard: tuple[int, tuple[int, int, int | None]]) -> int:
            _, (start, stop, _) = shard
            return stop - start

        shards = Parts(enumerate(plan), to_do, size=samples, progress=progress)
        progress.start(f"shards {job.split}", self.n)
        yield from shards.run(write_planned_shard, map_parts, lambda _, r: self._pulled(r))

    def _pulled(self, result: ShardResult) -> ShardResult:
        """A written shard, in the split folder: a copy from shared storage whose sha256
        differs from the task's entry is an error, never a release file."""
        name, sha256 = result.name, {result.name: result.entry.sha256}
        if not pull_outputs(self.job.files, [name], self.job.split_dir, sha256=sha256):
            raise OutputError(f"{self.job.files.url(name)}: its task finished without it")
        return result

    def finish(self, names: set[str]) -> None:
        """After the driver wrote the split's records: leave the whole split in the tasks'
        folder (shards kept from an earlier run too; stale shards and work files gone), then
        drop the work folder. When that folder is the split folder, there is nothing to do
        (the writer already removed the stale shards)."""
        files, split_dir = self.job.files, Path(self.job.split_dir)
        for name in sorted(names):
            if files.size(name) != (split_dir / name).stat().st_size:
                files.put(split_dir / name, name)
        for name in files.list(""):
            if shard_index(name) is not None and name not in names:
                files.remove(name)
        for name in (INDEX_FILE, SIZES_FILE, MANIFEST_FILE):
            files.put(split_dir / name, name)
        files.remove_tree(WORK_DIR)
        shutil.rmtree(self.job.work, ignore_errors=True)
