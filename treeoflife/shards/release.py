"""The release's shards: train, val, then train_small, from rows streamed in shard order."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from treeoflife.fanout import PartMapper
from treeoflife.layout import Layout
from treeoflife.progress import Progress
from treeoflife.shards.settings import ShardSettings
from treeoflife.shards.tasks import OrderedRows
from treeoflife.shards.writer import write_split_shards
from treeoflife.storage import FsspecStorage

SPLITS = ("train", "val", "train_small")


def write_release_shards(
    rows_of: Callable[[str], OrderedRows],
    layout: Layout,
    settings: ShardSettings,
    *,
    progress: Progress | None = None,
    map_parts: PartMapper | None = None,
    shared: FsspecStorage | None = None,
) -> tuple[dict[str, Path], dict]:
    """Shards of each split, whose rows `rows_of(split)` streams in shard order; returns the
    shard indexes that place catalog rows (train, val) and per split its shards, samples and
    bytes.

    A catalog row's `shard`/`shard_position` is its place in its split (train or val): the
    train and val rows are written with their own location, and train_small's rows (asked for
    after train is written) carry their train location, so the `json` member of every sample is
    its catalog row, in train_small's shards too (their own place is in
    `shards/train_small/index.parquet`). With `map_parts` (treeoflife.fanout) per-shard tasks
    write them, through `shared` storage when set (the caller has put the image stores there,
    at their data-root-relative names).
    """
    results, indexes = {}, {}
    for split in SPLITS:
        written = write_split_shards(
            rows_of(split),
            layout.shards_dir(split),
            settings,
            data_root=layout.root,
            assign_location=split != "train_small",
            map_parts=map_parts,
            shared=shared,
            progress=progress,
        )
        if split != "train_small":
            indexes[split] = written.index
        results[split] = {
            "shards": len(written.shards),
            "samples": written.samples,
            "bytes": sum(i.bytes for i in written.shards),
        }
    return indexes, results
