import io

import numpy as np
import pytest
from PIL import Image

from treeoflife.io import ImageStoreWriter, store_member_name
from treeoflife.records import treeoflife_id
from treeoflife.schemas import CATALOG
from treeoflife.shards.parts import shard_name

SPECIES = [
    (
        "Animalia",
        "Chordata",
        "Aves",
        "Passeriformes",
        "Corvidae",
        "Corvus",
        "corax",
        "Common Raven",
    ),
    ("Plantae", "Tracheophyta", "Magnoliopsida", "Rosales", "Rosaceae", "Rosa", "canina", None),
    ("Animalia", "Arthropoda", "Insecta", "Diptera", "Cecidomyiidae", None, None, None),
]


def jpeg_bytes(seed: int, width: int, height: int) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def assign_shards(
    keys_in_order: list[str], split: str, samples_per_shard: int
) -> list[tuple[str, int]]:
    """(shard name like "train/shard-000000.tar", position) for each key by count alone: where
    the shard driver puts rows without a byte limit."""
    if samples_per_shard <= 0:
        raise ValueError(f"samples_per_shard must be > 0, got {samples_per_shard}")
    return [
        (f"{split}/{shard_name(i // samples_per_shard)}", i % samples_per_shard)
        for i in range(len(keys_in_order))
    ]


def make_rows(data_root, n: int, split: str = "train", samples_per_shard: int = 4) -> list[dict]:
    """Catalog rows (all CATALOG columns + image location) with images in a real image store."""
    rows = []
    store = "images/test/part-00000.tar"
    with ImageStoreWriter(data_root / store) as writer:
        for i in range(n):
            key = f"inat21/img{i:04d}"
            k, p, c, o, f, g, s, common = SPECIES[i % len(SPECIES)]
            offset, size = writer.add(store_member_name(key), jpeg_bytes(i, 120 + i, 90 + 2 * i))
            row = {name: None for name in CATALOG.names}
            row.update(
                key=key,
                treeoflife_id=treeoflife_id(key),
                source="inat21",
                kingdom=k,
                phylum=p,
                order=o,
                family=f,
                genus=g,
                species=s,
                scientific_name=f"{g} {s}" if s else f,
                common_name=common,
                md5=f"{i:032x}",
                phash=2**63 + i,  # needs uint64
                width=120 + i,
                height=90 + 2 * i,
                status="kept",
                split=split,
                in_train_small=i % 2 == 0,
                image_file=store,
                image_offset=offset,
                image_size=size,
            )
            row["class"] = c
            rows.append(row)
    keys = [r["key"] for r in rows]
    for row, (shard, pos) in zip(rows, assign_shards(keys, split, samples_per_shard), strict=True):
        row["shard"], row["shard_position"] = shard, pos
    return rows


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    return root
