"""Where the release stage's driver time and memory go, step by step, on a built data root
(bench/scale.py --keep leaves them): the out-of-core path the release runs (DuckDB join and
row-by-row assembly, each split's rows in shard order, the catalog in its sort order, the
catalog and licence writers), beside the in-memory join and assembly it replaced, measured in
the same process on the same root. Serial steps all: this is the driver.

    .venv/bin/python bench/scale_profile.py /tmp/treeoflife-scale/config-100k.yaml
    .venv/bin/python bench/scale_profile.py CONFIG --memory-limit 256MB --out-of-core-only
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from treeoflife.assemble import assemble_catalog  # noqa: E402
from treeoflife.config import load_config  # noqa: E402
from treeoflife.layout import Layout  # noqa: E402
from treeoflife.release.card import write_licenses_rows  # noqa: E402
from treeoflife.release.catalog import write_catalog_batches  # noqa: E402
from treeoflife.release.stage import joined_catalog  # noqa: E402
from treeoflife.release.tables import ReleaseTables  # noqa: E402
from treeoflife.shards.manifest import INDEX_FILE  # noqa: E402


def main(config: str, memory_limit: str | None = None, in_memory: bool = True) -> None:
    cfg = load_config(config)
    layout = Layout(cfg.root)
    proc = psutil.Process()
    out: dict = {"steps": {}}
    base = proc.memory_info().rss

    def step(name, fn):
        gc.collect()
        rss0, t0, c0 = proc.memory_info().rss, time.perf_counter(), time.process_time()
        arrow0 = pa.total_allocated_bytes()
        value = fn()
        out["steps"][name] = {
            "wall_s": round(time.perf_counter() - t0, 2),
            "cpu_s": round(time.process_time() - c0, 2),
            "rss_after_mib": round(proc.memory_info().rss / 2**20),
            "rss_delta_mib": round((proc.memory_info().rss - rss0) / 2**20, 1),
            "high_water_mib": round(_hwm(proc) / 2**20),
            "arrow_held_mib": round((pa.total_allocated_bytes() - arrow0) / 2**20, 1),
        }
        return value

    def drain(batches) -> int:
        return sum(b.num_rows for b in batches)

    indexes = {s: layout.shards_dir(s) / INDEX_FILE for s in ("train", "val")}
    work = tempfile.TemporaryDirectory()
    with work as tmp, ReleaseTables(cfg, Path(tmp) / "work", memory_limit) as tables:
        n = step("out of core: join + assemble", lambda: tables.assemble()).rows
        for split in ("train", "val"):
            rows = tables.split_rows(split)
            step(f"out of core: {split} rows in shard order", lambda r=rows: drain(r.batches()))
        step(
            "out of core: catalog.parquet (sort + write)",
            lambda: write_catalog_batches(tables.catalog_batches(indexes), Path(tmp) / "c.parquet"),
        )
        step(
            "out of core: licenses.csv",
            lambda: write_licenses_rows(
                tables.licenses_batches(Path(tmp) / "c.parquet"), Path(tmp) / "l.csv"
            ),
        )
    out["out_of_core_peak_rss_mib"] = round(_hwm(proc) / 2**20)  # before the in-memory steps
    out["duckdb_memory_limit"] = memory_limit or "default"
    out["images"] = n
    out["interpreter_rss_mib"] = round(base / 2**20)
    if not in_memory:
        print(json.dumps(out, indent=1))
        return
    held: dict = {}
    held["joined"] = step("in memory (replaced): joined catalog", lambda: joined_catalog(cfg))
    out["in-memory joined catalog bytes/img"] = round(held["joined"].nbytes / n)
    catalog, order = step(
        "in memory (replaced): assemble",
        lambda: assemble_catalog(held.pop("joined"), cfg.splits, cfg.shards),
    )
    out["in-memory assembled catalog bytes/img"] = round(catalog.nbytes / n)
    del catalog, order
    out["in_memory_peak_rss_mib"] = round(_hwm(proc) / 2**20)
    print(json.dumps(out, indent=1))


def _hwm(proc: psutil.Process) -> int:
    """The process's peak RSS (VmHWM), in bytes."""
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return proc.memory_info().rss


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="the config of a root kept by bench/scale.py --keep")
    ap.add_argument("--memory-limit", help="DuckDB's memory limit (default: the release's)")
    ap.add_argument("--out-of-core-only", action="store_true", help="skip the in-memory steps")
    args = ap.parse_args()
    main(args.config, args.memory_limit, not args.out_of_core_only)
