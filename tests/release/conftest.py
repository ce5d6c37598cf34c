import pyarrow as pa

from treeoflife.records import treeoflife_id
from treeoflife.schemas import CATALOG


def catalog_rows(n: int = 30) -> list[dict]:
    """Catalog rows of every final status, in a scrambled key order, with image columns."""
    rows = []
    statuses = ["kept", "kept", "kept", "failed", "removed", "excluded"]
    reasons = {
        "failed": "http_404",
        "removed": "near_eval_duplicate",
        "excluded": "taxon_unresolved",
    }
    kept = 0
    for i in range(n):
        j = (i * 7) % n  # keys not in order
        source = ("inat21", "bioscan", "eol")[j % 3]
        key = {"inat21": f"inat21/u{j:03d}", "bioscan": f"bioscan/P{j:03d}", "eol": f"eol/{j}_9"}[
            source
        ]
        status = statuses[j % len(statuses)]
        row = {name: None for name in CATALOG.names}
        row.update(
            key=key,
            treeoflife_id=treeoflife_id(key),
            source=source,
            kingdom="Animalia",
            genus="Corvus",
            species="corax",
            scientific_name="Corvus corax",
            common_name="Common Raven" if j % 2 else None,
            license="cc-by-4.0" if j % 2 else "cc0-1.0",
            rights_holder=f"Photographer, with comma {j}" if j % 4 == 0 else None,
            source_url=f"https://example.org/img/{j}.jpg",
            md5=f"{j:032x}",
            phash=2**64 - 1 - j,
            width=500,
            height=375,
            status=status,
            reason=reasons.get(status),
            image_file="images/x/part-00000.tar",
            image_offset=512 * j,
            image_size=100,
        )
        if status == "kept":
            row.update(
                split="train" if kept % 5 else "val",
                in_train_small=kept % 2 == 0,
                shard=f"{'train' if kept % 5 else 'val'}/shard-000000.tar",
                shard_position=kept,
            )
            kept += 1
        rows.append(row)
    return rows


def catalog_table(n: int = 30) -> pa.Table:
    rows = catalog_rows(n)
    schema = pa.schema(
        [
            *CATALOG,
            pa.field("image_file", pa.string()),
            pa.field("image_offset", pa.int64()),
            pa.field("image_size", pa.int64()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)
