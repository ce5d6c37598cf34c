"""Memory of the EOL ingest as the manifest grows: 100k and 1M rows (peer: loading it whole).

Every row goes through the whole ingest path (manifest streaming, duplicate check, the
downloader, status and catalog parts), but its file:// URL names a file that does not exist, so
the run measures the bookkeeping, not image decoding. The peer is what a load-it-all tool does
first: polars.read_csv of the same manifest (img2dataset reads its input with pandas/pyarrow).
Peak RSS is of the whole process tree.

    .venv/bin/python bench/eol_manifest_memory.py [--rows 100000 1000000]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corpus import CACHE, load_line, run_measured, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HEADER = [
    "EOL content ID",
    "EOL page ID",
    "Medium Source URL",
    "EOL Full-Size Copy URL",
    "License Name",
    "Copyright Owner",
]


def manifest(n: int) -> Path:
    path = CACHE / "eol_manifest" / f"manifest-{n}.csv"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for i in range(n):
            w.writerow([
                10_000_000 + i, 1000 + i % 50_000, f"https://www.flickr.com/photos/{i}",
                f"file:///nonexistent/eol/media/{i}.jpg", "cc-by-nc-sa-2.0",
                f"Photographer number {i % 9973}",
            ])  # fmt: skip
    os.replace(tmp, path)
    return path


WORKER = """
import json, sys
from treeoflife.config import config_from_dict
from treeoflife.sources import ingest_eol
stats = ingest_eol(config_from_dict(json.loads(sys.argv[1])), decode_workers=0)
assert stats.rows == int(sys.argv[2]), stats
"""
PEER = """
import sys, polars as pl
df = pl.read_csv(sys.argv[1])
assert df.height == int(sys.argv[2])
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--results", default=str(ROOT / "bench" / "results" / "eol_manifest_memory.md"))
    args = ap.parse_args()
    load_before = os.getloadavg()
    lines = [
        "| manifest rows | ours: peak RSS | ours: wall s | ours: rows/s "
        "| peer (polars.read_csv whole): peak RSS |",
        "|---|---|---|---|---|",
    ]
    for n in args.rows:
        path = manifest(n)
        out = CACHE / "eol_manifest" / f"run-{n}"
        shutil.rmtree(out, ignore_errors=True)
        cfg = {"data_root": str(out), "sources": {"eol": {"manifests": [str(path)]}}}
        ours = run_measured([sys.executable, "-c", WORKER, json.dumps(cfg), str(n)], cwd=ROOT)
        peer = run_measured([sys.executable, "-c", PEER, str(path), str(n)], cwd=ROOT)
        if ours.returncode or peer.returncode:
            raise SystemExit(f"a run failed: ours {ours.returncode}, peer {peer.returncode}")
        lines.append(
            f"| {n:,} | {ours.peak_rss / 2**20:.0f} MB | {ours.wall_s:.1f} | "
            f"{n / ours.wall_s:,.0f} | {peer.peak_rss / 2**20:.0f} MB |"
        )
        shutil.rmtree(out, ignore_errors=True)
    load_after = os.getloadavg()
    lines += ["", load_line(load_before, load_after)]
    report = "\n".join(lines)
    print(report)
    write_results(
        args.results,
        "eol_manifest_memory: EOL ingest memory vs manifest size",
        "bench/eol_manifest_memory.py",
        report,
    )


if __name__ == "__main__":
    main()
