"""A split's shards written by independent per-shard tasks, which any mapper can run
(treeoflife.fanout: here, Prefect threads, a Dask cluster), with the same bytes as the
sequential writer (`writer.write_split_shards`) whatever the mapper or the number of workers.

1. The split's rows, in shard order, go to `<split>/.work/rows.parquet`, one row group per
   `samples_per_shard` rows: tasks get row ranges and paths, never rows or image bytes.
2. Without a byte limit, shard k holds rows [k*S, (k+1)*S) and one task per shard reads its
   rows, encodes their images and writes the shard.
   With `max_shard_bytes`, the boundaries depend on the encoded sizes. An encode pass (one task
   per S rows) stores each chunk's encoded images in `.work/chunk-NNNNNN.jpg` and the sizes of
   every sample's members in `.work/chunk-NNNNNN.sizes.npy`; a sequential plan over the sizes
   alone (no image bytes, about a microsecond a row) puts the boundaries where the sequential
   writer would; then one task per shard copies its images from the chunk stores into the tar.
   The json member names the sample's shard and position, so its planned length is its length
   at shard 0 position 0 plus the extra digits; each shard task checks the plan's byte count.
3. A shard task leaves its manifest entry and index rows in `.work/` (written last: its done
   record), so a retried or rerun task skips a finished shard. The driver then writes
   index.parquet, sizes.json and manifest.json once, in shard order, and removes `.work/`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from treeoflife.errors import InputError, OutputError
from treeoflife.fanout import PartMapper, local_processes
from treeoflife.io import (
    TMP_SUFFIX,
    atomic_path,
    remove_stale_temporaries,
    write_text_atomic,
)
from treeoflife.progress import Progress, or_null
from treeoflife.shards.encode import encoded_images
from treeoflife.shards.resize import SHORTER_SIDE
from treeoflife.shards.tar import BLOCK, RECORD, padded
from treeoflife.shards.text import text_for
from treeoflife.shards.writer import (
    _SHARD_FILE,
    INDEX_FILE,
    INDEX_SCHEMA,
    MANIFEST_FILE,
    SHARD_PATTERN,
    SIZES_FILE,
    ShardInfo,
    SplitShards,
    _check_row,
    _file_matches,
    _fingerprint,
    _index_table,
    _load_manifest,
    _locate,
    _parts_of,
    _ShardFile,
    _write_manifest,
    packed_size,
    scan_shard,
)
from treeoflife.storage import FsspecStorage, LocalStorage, Storage, output_path

log = logging.getLogger(__name__)

WORK_DIR = ".work"
ROWS_FILE = "rows.parquet"


@dataclass(frozen=True)
class SplitJob:
    """What every task of one split shares (absolute paths: workers may run elsewhere).

    With `shared` (object storage, treeoflife.storage), tasks read the row table and image
    stores from it and write their outputs to `shared/shared_split/`; the driver pushes the
    inputs there first and pulls the outputs into `split_dir` after. Without it, tasks use
    `split_dir` and `data_root` themselves (one machine, or a POSIX folder all workers mount).
    """

    split_dir: str
    data_root: str
    params: dict  # the writer's settings (as in the manifest)
    workers: int = 1  # encode processes a task may use where it runs
    shared: FsspecStorage | None = None
    shared_split: str = ""  # the split's folder on `shared`, e.g. shards/train

    @property
    def work(self) -> Path:
        return Path(self.split_dir) / WORK_DIR

    @property
    def split(self) -> str:
        return Path(self.split_dir).name

    @property
    def files(self) -> Storage:
        """Where tasks find the split's row table and leave shards and records."""
        if self.shared is None:
            return LocalStorage(self.split_dir)
        return FsspecStorage(self.shared.url(self.shared_split), self.shared.options)

    @property
    def images(self) -> Storage | Path:
        """Where tasks read image stores (image_file is relative to it)."""
        return Path(self.data_root) if self.shared is None else self.shared


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
    old_entry: dict | None = None  # this shard's entry in an earlier run's manifest
    planned_bytes: int | None = None  # byte-limited splits: the plan's size (checked)
    from_chunks: bool = False  # images from the encode pass's chunk stores


# --------------------------------------------------------------------------- rows


def _write_rows(table: pa.Table, keys: Sequence[str], path: Path, group: int) -> None:
    """The split's rows in `keys` order, one row group per `group` rows."""
    positions = pc.index_in(pa.array(keys, pa.string()), value_set=table.column("key"))
    if positions.null_count:
        raise InputError(f"{positions.null_count} keys to shard are not in the catalog")
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, table.schema, compression="zstd") as w:
        for start in range(0, len(keys), group):
            w.write_table(table.take(positions[start : start + group]), group)


def _read_rows(job: SplitJob, start: int, stop: int) -> list[dict]:
    """Rows [start, stop) of the split, reading only the row groups they sit in."""
    group = job.params["samples_per_shard"]
    first, last = start // group, (stop - 1) // group
    with job.files.open(f"{WORK_DIR}/{ROWS_FILE}") as fh:
        table = pq.ParquetFile(fh).read_row_groups(list(range(first, last + 1)))
    return table.slice(start - first * group, stop - start).to_pylist()


def _read_record(files: Storage, rel: str) -> dict | None:
    try:
        return json.loads(files.read_bytes(rel))
    except (OSError, ValueError):
        return None


def _write_record(files: Storage, rel: str, record: dict) -> None:
    files.write_bytes(rel, json.dumps(record, sort_keys=True).encode())


# --------------------------------------------------------------------------- encode pass


def _chunk_paths(chunk: int) -> tuple[str, str, str]:
    """(encoded images, member sizes, done record) of an encode chunk, in the split's files."""
    stem = f"{WORK_DIR}/chunk-{chunk:06d}"
    return f"{stem}.jpg", f"{stem}.sizes.npy", f"{stem}.json"


def _at_reference(job: SplitJob, rows: list[dict]) -> list[dict]:
    """Rows as their json member would be at shard 0, position 0 (the planner adds digits)."""
    if not job.params["assign_location"]:
        return rows
    name = f"{job.split}/{SHARD_PATTERN.format(0)}"
    return [{**r, "shard": name, "shard_position": 0} for r in rows]


def encode_chunk(item: EncodeChunk) -> int:
    """Encode rows [start, stop) into `.work/chunk-N.jpg` + per-row member sizes (jpg, padded
    text members, json at shard 0 position 0); the `.json` record, written last, marks it done
    and names its inputs. A finished chunk with the same inputs is kept. Returns rows."""
    job = item.job
    files = job.files
    data_path, sizes_path, record_path = _chunk_paths(item.chunk)
    rows = _at_reference(job, _read_rows(job, item.start, item.stop))
    fp = _fingerprint(f"chunk-{item.chunk:06d}", rows, job.params)
    record = _read_record(files, record_path)
    if (
        record is not None
        and record.get("fingerprint") == fp
        and files.size(data_path) == record.get("bytes")
        and files.exists(sizes_path)
    ):
        return len(rows)
    files.remove(record_path)  # the old record must not vouch for new bytes
    p = job.params
    sizes = np.zeros((len(rows), 3), dtype=np.int64)
    total = 0
    images = encoded_images(
        rows,
        job.images,
        p["image_size"],
        p["jpeg_quality"],
        p["resize_mode"],
        local_processes(job.workers),
    )
    with output_path(files, data_path) as tmp, open(tmp, "wb") as fh:
        for i, (row, jpg) in enumerate(images):
            _, _, texts, (_, json_member) = _parts_of(row, _check_row(row), b"", p)
            fh.write(jpg)
            total += len(jpg)
            sizes[i] = (len(jpg), sum(padded(len(d)) for _, d in texts), len(json_member))
    with output_path(files, sizes_path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, sizes)
    _write_record(files, record_path, {"fingerprint": fp, "rows": len(rows), "bytes": total})
    return len(rows)


def _final_size(size: int) -> int:
    """A shard's bytes once closed, from the bytes of its samples (end blocks, record padding)."""
    end = size + 2 * BLOCK
    return end + (-end % RECORD)


def plan_shards(sizes: Iterator[np.ndarray], params: dict) -> list[tuple[int, int, int]]:
    """(start, stop, shard bytes) per shard: the boundaries the sequential writer finds.

    `sizes` yields, chunk by chunk in row order, (jpg bytes, padded text members, json bytes at
    shard 0 position 0) per row. A shard ends at `samples_per_shard` samples or before a sample
    that would take it past `max_shard_bytes` (a sample alone in its shard is never moved).
    """
    limit, max_bytes = params["samples_per_shard"], params["max_shard_bytes"]
    assign = params["assign_location"]
    base = len(SHARD_PATTERN.format(0))
    shards: list[tuple[int, int, int]] = []
    start = count = size = index = row = 0
    extra_name = 0

    for chunk in sizes:
        for jpg, text, js in chunk.tolist():
            fixed = padded(jpg) + text
            sample = fixed + padded(js + (len(str(count)) - 1 + extra_name if assign else 0))
            if count and (count >= limit or (max_bytes and _final_size(size + sample) > max_bytes)):
                shards.append((start, row, _final_size(size)))
                start, count, size, index = row, 0, 0, index + 1
                extra_name = len(SHARD_PATTERN.format(index)) - base
                sample = fixed + padded(js + (extra_name if assign else 0))
            size += sample
            count += 1
            row += 1
    if count:
        shards.append((start, row, _final_size(size)))
    return shards


def _load_sizes(files: Storage, rel: str) -> np.ndarray:
    with files.open(rel) as fh:
        return np.load(fh)


def _chunk_sizes(job: SplitJob, n_chunks: int) -> Iterator[np.ndarray]:
    files = job.files
    for chunk in range(n_chunks):
        yield _load_sizes(files, _chunk_paths(chunk)[1])


def _chunk_images(job: SplitJob, start: int, stop: int) -> Iterator[bytes]:
    """The encoded images of rows [start, stop), read from the chunk stores in order."""
    group = job.params["samples_per_shard"]
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


def _record_files(name: str) -> tuple[str, str]:
    """(done record, index rows) of a shard task, in the split's files."""
    return f"{WORK_DIR}/{name}.json", f"{WORK_DIR}/{name}.index.parquet"


def _stored_matches(files: Storage, name: str, entry: dict) -> bool:
    """The stored shard is the one `entry` describes: size and sha256 on a disk; the size on
    object storage, where a shard appears only whole and its record is written after it."""
    local = files.local_path(name)
    if local is not None:
        return _file_matches(local, entry)
    return files.size(name) == entry.get("bytes")


def _write_index_rows(files: Storage, rel: str, rows: list[dict]) -> None:
    with output_path(files, rel) as tmp:
        pq.write_table(_index_table(rows), tmp, compression="zstd")


def _reuse_old_shard(item: ShardTask, name: str, located: list[dict], fp: str) -> dict | None:
    """The entry of a shard an earlier run wrote into the split folder from the same inputs
    (its record and index rows are left in the split folder's `.work/`), or None."""
    old, split_dir = item.old_entry, Path(item.job.split_dir)
    if (
        old is None
        or old.get("fingerprint") != fp
        or old.get("samples") != len(located)
        or not _file_matches(split_dir / name, old)
    ):
        return None
    log.info("shard %s already written, skipping", split_dir / name)
    entry = {k: old[k] for k in ("samples", "bytes", "sha256", "fingerprint")}
    local = LocalStorage(split_dir)
    record_rel, index_rel = _record_files(name)
    _write_index_rows(local, index_rel, scan_shard(split_dir / name))
    _write_record(local, record_rel, entry)
    return {**entry, "name": name}


def _task_rows(item: ShardTask) -> tuple[str, list[dict], list[dict], str]:
    """(shard name, rows, rows with their shard location, fingerprint) of a shard task."""
    job, p = item.job, item.job.params
    name = SHARD_PATTERN.format(item.index)
    rows = _read_rows(job, item.start, item.stop)
    located = _locate(rows, job.split, item.index) if p["assign_location"] else rows
    return name, rows, located, _fingerprint(name, located, p)


@contextlib.contextmanager
def _shard_target(files: Storage, name: str) -> Iterator[Path]:
    """Where _ShardFile writes shard `name` (it renames into place itself on a disk); on
    object storage a scratch file, uploaded whole when the block ends without error."""
    local = files.local_path(name)
    if local is not None:
        yield local
        return
    with tempfile.TemporaryDirectory(prefix="treeoflife-") as scratch:
        yield Path(scratch) / name
        files.put(Path(scratch) / name, name)


def write_planned_shard(item: ShardTask) -> dict:
    """Write shard `item.index` from rows [start, stop); leave its manifest entry and index
    rows in `.work/`. A shard finished by an earlier attempt, or listed with the same inputs in
    an earlier run's manifest, is kept. Returns the manifest entry (plus `name`)."""
    job = item.job
    p = job.params
    files = job.files
    name, rows, located, fp = _task_rows(item)
    record_rel, index_rel = _record_files(name)

    record = _read_record(files, record_rel)
    if (
        record is not None
        and record.get("fingerprint") == fp
        and files.exists(index_rel)
        and _stored_matches(files, name, record)
    ):
        return {**record, "name": name}
    if job.shared is None and (reused := _reuse_old_shard(item, name, located, fp)):
        return reused  # (with shared storage the driver looks for reusable shards itself)

    files.remove(record_rel)  # the old record must not vouch for new bytes
    if item.from_chunks:
        jpgs = _chunk_images(job, item.start, item.stop)
    else:
        images = encoded_images(
            rows,
            job.images,
            p["image_size"],
            p["jpeg_quality"],
            p["resize_mode"],
            local_processes(job.workers),
        )
        jpgs = (jpg for _, jpg in images)
    with _shard_target(files, name) as target:
        info, index_rows = _write_shard_file(target, job.split, located, jpgs, p)
        if item.planned_bytes is not None and info.bytes != item.planned_bytes:
            target.unlink(missing_ok=True)
            raise RuntimeError(
                f"{files.url(name)}: {info.bytes} bytes written, the boundary plan expected "
                f"{item.planned_bytes} (the plan and the writer disagree: a bug)"
            )
    entry = {"samples": info.samples, "bytes": info.bytes, "sha256": info.sha256, "fingerprint": fp}
    _write_index_rows(files, index_rel, index_rows)
    _write_record(files, record_rel, entry)
    return {**entry, "name": name}


def _write_shard_file(
    path: Path, split: str, rows: list[dict], jpgs: Iterator[bytes], params: dict
) -> tuple[ShardInfo, list[dict]]:
    """One shard from located rows and their encoded images, as the sequential writer lays
    it out (same members, same order, same index rows)."""
    current = _ShardFile(path)
    try:
        for row, jpg in zip(rows, jpgs, strict=True):
            tid = _check_row(row)
            parts = _parts_of(row, tid, jpg, params)
            current.add_sample(tid, str(row["key"]), parts, packed_size(parts))
        info = current.close()
    except BaseException:
        current.abort()
        raise
    return info, current.index


# --------------------------------------------------------------------------- the split


def write_split_shards_mapped(
    table: pa.Table,
    keys: Sequence[str],
    split_dir: Path,
    data_root: Path,
    image_size: int,
    jpeg_quality: int,
    text_type: str,
    seed: int,
    map_parts: PartMapper,
    samples_per_shard: int = 10_000,
    max_shard_bytes: int = 0,
    resize_mode: str = SHORTER_SIDE,
    workers: int = 1,
    assign_location: bool = True,
    progress: Progress | None = None,
    shared: FsspecStorage | None = None,
    shared_split: str = "",
) -> SplitShards:
    """write_split_shards for the rows of `table` listed in `keys` (in that order), with the
    encoding and shard writing run by `map_parts`. Same files, same bytes.

    With `shared` (object storage), the tasks work in `shared/shared_split/` and read image
    stores from `shared` (the caller pushed them there, at their data-root-relative names);
    the driver pushes the row table and pulls each finished shard into `split_dir`, checking
    its sha256. The split's manifest, sizes and index are then copied there too, so the
    shared folder holds the whole split for readers of object storage.
    """
    if samples_per_shard <= 0:
        raise ValueError(f"samples_per_shard must be > 0, got {samples_per_shard}")
    split_dir = Path(split_dir).resolve()
    split = split_dir.name
    progress = or_null(progress)
    params = {
        "image_size": image_size,
        "jpeg_quality": jpeg_quality,
        "resize_mode": resize_mode,
        "text_type": text_type,
        "seed": seed,
        "samples_per_shard": samples_per_shard,
        "max_shard_bytes": max_shard_bytes,
        "assign_location": assign_location,
    }
    text_for({"kingdom": "Animalia"}, text_type, "", seed)  # an unknown text_type fails here
    job = SplitJob(
        str(split_dir), str(Path(data_root).resolve()), params, workers, shared, shared_split
    )
    local_job = SplitJob(str(split_dir), job.data_root, params, workers)

    split_dir.mkdir(parents=True, exist_ok=True)
    for tmp in sorted(split_dir.glob(f".*{TMP_SUFFIX}")):  # left by a killed run
        log.warning("removing interrupted temporary %s", tmp)
        tmp.unlink()
    job.work.mkdir(exist_ok=True)
    remove_stale_temporaries(job.work)
    old = _load_manifest(split_dir / MANIFEST_FILE)
    _write_rows(table, keys, job.work / ROWS_FILE, samples_per_shard)
    if shared is not None:
        job.files.put(job.work / ROWS_FILE, f"{WORK_DIR}/{ROWS_FILE}")
    n = len(keys)
    spans = [(s, min(s + samples_per_shard, n)) for s in range(0, n, samples_per_shard)]

    if max_shard_bytes:
        progress.start(f"encode {split}", n)
        chunks = [EncodeChunk(job, i, s, e) for i, (s, e) in enumerate(spans)]
        for done in map_parts(encode_chunk, chunks):
            progress.advance(done)
        progress.finish()
        plan = plan_shards(_chunk_sizes(job, len(spans)), params)
    else:
        plan = [(s, e, None) for s, e in spans]
    tasks = [
        ShardTask(
            job,
            i,
            s,
            e,
            old.get(SHARD_PATTERN.format(i)),
            planned_bytes=b,
            from_chunks=bool(max_shard_bytes),
        )
        for i, (s, e, b) in enumerate(plan)
    ]

    progress.start(f"shards {split}", n)
    entries: dict[str, dict] = {}
    if shared is not None:  # shards an earlier run left here: the tasks cannot see them
        for task in tasks:
            earlier = split_dir / SHARD_PATTERN.format(task.index)
            if task.old_entry is None or not earlier.exists():
                continue
            name, _, located, fp = _task_rows(dataclasses.replace(task, job=local_job))
            if reused := _reuse_old_shard(task, name, located, fp):
                entries[name] = reused
                progress.advance(reused["samples"])
        tasks = [t for t in tasks if SHARD_PATTERN.format(t.index) not in entries]
    for result in map_parts(write_planned_shard, tasks):
        name = result["name"]
        if shared is not None:
            _pull_shard(job, name, result)
        entries[name] = result
        progress.advance(result["samples"])
    progress.finish()
    names = [SHARD_PATTERN.format(i) for i in range(len(plan))]  # shard order
    infos = [
        ShardInfo(name, entries[name]["samples"], entries[name]["bytes"], entries[name]["sha256"])
        for name in names
    ]
    for entry in entries.values():
        entry.pop("name")
    # Every task has finished: a temporary left here is an orphan of a worker that died
    # mid-shard (its task ran again elsewhere).
    for tmp in sorted(split_dir.glob(f".*{TMP_SUFFIX}")):
        log.warning("removing a lost worker's temporary %s", tmp)
        tmp.unlink()

    index_path = split_dir / INDEX_FILE
    with (
        atomic_path(index_path) as index_tmp,
        pq.ParquetWriter(index_tmp, INDEX_SCHEMA, compression="zstd") as index_writer,
    ):
        for info in infos:
            rows = pq.read_table(split_dir / _record_files(info.name)[1], schema=INDEX_SCHEMA)
            index_writer.write_table(rows)
    for stale in sorted(split_dir.glob("shard-*.tar")):
        if _SHARD_FILE.match(stale.name) and stale.name not in entries:
            log.warning("removing shard %s: no longer part of this split", stale)
            stale.unlink()
    sizes = {info.name: info.samples for info in infos}
    write_text_atomic(split_dir / SIZES_FILE, json.dumps(sizes, indent=1, sort_keys=True) + "\n")
    _write_manifest(split_dir, entries, params)
    if shared is not None:
        _publish_split(job, set(entries))
    shutil.rmtree(job.work, ignore_errors=True)
    return SplitShards(infos, index_path)


def _pull_shard(job: SplitJob, name: str, entry: dict) -> None:
    """Copy a shard a task wrote to shared storage into the split folder, with its index rows;
    a copy whose sha256 differs from the task's entry is an error, never a release file."""
    files, split_dir = job.files, Path(job.split_dir)
    index_rel = _record_files(name)[1]
    files.get(index_rel, split_dir / index_rel)
    if _file_matches(split_dir / name, entry):
        return
    files.get(name, split_dir / name)
    if not _file_matches(split_dir / name, entry):
        (split_dir / name).unlink(missing_ok=True)
        raise OutputError(
            f"{files.url(name)}: the copy pulled to {split_dir / name} does not match the "
            "sha256 its task recorded"
        )


def _publish_split(job: SplitJob, names: set[str]) -> None:
    """Leave the split whole on shared storage: shards reused from an earlier run, then the
    index, sizes and manifest; drop shards no longer in the split and the work files."""
    files, split_dir = job.files, Path(job.split_dir)
    for name in sorted(names):
        if files.size(name) != (split_dir / name).stat().st_size:
            files.put(split_dir / name, name)
    for name in files.list(""):
        if _SHARD_FILE.match(name) and name not in names:
            files.remove(name)
    for name in (INDEX_FILE, SIZES_FILE, MANIFEST_FILE):
        files.put(split_dir / name, name)
    files.remove_tree(WORK_DIR)
