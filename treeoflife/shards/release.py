"""The release's shards: train, val, then train_small, and the catalog placed in them."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from treeoflife.assemble import fill_shard_locations
from treeoflife.fanout import PartMapper
from treeoflife.layout import Layout
from treeoflife.progress import Progress
from treeoflife.shards.settings import ShardSettings
from treeoflife.shards.writer import write_split_shards
from treeoflife.storage import FsspecStorage

SPLITS = ("train", "val", "train_small")


def write_release_shards(
    catalog: pa.Table,
    order: dict[str, list[str]],
    layout: Layout,
    settings: ShardSettings,
    *,
    progress: Progress | None = None,
    map_parts: PartMapper | None = None,
    shared: FsspecStorage | None = None,
) -> tuple[pa.Table, dict]:
    """Shards of each split (keys in `order[split]`); the catalog with `shard`/`shard_position`
    set, and per split its shards, samples and bytes.

    A catalog row's `shard`/`shard_position` is its place in its split (train or val); the
    `json` member of every sample is that catalog row, in train_small's shards too (which
    repeat train samples byte for byte in the members; their own place is in
    `shards/train_small/index.parquet`). With `map_parts` (treeoflife.fanout) per-shard tasks
    write them, through `shared` storage when set (the caller has put the image stores there,
    at their data-root-relative names).
    """
    results = {}
    for split in SPLITS:
        written = write_split_shards(
            catalog,
            layout.shards_dir(split),
            settings,
            data_root=layout.root,
            keys=order[split],
            assign_location=split != "train_small",
            map_parts=map_parts,
            shared=shared,
            progress=progress,
        )
        if split != "train_small":
            index = pq.read_table(written.index, columns=["key", "shard", "position"])
            catalog = fill_shard_locations(catalog, index, split)
        results[split] = {
            "shards": len(written.shards),
            "samples": written.samples,
            "bytes": sum(i.bytes for i in written.shards),
        }
    return catalog, results
