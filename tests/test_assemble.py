import pyarrow as pa

from treeoflife import schemas
from treeoflife.assemble import assemble_catalog, catalog_summary, final_status
from treeoflife.config import ShardsConfig, SplitsConfig


def _joined(rows: list[dict]) -> pa.Table:
    """A joined table (source catalog + taxa + hashes + removals) with only what matters set."""
    names = {f.name for f in schemas.CATALOG} | {
        "removal_reason",
        "image_file",
        "image_offset",
        "image_size",
    }
    full = []
    for r in rows:
        row = dict.fromkeys(names)
        row.update({"source": "eol", "phash": 1, "image_offset": 0, "image_size": 1})
        row.update(r)
        full.append(row)
    types = {f.name: f.type for f in schemas.CATALOG}
    types.update(
        removal_reason=pa.string(),
        image_file=pa.string(),
        image_offset=pa.int64(),
        image_size=pa.int64(),
    )
    schema = pa.schema([(n, types[n]) for n in sorted(names)])
    return pa.Table.from_pylist(full, schema=schema)


def test_final_status_precedence_failed_excluded_removed_kept():
    t = _joined(
        [
            {"key": "a", "status": "failed", "reason": "http_404", "kingdom": None},
            {"key": "b", "status": "ok", "kingdom": None},
            {
                "key": "c",
                "status": "ok",
                "kingdom": "Plantae",
                "removal_reason": "held_out_species",
            },
            {"key": "d", "status": "ok", "kingdom": "Fungi"},
            {
                "key": "e",
                "status": "failed",
                "reason": "not_an_image",
                "kingdom": "Fungi",
                "removal_reason": "exact_eval_duplicate",
            },
        ]
    )
    status, reason = final_status(t)
    assert status.to_pylist() == ["failed", "excluded", "removed", "kept", "failed"]
    assert reason.to_pylist() == [
        "http_404",
        "taxon_unresolved",
        "held_out_species",
        None,
        "not_an_image",
    ]


def test_assemble_assigns_splits_and_a_seeded_order():
    rows = [{"key": f"eol/{i}_1", "status": "ok", "kingdom": "Animalia"} for i in range(200)]
    rows.append({"key": "eol/x_1", "status": "failed", "reason": "http_404"})
    catalog, order = assemble_catalog(
        _joined(rows).sort_by("key"),
        SplitsConfig(seed=0, val_fraction=0.2, train_small_fraction=0.5),
        ShardsConfig(samples_per_shard=16, seed=0),
    )
    assert catalog.schema.names[: len(schemas.CATALOG)] == schemas.CATALOG.names
    by_key = {r["key"]: r for r in catalog.to_pylist()}
    assert by_key["eol/x_1"]["split"] is None
    assert sorted(order["train"] + order["val"]) == sorted(k for k in by_key if k != "eol/x_1")
    assert set(order["train_small"]) <= set(order["train"]) and order["train_small"]
    for split in ("train", "val"):
        assert order[split] != sorted(order[split])  # shuffled, not key order
        for key in order[split]:
            assert by_key[key]["split"] == split
    # the same input in another row order gives the same catalog
    again, _ = assemble_catalog(
        _joined(list(reversed(rows))).sort_by("key"),
        SplitsConfig(seed=0, val_fraction=0.2, train_small_fraction=0.5),
        ShardsConfig(samples_per_shard=16, seed=0),
    )
    assert again.equals(catalog)
    summary = catalog_summary(catalog)
    assert summary["images"] == 201
    assert summary["by_status"] == {"failed": 1, "kept": 200}
    assert summary["by_split"]["train"] + summary["by_split"]["val"] == 200
