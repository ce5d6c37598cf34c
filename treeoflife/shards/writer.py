"""The shard driver: a split's rows into webdataset shards that BioCLIP's tooling and stock
open_clip both read, then sizes.json, manifest.json and index.parquet (treeoflife.shards.manifest).

Samples go in shard order; a shard ends at `samples_per_shard` samples or before a sample that
would take it past `max_shard_bytes`, so boundaries are a pure function of the rows and the
settings. One driver, two ways to run it, the same bytes:

- in this process (`map_parts=None`: the CLI): rows stream through a pool of encode processes
  into one shard after another, boundaries decided while writing, each shard's close (last
  hashing, fsync, rename) overlapping the next shard's writing;
- per-shard tasks that a mapper runs (treeoflife.fanout: Prefect threads, Dask, with shared
  storage or not): treeoflife.shards.tasks plans the boundaries first.

Either way a rerun keeps every shard that passes the manifest's resume rule (kept_shard) and
writes the rest; shards beyond the new plan are removed; temporaries are swept only when their
writer is dead. manifest.json is rewritten after every shard, so a killed run resumes where it
stood.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import pyarrow as pa

from treeoflife.fanout import PartMapper
from treeoflife.io import remove_stale_temporaries
from treeoflife.progress import Progress, or_null
from treeoflife.shards.encode import encoded_images
from treeoflife.shards.manifest import (
    INDEX_FILE,
    Fingerprint,
    ShardEntry,
    ShardResult,
    SplitManifest,
    index_table,
    index_writer,
    kept_shard,
    remove_stale_shards,
    write_sizes,
)
from treeoflife.shards.parts import located, packed_size, row_parts, shard_name
from treeoflife.shards.settings import ShardSettings
from treeoflife.shards.shard_file import ShardCloser, ShardFile, ShardInfo, closed_size
from treeoflife.shards.tasks import MappedSplit, OrderedRows, rows_table
from treeoflife.storage import FsspecStorage


@dataclass
class SplitShards:
    """What write_split_shards wrote: the shards and where the index is."""

    shards: list[ShardInfo]
    index: Path

    @property
    def samples(self) -> int:
        return sum(s.samples for s in self.shards)


def write_split_shards(
    rows: pa.Table | OrderedRows | Iterable[Mapping],
    split_dir: Path,
    settings: ShardSettings,
    *,
    data_root: Path,
    keys: Sequence[str] | None = None,
    assign_location: bool = True,
    map_parts: PartMapper | None = None,
    shared: FsspecStorage | None = None,
    total: int | None = None,
    progress: Progress | None = None,
) -> SplitShards:
    """Write one split's shards, then its sizes, manifest and index.

    `rows`: catalog rows (CATALOG columns + image-store location) in shard order (dicts, or
    OrderedRows streaming Arrow batches), or a table whose rows go in the order of `keys`
    (table order without). With `assign_location` each
    row's `shard` ("<split>/shard-NNNNNN.tar") and `shard_position` are set before its `json`
    member is made; otherwise (train_small, whose samples keep their train location) the rows'
    own values are written. A sample larger than `max_shard_bytes` gets a shard of its own.

    `map_parts` (treeoflife.fanout) runs per-shard tasks; with `shared` (object storage) they
    work there, in the split folder's place relative to `data_root`, and the shards come back
    into `split_dir` checked by sha256. In this process, memory holds one shard's rows and index
    and a bounded window of images, whatever the number of rows.
    """
    settings.validate()
    split_dir = Path(split_dir)
    split_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(split_dir)  # a killed run's, or a lost worker's (dead writers only)
    params = {**settings.output_settings(), "assign_location": assign_location}
    progress = or_null(progress)
    old = SplitManifest.load(split_dir)
    mapped: MappedSplit | None = None
    if isinstance(rows, pa.Table):
        rows = OrderedRows.from_table(rows, keys)
    if map_parts is None:
        if isinstance(rows, OrderedRows):
            total, rows = rows.count, rows.dicts()
        elif total is None and isinstance(rows, Sized):
            total = len(rows)
        progress.start(f"shards {split_dir.name}", total)
        cursor = _RowCursor(rows)
        results = _stream_shards(cursor, split_dir, data_root, settings, params, old, progress)
    else:
        if not isinstance(rows, OrderedRows):
            rows = OrderedRows.from_table(rows_table(rows))
        mapped = MappedSplit(rows, split_dir, data_root, settings, params, shared)
        results = mapped.shards(old, map_parts, progress)

    new = SplitManifest(params)
    infos: list[ShardInfo] = []
    with index_writer(split_dir) as add_index:
        for result in results:
            add_index(result.index)
            new.shards[result.name] = result.entry
            infos.append(result.info)
            # Shards not reached yet keep their old entries: a rerun after a kill keeps them.
            SplitManifest(params, {**old.beyond(len(infos) - 1), **new.shards}).write(split_dir)
    progress.finish()
    remove_stale_temporaries(split_dir)
    remove_stale_shards(split_dir, set(new.shards))
    write_sizes(split_dir, infos)
    new.write(split_dir)
    if mapped is not None:
        mapped.finish(set(new.shards))
    return SplitShards(infos, split_dir / INDEX_FILE)


class _RowCursor:
    """The split's rows from the writer's position on. The writer peeks at them (to check a
    shard it may keep) and consumes them (as samples are written or kept); the encoder reads
    ahead of the writer through `feed()` and, after `rewind()`, again from the writer's row."""

    _END = object()

    def __init__(self, rows: Iterable[Mapping]):
        self._source = iter(rows)
        self._ahead: deque = deque()
        self._fed = 0  # rows of _ahead handed to the encoder

    def peek(self, n: int) -> list:
        while len(self._ahead) < n and (row := next(self._source, self._END)) is not self._END:
            self._ahead.append(row)
        return list(islice(self._ahead, n))

    def feed(self) -> Iterator:
        while True:
            if self._fed < len(self._ahead):
                row = self._ahead[self._fed]
            elif (row := next(self._source, self._END)) is self._END:
                return
            else:
                self._ahead.append(row)
            self._fed += 1
            yield row

    def consume(self, n: int) -> None:
        for _ in range(n):
            self._ahead.popleft()
        self._fed = max(0, self._fed - n)

    def rewind(self) -> None:
        self._fed = 0


def _result_of(fp: Fingerprint, shard: ShardFile):
    """What the closing thread makes of a closed shard: its manifest entry and index rows."""

    def then(info: ShardInfo) -> ShardResult:
        entry = ShardEntry(info.samples, info.bytes, info.sha256, fp.hexdigest())
        return ShardResult(info.name, entry, index_table(shard.index))

    return then


def _stream_shards(
    rows: _RowCursor,
    split_dir: Path,
    data_root: Path,
    settings: ShardSettings,
    params: dict,
    old: SplitManifest,
    progress: Progress,
) -> Iterator[ShardResult]:
    """Shards 0, 1, ... from the rows, each kept (kept_shard, and the next row would not have
    fitted) or written; yielded in order, each under its final name."""
    split, assign = split_dir.name, params["assign_location"]
    limit, max_bytes = settings.samples_per_shard, settings.max_shard_bytes
    index, encoder, pending, current = 0, None, None, None
    with ShardCloser() as closer:
        try:
            while True:
                name = shard_name(index)
                entry = old.shards.get(name)
                kept = _kept_here(rows, split_dir, index, entry, settings, params, data_root)
                if kept is not None:
                    if encoder is not None:  # what it read ahead is read again after this shard
                        encoder.close()
                        encoder = None
                        rows.rewind()
                    pending = None
                    rows.consume(kept.entry.samples)
                    progress.advance(kept.entry.samples)
                    yield from closer.wait()
                    yield kept
                    index += 1
                    continue
                if encoder is None:
                    encoder = encoded_images(
                        rows.feed(), data_root, settings.image_size, settings.jpeg_quality,
                        settings.resize_mode, settings.workers,
                    )  # fmt: skip
                item = pending or next(encoder, None)
                pending = None
                if item is None:
                    break
                current = ShardFile(split_dir / name)
                fp = Fingerprint(name, params)
                while item is not None:
                    row, jpg = item
                    if assign:
                        row = located(row, split, index, current.count)
                    parts = row_parts(row, jpg, settings)
                    size = packed_size(parts)
                    if current.count and (
                        current.count >= limit
                        or (max_bytes and current.final_size(size) > max_bytes)
                    ):
                        pending = item  # starts the next shard (unless that one is kept)
                        break
                    current.add_sample(parts, str(row["key"]), size)
                    fp.add(parts[3][1], row)
                    rows.consume(1)
                    progress.advance(1)
                    yield from closer.ready()
                    item = next(encoder, None)
                done = closer.close(current, _result_of(fp, current))
                current = None  # the closer's from here on
                yield from done
                index += 1
                if pending is None:
                    break
            yield from closer.wait()
        except GeneratorExit:
            raise
        except BaseException:
            # An error or an interrupt (bad input, a failed read, Ctrl-C): the shard whose
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
            if encoder is not None:
                encoder.close()


def _kept_here(
    rows: _RowCursor,
    split_dir: Path,
    index: int,
    entry: ShardEntry | None,
    settings: ShardSettings,
    params: dict,
    data_root: Path,
) -> ShardResult | None:
    """Shard `index`, starting at the cursor's row, if it can stay: kept_shard over the next
    `entry.samples` rows, and a fresh write would end it there too (the count is full, no row
    follows, or the next sample would pass the byte limit)."""
    if entry is None or entry.samples <= 0:
        return None
    n = entry.samples
    ahead = rows.peek(n + 1)
    more = len(ahead) > n
    full = n >= settings.samples_per_shard
    if len(ahead) < n or (more and not full and not settings.max_shard_bytes):
        return None  # fewer rows now, or this shard would take more of them
    split, assign = split_dir.name, params["assign_location"]

    def placed(i: int) -> Mapping:
        return located(ahead[i], split, index, i) if assign else ahead[i]

    kept = kept_shard(
        split_dir, shard_name(index), entry, lambda: [placed(i) for i in range(n)], params
    )
    if kept is None or not more or full:
        return kept
    nxt = placed(n)
    _, jpg = next(
        encoded_images(
            [nxt], data_root, settings.image_size, settings.jpeg_quality, settings.resize_mode
        )
    )
    last = kept.index.slice(kept.index.num_rows - 1).to_pylist()[0]
    with_next = last["offset"] + last["size"] + packed_size(row_parts(nxt, jpg, settings))
    return kept if closed_size(with_next) > settings.max_shard_bytes else None
