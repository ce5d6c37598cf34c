"""Memory of reading an iNat21 COCO JSON and planning its archive, per image: two trees compared.

Before its archive is streamed, the iNat21 ingest reads the annotations (`read_annotations`)
and plans the archive (`plan_archive`: per image its key, file, category, licence, rights
holder, failure; the member name -> row lookup; the keys seen across archives). Both are held
for the whole stream of a 2.7M-image archive, so what they cost per image is what train.json
costs the driver. This writes a JSON in iNat21's layout (bench/inat21_annotations.py: every
image field the real one has, 10,000 categories, one annotation per image, holders and folders
interleaved) and, for each tree given, in fresh processes with that tree on PYTHONPATH:

- traced: tracemalloc peak (Python objects and numpy) + the Arrow pools' growth (Arrow's
  buffers are not traced) over read_annotations + plan_archive, and what the plan keeps after;
- RSS: peak RSS (VmHWM) minus the RSS before the two calls, untraced, and their wall time.

    .venv/bin/python bench/inat21_plan_memory.py [--images 300000 ...] [--trees A B] [--rss-only]

The results file names each tree by its path: bench/results/inat21_plan_memory.md compares
main at 190cd04 (the list/dict plan) with the streamed, column-wise plan.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corpus import load_line, write_results  # noqa: E402
from inat21_annotations import annotations  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

MEASURE = r"""
import gc, json, sys, time, tracemalloc
import pyarrow as pa
from treeoflife.config import config_from_dict
from treeoflife.sources import inat21_plan as P
from treeoflife.sources.inat21_annotations import read_annotations
from treeoflife.sources.seen import SeenKeys

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

path, n, traced = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "traced"
cfg = config_from_dict({"data_root": "/tmp"})
columnar = hasattr(P.ArchivePlan, "index_of")
seen = SeenKeys(capacity=1024) if columnar else {}
gc.collect()
pools = {id(p): p for p in (pa.default_memory_pool(), pa.system_memory_pool())}.values()
arrow_before = sum(p.bytes_allocated() for p in pools)
arrow_max_before = sum(p.max_memory() for p in pools)
rss_before = status("VmRSS")
if traced:
    tracemalloc.start()
t0 = time.monotonic()
data, _ = read_annotations(path, cfg)
plan = P.plan_archive(data, 0, 0, 10000, seen)
del data
wall = time.monotonic() - t0
gc.collect()
out = {"wall_s": wall, "rss_peak_delta": status("VmHWM") - rss_before}
if traced:
    current, peak = tracemalloc.get_traced_memory()
    out.update(traced_peak=peak, traced_kept=current,
               arrow_peak=sum(p.max_memory() for p in pools) - arrow_max_before,
               arrow_kept=sum(p.bytes_allocated() for p in pools) - arrow_before)
rows = plan.n_rows if columnar else len(plan.entries)
assert rows == n, (rows, n)
print(json.dumps(out))
"""


def measure(tree: Path, path: Path, n: int, mode: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    argv = [sys.executable, "-c", MEASURE, str(path), str(n), mode]
    done = subprocess.run(argv, env=env, cwd=tree, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{tree}: {done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, nargs="+", default=[300_000])
    ap.add_argument(
        "--trees",
        nargs="+",
        default=[str(ROOT)],
        help="checkouts to measure (this one by default); e.g. a worktree of an older commit "
        "(`git worktree add /tmp/before 190cd04`) and this one, to compare",
    )
    ap.add_argument("--rss-only", action="store_true", help="skip the (slow) traced runs")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results" / "inat21_plan_memory.md"))
    args = ap.parse_args()
    load_before = os.getloadavg()
    lines = [
        "| images | tree | traced peak (Python+numpy + Arrow) | per image | kept after | "
        "per image | RSS peak - before | per image | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in args.images:
        path = annotations(n)
        for tree in args.trees:
            r = measure(Path(tree), path, n, "rss")
            traced = "| n/a | n/a | n/a | n/a "
            if not args.rss_only:
                t = measure(Path(tree), path, n, "traced")
                peak = t["traced_peak"] + t["arrow_peak"]
                kept = t["traced_kept"] + t["arrow_kept"]
                traced = (
                    f"| {peak / 2**20:,.0f} MB ({t['traced_peak'] / 2**20:,.0f} + "
                    f"{t['arrow_peak'] / 2**20:,.0f}) | {peak / n:,.0f} B "
                    f"| {kept / 2**20:,.0f} MB | {kept / n:,.0f} B "
                )
            lines.append(
                f"| {n:,} | {tree} {traced}| {r['rss_peak_delta'] / 2**20:,.0f} MB | "
                f"{r['rss_peak_delta'] / n:,.0f} B | {r['wall_s']:.1f} |"
            )
            print(lines[-1], flush=True)
    size = f"JSON of the largest: {path.stat().st_size / 2**20:,.0f} MB"
    lines += ["", size, load_line(load_before, os.getloadavg())]
    report = "\n".join(lines)
    print(report)
    write_results(
        args.results,
        "inat21_plan_memory: driver memory per image of reading + planning an iNat21 archive",
        "bench/inat21_plan_memory.py",
        report,
    )


if __name__ == "__main__":
    main()
