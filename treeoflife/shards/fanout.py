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

import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from treeoflife.errors import InputError
from treeoflife.fanout import PartMapper, local_processes
from treeoflife.io import (
    TMP_SUFFIX,
    atomic_path,
    remove_stale_temporaries,
    write_parquet_atomic,
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

log = logging.getLogger(__name__)

WORK_DIR = ".work"
ROWS_FILE = "rows.parquet"


@dataclass(frozen=True)
class SplitJob:
    """What every task of one split shares (absolute paths: workers may run elsewhere)."""

    split_dir: str
    data_root: str
    params: dict  # the writer's settings (as in the manifest)
    workers: int = 1  # encode processes a task may use where it runs

    @property
    def work(self) -> Path:
        return Path(self.split_dir) / WORK_DIR

    @property
    def split(self) -> str:
        return Path(self.split_dir).name


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
    pf = pq.ParquetFile(job.work / ROWS_FILE)
    table = pf.read_row_groups(list(range(first, last + 1)))
    return table.slice(start - first * group, stop - start).to_pylist()


# --------------------------------------------------------------------------- encode pass


def _chunk_paths(job: SplitJob, chunk: int) -> tuple[Path, Path, Path]:
    stem = job.work / f"chunk-{chunk:06d}"
    return (
        stem.with_suffix(".jpg"),
        stem.with_suffix(".sizes.npy"),
        stem.with_suffix(".json"),
    )


def _at_reference(job: SplitJob, rows: list[dict]) -> list[dict]:
    """Rows as their json member would be at shard 0, position 0 (the planner adds digits)."""
    if not job.params["assign_location"]:
        return rows
    name = f"{job.split}/{SHARD_PATTERN.format(0)}"
    return [{**r, "shard": name, "shard_position": 0} for r in rows]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def encode_chunk(item: EncodeChunk) -> int:
    """Encode rows [start, stop) into `.work/chunk-N.jpg` + per-row member sizes (jpg, padded
    text members, json at shard 0 position 0); the `.json` record, written last, marks it done
    and names its inputs. A finished chunk with the same inputs is kept. Returns rows."""
    job = item.job
    data_path, sizes_path, record_path = _chunk_paths(job, item.chunk)
    rows = _at_reference(job, _read_rows(job, item.start, item.stop))
    fp = _fingerprint(f"chunk-{item.chunk:06d}", rows, job.params)
    record = _read_json(record_path)
    if (
        record is not None
        and record.get("fingerprint") == fp
        and data_path.exists()
        and data_path.stat().st_size == record.get("bytes")
        and sizes_path.exists()
    ):
        return len(rows)
    record_path.unlink(missing_ok=True)  # the old record must not vouch for new bytes
    p = job.params
    sizes = np.zeros((len(rows), 3), dtype=np.int64)
    total = 0
    images = encoded_images(
        rows,
        Path(job.data_root),
        p["image_size"],
        p["jpeg_quality"],
        p["resize_mode"],
        local_processes(job.workers),
    )
    with atomic_path(data_path) as tmp, open(tmp, "wb") as fh:
        for i, (row, jpg) in enumerate(images):
            _, _, texts, (_, json_member) = _parts_of(row, _check_row(row), b"", p)
            fh.write(jpg)
            total += len(jpg)
            sizes[i] = (len(jpg), sum(padded(len(d)) for _, d in texts), len(json_member))
    with atomic_path(sizes_path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, sizes)
    write_text_atomic(
        record_path, json.dumps({"fingerprint": fp, "rows": len(rows), "bytes": total})
    )
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


def _chunk_sizes(job: SplitJob, n_chunks: int) -> Iterator[np.ndarray]:
    for chunk in range(n_chunks):
        yield np.load(_chunk_paths(job, chunk)[1])


def _chunk_images(job: SplitJob, start: int, stop: int) -> Iterator[bytes]:
    """The encoded images of rows [start, stop), read from the chunk stores in order."""
    group = job.params["samples_per_shard"]
    for chunk in range(start // group, (stop - 1) // group + 1):
        data_path, sizes_path, _ = _chunk_paths(job, chunk)
        lengths = np.load(sizes_path)[:, 0].tolist()
        lo = max(start, chunk * group) - chunk * group
        hi = min(stop, (chunk + 1) * group) - chunk * group
        with open(data_path, "rb") as fh:
            fh.seek(sum(lengths[:lo]))
            for length in lengths[lo:hi]:
                data = fh.read(length)
                if len(data) != length:
                    raise InputError(f"{data_path}: chunk store is shorter than its sizes")
                yield data


# --------------------------------------------------------------------------- shard tasks


def _shard_paths(job: SplitJob, name: str) -> tuple[Path, Path, Path]:
    return (
        Path(job.split_dir) / name,
        job.work / f"{name}.json",
        job.work / f"{name}.index.parquet",
    )


def write_planned_shard(item: ShardTask) -> dict:
    """Write shard `item.index` from rows [start, stop); leave its manifest entry and index
    rows in `.work/`. A shard finished by an earlier attempt, or listed with the same inputs in
    an earlier run's manifest, is kept. Returns the manifest entry (plus `name`)."""
    job = item.job
    p = job.params
    name = SHARD_PATTERN.format(item.index)
    shard_path, record_path, index_path = _shard_paths(job, name)
    rows = _read_rows(job, item.start, item.stop)
    located = _locate(rows, job.split, item.index) if p["assign_location"] else rows
    fp = _fingerprint(name, located, p)

    record = _read_json(record_path)
    if (
        record is not None
        and record.get("fingerprint") == fp
        and index_path.exists()
        and _file_matches(shard_path, record)
    ):
        return {**record, "name": name}
    old = item.old_entry
    if (
        old is not None
        and old.get("fingerprint") == fp
        and old.get("samples") == len(rows)
        and _file_matches(shard_path, old)
    ):
        log.info("shard %s already written, skipping", shard_path)
        entry = {k: old[k] for k in ("samples", "bytes", "sha256", "fingerprint")}
        write_parquet_atomic(_index_table(scan_shard(shard_path)), index_path)
        write_text_atomic(record_path, json.dumps(entry, sort_keys=True))
        return {**entry, "name": name}

    record_path.unlink(missing_ok=True)  # the old record must not vouch for new bytes
    if item.from_chunks:
        jpgs = _chunk_images(job, item.start, item.stop)
    else:
        images = encoded_images(
            rows,
            Path(job.data_root),
            p["image_size"],
            p["jpeg_quality"],
            p["resize_mode"],
            local_processes(job.workers),
        )
        jpgs = (jpg for _, jpg in images)
    info, index_rows = _write_shard_file(shard_path, job.split, located, jpgs, p)
    if item.planned_bytes is not None and info.bytes != item.planned_bytes:
        shard_path.unlink(missing_ok=True)
        raise RuntimeError(
            f"{shard_path}: {info.bytes} bytes written, the boundary plan expected "
            f"{item.planned_bytes} (the plan and the writer disagree: a bug)"
        )
    entry = {"samples": info.samples, "bytes": info.bytes, "sha256": info.sha256, "fingerprint": fp}
    write_parquet_atomic(_index_table(index_rows), index_path)
    write_text_atomic(record_path, json.dumps(entry, sort_keys=True))
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
) -> SplitShards:
    """write_split_shards for the rows of `table` listed in `keys` (in that order), with the
    encoding and shard writing run by `map_parts`. Same files, same bytes."""
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
    job = SplitJob(str(split_dir), str(Path(data_root).resolve()), params, workers)

    split_dir.mkdir(parents=True, exist_ok=True)
    for tmp in sorted(split_dir.glob(f".*{TMP_SUFFIX}")):  # left by a killed run
        log.warning("removing interrupted temporary %s", tmp)
        tmp.unlink()
    job.work.mkdir(exist_ok=True)
    remove_stale_temporaries(job.work)
    old = _load_manifest(split_dir / MANIFEST_FILE)
    _write_rows(table, keys, job.work / ROWS_FILE, samples_per_shard)
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
    infos: list[ShardInfo] = []
    for result in map_parts(write_planned_shard, tasks):
        name = result.pop("name")
        entries[name] = result
        infos.append(ShardInfo(name, result["samples"], result["bytes"], result["sha256"]))
        progress.advance(result["samples"])
    progress.finish()
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
            rows = pq.read_table(_shard_paths(job, info.name)[2], schema=INDEX_SCHEMA)
            index_writer.write_table(rows)
    for stale in sorted(split_dir.glob("shard-*.tar")):
        if _SHARD_FILE.match(stale.name) and stale.name not in entries:
            log.warning("removing shard %s: no longer part of this split", stale)
            stale.unlink()
    sizes = {info.name: info.samples for info in infos}
    write_text_atomic(split_dir / SIZES_FILE, json.dumps(sizes, indent=1, sort_keys=True) + "\n")
    _write_manifest(split_dir, entries, params)
    shutil.rmtree(job.work, ignore_errors=True)
    return SplitShards(infos, index_path)
