"""The scale rehearsal in small (2k images): a generated world in every source's real format
(EOL over loopback HTTP) built end to end, every planted outcome found in the release's catalog.

The large runs are benchmarks (bench/scale.py), not tests.
"""

from __future__ import annotations

import hashlib
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.scale import CpuMeter, catalog_counts, compare_counts, release_hashes, write_config
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


def test_cpu_meter_counts_a_process_nobody_waited_for(tmp_path):
    """A worker whose parent exits without waiting for it (as forkserver pools do) still counts."""
    meter = CpuMeter()
    if meter.group is None:
        pytest.skip("no writable cgroup v1 cpuacct hierarchy here")
    done = tmp_path / "done"
    burn = (
        "import time, pathlib, sys; t = time.process_time()\n"
        "while time.process_time() - t < 0.6: pass\n"
        "pathlib.Path(sys.argv[1]).write_text('x')\n"
    )
    spawn = (
        "import subprocess, sys; subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[2]])"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(meter.wrap([sys.executable, "-c", spawn, burn, str(done)]), check=True)
    deadline = time.monotonic() + 30
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # the grandchild exits after writing
    assert done.exists()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    waited = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert waited < 0.3  # what the waited-children figure sees: the worker is missing
    assert meter.seconds(waited) >= 0.5
