"""Where the release stage's driver time and memory go, step by step, on a built data root
(bench/scale.py --keep leaves them): the joined catalog's bytes per image, the assembly's
per-key Python, the catalog and licence writers. Serial steps all: this is the driver.

    .venv/bin/python bench/scale_profile.py /tmp/treeoflife-scale/config-100k.yaml
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from treeoflife.assemble import assemble_catalog, catalog_summary  # noqa: E402
from treeoflife.config import load_config  # noqa: E402
from treeoflife.layout import Layout  # noqa: E402
from treeoflife.release.card import write_licenses_csv  # noqa: E402
from treeoflife.release.catalog import write_catalog  # noqa: E402
from treeoflife.release.stage import joined_catalog  # noqa: E402
from treeoflife.sources.catalogs import read_all_source_catalogs  # noqa: E402


def main(config: str) -> None:
    cfg = load_config(config)
    proc = psutil.Process()
    out: dict = {}

    def step(name, fn):
        rss0, t0, c0 = proc.memory_info().rss, time.perf_counter(), time.process_time()
        value = fn()
        out[name] = {
            "wall_s": round(time.perf_counter() - t0, 2),
            "cpu_s": round(time.process_time() - c0, 2),
            "rss_delta_mib": round((proc.memory_info().rss - rss0) / 2**20, 1),
        }
        return value

    catalogs = step("read source catalogs", lambda: read_all_source_catalogs(cfg))
    n = catalogs.num_rows
    out["source catalog bytes/img"] = round(catalogs.nbytes / n)
    del catalogs
    held = {}
    held["joined"] = step(
        "joined catalog (read + query ids + joins + sort)", lambda: joined_catalog(cfg)
    )
    out["joined catalog bytes/img"] = round(held["joined"].nbytes / n)
    catalog, order = step(
        "assemble (status, splits, ids, shard order)",
        lambda: assemble_catalog(held.pop("joined"), cfg.splits, cfg.shards),
    )
    out["assembled catalog bytes/img"] = round(catalog.nbytes / n)
    out["shard order keys"] = {k: len(v) for k, v in order.items()}
    del catalog, order
    # the writers take the finished catalog (shard locations filled): the release's own
    public = pq.read_table(Layout(cfg.root).catalog)
    with tempfile.TemporaryDirectory() as tmp:
        step("write catalog.parquet", lambda: write_catalog(public, Path(tmp) / "c.parquet"))
        step("write licenses.csv", lambda: write_licenses_csv(public, Path(tmp) / "l.csv"))
    step("catalog summary", lambda: catalog_summary(public))
    out["images"] = n
    out["peak_rss_mib"] = round(proc.memory_info().rss / 2**20)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: bench/scale_profile.py CONFIG (a root kept by bench/scale.py --keep)")
    else:
        main(sys.argv[1])
