"""Write webdataset shards that BioCLIP's tooling and stock open_clip both read.

One sample = `<id>.jpg`, BioCLIP's ten text members, a plain `<id>.txt` (the only caption stock
open_clip reads: it drops samples without one) and `<id>.json` (the catalog row). Members are
written in a fixed order with fixed tar metadata, so the same rows and config give the same bytes.

Samples stream in shard order; a new shard starts when the current one reaches
`samples_per_shard` samples or would pass `max_shard_bytes`, so shard boundaries are decided while
writing (from the encoded sizes) and are still a pure function of the rows and the config. Each
split folder gets, beside `shard-%06d.tar`:

- `sizes.json`: samples per shard (open_clip reads it instead of `--train-num-samples`);
- `manifest.json`: per shard sample count, bytes, sha256 and input fingerprint (the resume and
  verify record);
- `index.parquet`: one row per sample (treeoflife_id, key, shard, position, byte offset and size
  of the sample and of its jpg), one row group per shard, so a reader seeks straight to a sample.

A rerun keeps the longest prefix of shards whose files, manifest entries and inputs all agree
(a killed run resumes after its last finished shard) and writes the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from treeoflife.errors import InputError
from treeoflife.io import (
    TMP_SUFFIX,
    atomic_path,
    write_text_atomic,
    writing,
)
from treeoflife.progress import Progress, or_null
from treeoflife.schemas import SHARD_INDEX
from treeoflife.shards.encode import encoded_images
from treeoflife.shards.resize import SHORTER_SIDE
from treeoflife.shards.sample_json import sample_json
from treeoflife.shards.tar import BLOCK, RECORD, TarStream, padded
from treeoflife.shards.text import CAPTION_MEMBERS, caption_members, text_for

log = logging.getLogger(__name__)

SHARD_PATTERN = "shard-{:06d}.tar"
SIZES_FILE = "sizes.json"
MANIFEST_FILE = "manifest.json"
INDEX_FILE = "index.parquet"
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_SHARD_FILE = re.compile(r"^shard-\d{6}\.tar$")
SAMPLE_MEMBERS = ("jpg", *CAPTION_MEMBERS, "txt", "json")
"""Member suffixes of a sample, in the order they are written."""

INDEX_SCHEMA = SHARD_INDEX


@dataclass(frozen=True)
class ShardInfo:
    name: str  # file name, e.g. shard-000000.tar
    samples: int
    bytes: int
    sha256: str


def assign_shards(
    keys_in_order: Sequence[str], split: str, samples_per_shard: int
) -> list[tuple[str, int]]:
    """(shard name like "train/shard-000000.tar", position) for each key by count alone."""
    if samples_per_shard <= 0:
        raise ValueError(f"samples_per_shard must be > 0, got {samples_per_shard}")
    return [
        (f"{split}/{SHARD_PATTERN.format(i // samples_per_shard)}", i % samples_per_shard)
        for i in range(len(keys_in_order))
    ]


def _dump_json(value) -> bytes:
    """Compact JSON with sorted keys, UTF-8 (orjson: ~7x faster than json, same bytes for the
    strings, ints, bools and nulls of a catalog row; anything orjson refuses goes to json)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


SampleParts = tuple[str, tuple[str, bytes], tuple[tuple[str, bytes], ...], tuple[str, bytes]]
"""(key, ("jpg", image), ((caption suffix, text), ..., ("txt", text)), ("json", row))."""


def _sample_parts(sample: Mapping) -> SampleParts:
    """A ready sample's members in shard order, as parts for TarStream.add_sample."""
    key = sample.get("__key__")
    if not isinstance(key, str) or not _SAFE_KEY.match(key):
        raise ValueError(f"__key__ must be a webdataset-safe name without dots or slashes: {key!r}")
    missing = [m for m in SAMPLE_MEMBERS if m not in sample]
    if missing:
        raise ValueError(f"sample {key} lacks members {missing}")
    texts = tuple((m, str(sample[m]).encode("utf-8")) for m in CAPTION_MEMBERS)
    texts += (("txt", str(sample["txt"]).encode("utf-8")),)
    return key, ("jpg", bytes(sample["jpg"])), texts, ("json", _dump_json(sample["json"]))


def packed_size(parts: SampleParts) -> int:
    """Bytes a sample takes in a tar (headers, data, padding)."""
    _, first, texts, last = parts
    return padded(len(first[1])) + sum(padded(len(d)) for _, d in texts) + padded(len(last[1]))


def write_shard(path: Path, samples: Iterable[dict]) -> ShardInfo:
    """Write one shard from ready samples ({__key__, jpg, captions, txt, json}) atomically."""
    return write_shards([(path, samples)])[0]


def write_shards(shards: Iterable[tuple[Path, Iterable[dict]]]) -> list[ShardInfo]:
    """Write shards from ready samples, one after another, each atomically.

    Each shard is written under a temporary name; the hashing of its last buffers, its fsync
    and its rename run on a background thread while the next shard is written, so the disk and
    the CPU work at the same time. Every returned shard is under its final name; on an error
    none is left partial.
    """
    infos: list[ShardInfo] = []
    with _Closer() as closer:
        for path, samples in shards:
            shard = _ShardFile(Path(path))
            try:
                for sample in samples:
                    parts = _sample_parts(sample)
                    shard.stream.add_sample(*parts)
                    shard.count += 1
            except BaseException:
                shard.abort()
                raise
            infos += closer.close(shard, lambda info: info)
        infos += closer.wait()
    return infos


class _Closer:
    """Closes finished shards (last hashing, fsync, rename) on one background thread, one at
    a time and in order, while the caller writes the next shard. `close` and `ready` return
    the results of closes that finished; `wait` returns the rest. On an error (the caller's or
    a close's), every started close still runs to its end: a shard is then either under its
    final name, complete, or gone."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-close")
        self._pending: Future | None = None

    def ready(self) -> list:
        if self._pending is None or not self._pending.done():
            return []
        return self.wait()

    def wait(self) -> list:
        pending, self._pending = self._pending, None
        return [] if pending is None else [pending.result()]

    def settle(self) -> list:
        """After an error elsewhere: the close under way, waited for; [] if it failed too."""
        try:
            return self.wait()
        except Exception:  # noqa: BLE001 - the caller is already failing with its own error
            return []

    def close(self, shard: _ShardFile, then) -> list:
        """Start closing `shard` (then `then(info)` on the closing thread); at most one close is
        in flight, so this first waits for the previous one and returns its result."""
        done = self.wait()
        shard.end()  # every byte is in the file; the hashing may go on
        self._pending = self._pool.submit(lambda: then(shard.close()))
        return done

    def __enter__(self) -> _Closer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self._pending is not None:
            with contextlib.suppress(BaseException):
                self._pending.result()
        self._pool.shutdown(wait=True)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fingerprint_start(name: str, params: dict):
    return hashlib.sha256(_dump_json({"shard": name, **params}))


def _fingerprint_add(h, json_member: bytes, row: Mapping) -> None:
    h.update(json_member)
    h.update(_dump_json([row.get(c) for c in ("image_file", "image_offset", "image_size")]))


def _fingerprint(name: str, rows: list[dict], params: dict) -> str:
    """What a shard's bytes depend on: its name, rows (md5 included) and the shard settings."""
    h = _fingerprint_start(name, params)
    for row in rows:
        _fingerprint_add(h, _dump_json(sample_json(row)), row)
    return h.hexdigest()


def _load_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        return dict(manifest.get("shards", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def _write_manifest(split_dir: Path, entries: dict[str, dict], params: dict) -> None:
    manifest = {
        "params": params,
        "samples": sum(e["samples"] for e in entries.values()),
        "shards": dict(sorted(entries.items())),
    }
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    write_text_atomic(split_dir / MANIFEST_FILE, text)


def _file_matches(path: Path, entry: dict) -> bool:
    if not path.exists() or path.stat().st_size != entry.get("bytes"):
        return False
    return file_sha256(path) == entry.get("sha256")


def scan_shard(path: Path) -> list[dict]:
    """Index rows of a shard on disk, from its tar headers (data read only for the json key)."""
    return read_shard_layout(path)[0]


def read_shard_layout(path: Path) -> tuple[list[dict], list[dict]]:
    """(index rows, parsed json members) of a shard, one per sample, in shard order.

    Raises InputError when the tar does not parse or a sample's members are not the expected
    ones in the expected order.
    """
    rows: list[dict] = []
    metas: list[dict] = []
    expected = [f".{m}" for m in SAMPLE_MEMBERS]
    seen: list[str] = []

    def check_complete() -> None:
        if rows and seen != expected:
            tid = rows[-1]["treeoflife_id"]
            raise InputError(f"{path.name}: sample {tid} has members {seen}, expected {expected}")

    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                key, dot, suffix = info.name.partition(".")
                if not rows or key != rows[-1]["treeoflife_id"]:
                    check_complete()
                    rows.append(
                        {
                            "treeoflife_id": key,
                            "key": None,
                            "shard": path.name,
                            "position": len(rows),
                            "offset": info.offset,
                            "size": 0,
                            "jpg_offset": info.offset_data,
                            "jpg_size": info.size,
                        }
                    )
                    metas.append({})
                    seen = []
                seen.append(dot + suffix)
                current = rows[-1]
                end = info.offset_data + padded(info.size) - BLOCK
                current["size"] = end - current["offset"]
                if suffix == "json":
                    tar.fileobj.seek(info.offset_data)
                    metas[-1] = json.loads(tar.fileobj.read(info.size))
                    current["key"] = metas[-1]["key"]
        check_complete()
    except (tarfile.TarError, OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: cannot read shard: {exc}") from exc
    return rows, metas


@dataclass
class SplitShards:
    """What write_split_shards wrote: the shards and where the index is."""

    shards: list[ShardInfo]
    index: Path

    @property
    def samples(self) -> int:
        return sum(s.samples for s in self.shards)


class _ShardFile:
    """One shard being written under a temporary name, with its index rows."""

    def __init__(self, path: Path):
        self.path = path
        self.count = 0  # samples written (write_shards keeps no index rows)
        self._ctx = atomic_path(path)
        self._fh = open(self._ctx.__enter__(), "wb")  # noqa: SIM115 - closed in close()/abort()
        self.stream = TarStream(self._fh, path=path)
        self.index: list[dict] = []
        self._ended = False  # end-of-archive written; the hashing may still go on
        self._finished = False  # renamed into place, or aborted

    def add_sample(self, tid: str, key: str, parts: SampleParts, size: int) -> None:
        """Append one sample and its index row; `size` is its packed bytes."""
        offsets = self.stream.add_sample(*parts)
        self.count += 1
        self.index.append(
            {
                "treeoflife_id": tid,
                "key": key,
                "shard": self.path.name,
                "position": len(self.index),
                "offset": offsets[0] - BLOCK,
                "size": size,
                "jpg_offset": offsets[0],
                "jpg_size": len(parts[1][1]),
            }
        )

    def final_size(self, extra: int) -> int:
        end = self.stream.size + extra + 2 * BLOCK
        return end + (-end % RECORD)

    def end(self) -> None:
        """Write the end of the archive; the hashing of the last buffers goes on meanwhile."""
        self.stream.close(wait=False)
        self._ended = True

    def close(self) -> ShardInfo:
        """Finish the tar, wait for its hash, fsync it and rename it into place. After `end()`
        this may run on another thread (the caller writes the next shard meanwhile)."""
        try:
            if not self._ended:
                self.end()
            self.stream.drain()
            with writing(self.path):
                self._fh.close()
        except BaseException:
            self.abort()
            raise
        self._finished = True
        self._ctx.__exit__(None, None, None)  # fsync, rename; on an error removes the file
        return ShardInfo(
            self.path.name, self.count, self.stream.size, self.stream.sha256.hexdigest()
        )

    def abort(self) -> None:
        """Drop the temporary file (idempotent; a failed close has already called it)."""
        if self._finished:
            return
        self._finished = True
        with contextlib.suppress(BaseException):
            self.stream.drain()
        with contextlib.suppress(OSError):
            self._fh.close()
        self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)


def _check_row(row: dict) -> str:
    tid = row.get("treeoflife_id")
    if not tid or not _SAFE_KEY.match(str(tid)):
        raise InputError(f"row {row.get('key')!r}: bad treeoflife_id {tid!r}")
    return str(tid)


def write_split_shards(
    rows: Iterable[dict],
    split_dir: Path,
    data_root: Path,
    image_size: int,
    jpeg_quality: int,
    text_type: str,
    seed: int,
    samples_per_shard: int = 10_000,
    max_shard_bytes: int = 0,
    resize_mode: str = SHORTER_SIDE,
    workers: int = 1,
    assign_location: bool = True,
    total: int | None = None,
    progress: Progress | None = None,
) -> SplitShards:
    """Write one split's shards from catalog rows in shard order; then sizes, manifest, index.

    Rows carry the CATALOG columns and the image-store location. With `assign_location` the
    writer sets each row's `shard` ("<split>/shard-NNNNNN.tar") and `shard_position` before its
    `json` member is made; otherwise (train_small, whose samples keep their train location) the
    rows' own values are written. `max_shard_bytes` 0 means no byte limit; a sample larger than
    the limit gets a shard of its own. Memory holds one shard's index and a bounded window of
    images, whatever the number of rows.
    """
    if samples_per_shard <= 0:
        raise ValueError(f"samples_per_shard must be > 0, got {samples_per_shard}")
    split_dir, data_root = Path(split_dir), Path(data_root)
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

    split_dir.mkdir(parents=True, exist_ok=True)
    for tmp in sorted(split_dir.glob(f".*{TMP_SUFFIX}")):  # left by a killed run
        log.warning("removing interrupted temporary %s", tmp)
        tmp.unlink()
    old = _load_manifest(split_dir / MANIFEST_FILE)
    entries: dict[str, dict] = {}
    infos: list[ShardInfo] = []
    progress.start(f"shards {split}", total)

    index_path = split_dir / INDEX_FILE
    with atomic_path(index_path) as index_tmp:
        index_writer = pq.ParquetWriter(index_tmp, INDEX_SCHEMA, compression="zstd")
        try:
            # 1. Keep the longest prefix of finished shards that still match their inputs.
            rows_it = iter(rows)
            pending: list[dict] = []
            while (entry := old.get(SHARD_PATTERN.format(len(infos)))) is not None:
                name = SHARD_PATTERN.format(len(infos))
                pending = list(islice(rows_it, int(entry.get("samples", 0))))
                located = _locate(pending, split, len(infos)) if assign_location else pending
                if (
                    len(pending) != entry.get("samples")
                    or _fingerprint(name, located, params) != entry.get("fingerprint")
                    or not _file_matches(split_dir / name, entry)
                ):
                    break
                log.info("shard %s already written, skipping", split_dir / name)
                index_writer.write_table(_index_table(scan_shard(split_dir / name)))
                entries[name] = entry
                infos.append(ShardInfo(name, entry["samples"], entry["bytes"], entry["sha256"]))
                progress.advance(len(pending))
                pending = []
            # 2. Write the rest.
            remaining = chain(pending, rows_it)
            for info, entry, index_rows in _write_shards(
                remaining, split_dir, data_root, params, len(infos), workers, progress
            ):
                index_writer.write_table(_index_table(index_rows))
                entries[info.name] = entry
                infos.append(info)
                _write_manifest(split_dir, entries, params)
        finally:
            index_writer.close()

    for stale in sorted(split_dir.glob("shard-*.tar")):
        if _SHARD_FILE.match(stale.name) and stale.name not in entries:
            log.warning("removing shard %s: no longer part of this split", stale)
            stale.unlink()
    progress.finish()
    sizes = {info.name: info.samples for info in infos}
    write_text_atomic(split_dir / SIZES_FILE, json.dumps(sizes, indent=1, sort_keys=True) + "\n")
    _write_manifest(split_dir, entries, params)
    return SplitShards(infos, index_path)


def _locate(rows: list[dict], split: str, shard_index: int) -> list[dict]:
    name = f"{split}/{SHARD_PATTERN.format(shard_index)}"
    return [{**r, "shard": name, "shard_position": i} for i, r in enumerate(rows)]


def _index_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=INDEX_SCHEMA)


def _write_shards(
    rows: Iterable[dict],
    split_dir: Path,
    data_root: Path,
    params: dict,
    first_index: int,
    workers: int,
    progress: Progress,
) -> Iterator[tuple[ShardInfo, dict, list[dict]]]:
    """Stream rows into shards first_index, first_index+1, ...; yield each finished shard."""
    split = split_dir.name
    limit, max_bytes = params["samples_per_shard"], params["max_shard_bytes"]
    current: _ShardFile | None = None
    fingerprint = None  # of the current shard, built as samples are added
    images = encoded_images(
        rows,
        data_root,
        params["image_size"],
        params["jpeg_quality"],
        params["resize_mode"],
        workers,
    )

    def entry_of(fp: str, index_rows: list[dict]):
        def then(info: ShardInfo) -> tuple[ShardInfo, dict, list[dict]]:
            entry = {"samples": info.samples, "bytes": info.bytes, "sha256": info.sha256}
            return info, {**entry, "fingerprint": fp}, index_rows

        return then

    def finish(closer: _Closer) -> list[tuple[ShardInfo, dict, list[dict]]]:
        """Start closing the current shard in the background (its last hashing, fsync and
        rename overlap the next shard's writing); the previous shard's result if it is done."""
        return closer.close(current, entry_of(fingerprint.hexdigest(), current.index))

    index = first_index
    with _Closer() as closer:
        try:
            for row, jpg in images:
                tid = _check_row(row)
                for attempt in (0, 1):
                    if current is None:
                        current = _ShardFile(split_dir / SHARD_PATTERN.format(index))
                        fingerprint = _fingerprint_start(current.path.name, params)
                    if params["assign_location"]:
                        row = {
                            **row,
                            "shard": f"{split}/{current.path.name}",
                            "shard_position": len(current.index),
                        }
                    parts = _parts_of(row, tid, jpg, params)
                    sample_bytes = packed_size(parts)
                    full = len(current.index) >= limit or (
                        max_bytes and current.final_size(sample_bytes) > max_bytes
                    )
                    if not full or not current.index or attempt:
                        break
                    done = finish(closer)  # `current` is the closer's from here on
                    current, index = None, index + 1
                    yield from done
                current.add_sample(tid, str(row["key"]), parts, sample_bytes)
                _fingerprint_add(fingerprint, parts[3][1], row)
                progress.advance(1)
                yield from closer.ready()
            if current is not None:
                done = finish(closer)
                current = None
                yield from done
            yield from closer.wait()
        except GeneratorExit:
            raise
        except BaseException:
            # An error or an interrupt here (bad input, a failed read, Ctrl-C): the shard whose
            # close was under way is final now, so hand it over before failing, and the
            # caller's manifest lists it (a rerun keeps it instead of writing it again).
            if current is not None:
                current.abort()
                current = None
            yield from closer.settle()
            raise
        finally:
            if current is not None:
                current.abort()


def _parts_of(row: dict, tid: str, jpg: bytes, params: dict) -> SampleParts:
    """A catalog row's sample (image, BioCLIP captions, txt, json row) as parts."""
    try:
        captions = caption_members(row)
        txt = text_for(row, params["text_type"], str(row["key"]), params["seed"])
    except ValueError as exc:
        raise InputError(f"row {row.get('key')!r}: {exc}") from exc
    return _sample_parts(
        {"__key__": tid, "jpg": jpg, **captions, "txt": txt, "json": sample_json(row)}
    )


def rows_in_order(table: pa.Table, keys: Sequence[str], batch: int = 4096) -> Iterator[dict]:
    """Rows of `table` (which has a `key` column) in the order of `keys`, a batch at a time."""
    positions = pc.index_in(pa.array(keys, pa.string()), value_set=table.column("key"))
    if positions.null_count:
        raise InputError(f"{positions.null_count} keys to shard are not in the catalog")
    for start in range(0, len(keys), batch):
        yield from table.take(positions[start : start + batch]).to_pylist()
