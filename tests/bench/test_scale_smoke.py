"""The scale rehearsal in small (2k images): a generated world in every source's real format
(EOL over loopback HTTP) built end to end, every planted outcome found in the release's catalog.

The large runs are benchmarks (bench/scale.py), not tests.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from bench.scale import catalog_counts, compare_counts, release_hashes, write_config
from bench.scale_world import WorldSpec, generate_world
from tests.support.mirror_server import MirrorServer
from treeoflife import pipeline
from treeoflife.config import load_config

SPEC = WorldSpec(images=2000, seed=5, backbone_rows=20_000, eval_images=200)


def _tree_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "world.json"
    }


def test_world_bytes_do_not_depend_on_the_render_pool(tmp_path):
    small = WorldSpec(images=400, seed=3, backbone_rows=2000, eval_images=60)
    one = generate_world(tmp_path / "one", small, workers=1)
    two = generate_world(tmp_path / "two", small, workers=2)
    assert one["expected"] == two["expected"]
    assert _tree_hashes(tmp_path / "one") == _tree_hashes(tmp_path / "two")
    # trouble is planted even in a small world
    exp = one["expected"]
    assert exp["removed"]["held_out_species"] and exp["failed"]["missing_in_archive"]


def test_scale_world_builds_end_to_end_with_every_planted_outcome(tmp_path):
    world = tmp_path / "world"
    info = generate_world(world, SPEC, workers=2)
    expected = info["expected"]
    assert info["backbone_rows"] == SPEC.backbone_rows
    assert sum(expected["by_source"].values()) == SPEC.images
    planted = [*expected["removed"].values(), *expected["failed"].values()]
    assert all(planted) and expected["excluded"]["taxon_unresolved"]  # every kind planted
    root = tmp_path / "root"
    with MirrorServer(world / "eol" / "mirror") as server:
        config = tmp_path / "config.yaml"
        write_config(config, world, root, server.url, workers=2)
        cfg = load_config(config)
        results = pipeline.build(cfg)
        assert server.hits  # EOL's images came over HTTP
    assert results["release"].summary["images"] == SPEC.images
    got = catalog_counts(root)
    assert compare_counts(expected, got) == []
    assert release_hashes(root)  # the release's files are there to compare
