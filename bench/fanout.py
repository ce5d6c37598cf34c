"""Distributed execution benchmark: the shard stage fanned out over per-shard Prefect tasks
(threads, and a Dask LocalCluster with 2 worker processes) vs the stage's own sequential
writer with its process pool (the peer: what the CLI runs), and the cost of one part task.

    .venv/bin/python bench/fanout.py                 # 1200 images (~2-3 min)
    .venv/bin/python bench/fanout.py --images 2400

Corpus: bench/shards.py's (real-photo crops, longer side 300-500 px, JPEG q90, in an image
store tar as ingest leaves them). Every run writes the same split: the bytes are checked equal.

1. No byte limit (`--per-shard` samples per shard: one task per shard).
2. A byte limit (`max_shard_bytes`): encode pass, boundary plan, per-shard copy.
3. Orchestration cost: a no-op part through each runner, ms per task.

A temporary Prefect server runs for the tasks (as under `make flow`). The Dask cluster is
started before the timed runs (its start-up is reported on its own).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-prefect-"))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pyarrow as pa  # noqa: E402
from shards import corpus, make_rows  # noqa: E402  (bench/shards.py)

from treeoflife.config import ExecutionConfig  # noqa: E402
from treeoflife.shards.settings import ShardSettings  # noqa: E402
from treeoflife.shards.tasks import ROWS_SCHEMA  # noqa: E402
from treeoflife.shards.writer import write_split_shards  # noqa: E402

ARGS = {"image_size": 224, "jpeg_quality": 95, "text_type": "taxon_com", "seed": 0}


def noop(item: int) -> int:
    return item


def digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1200)
    ap.add_argument("--per-shard", type=int, default=100)
    ap.add_argument("--max-bytes", type=int, default=1_500_000)
    ap.add_argument("--tasks", type=int, default=100, help="no-op tasks per runner")
    args = ap.parse_args(argv)

    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    from flows._common import PrefectPartMapper

    work = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    data_root = work / "data"
    rows = make_rows(data_root, corpus(args.images))
    table = pa.Table.from_pylist(rows, schema=ROWS_SCHEMA)
    keys = [r["key"] for r in rows]
    n = len(rows)
    load0 = os.getloadavg()
    results: dict[str, dict[str, float]] = {}
    digests: dict[str, dict] = {}

    def sequential(label: str, **extra) -> None:
        out = work / label / "train"
        settings = ShardSettings(**ARGS, samples_per_shard=args.per_shard, workers=2, **extra)
        secs = timed(lambda: write_split_shards(rows, out, settings, data_root=data_root))
        results.setdefault(label, {})["wall"] = secs
        digests[label] = digest(out)

    def mapped(label: str, mapper, **extra) -> None:
        out = work / label / "train"
        settings = ShardSettings(**ARGS, samples_per_shard=args.per_shard, workers=1, **extra)
        secs = timed(
            lambda: write_split_shards(
                table, out, settings, data_root=data_root, keys=keys, map_parts=mapper
            )
        )
        results.setdefault(label, {})["wall"] = secs
        digests[label] = digest(out)

    with prefect_test_harness(server_startup_timeout=180):

        @flow
        def run() -> dict:
            threads = PrefectPartMapper(ExecutionConfig(max_workers=2))
            dask = PrefectPartMapper(ExecutionConfig(task_runner="dask", dask_workers=2))
            try:
                t0 = time.perf_counter()
                list(dask(noop, range(2)))  # start the cluster and warm both workers
                startup = time.perf_counter() - t0
                list(threads(noop, range(2)))
                overhead = {
                    name: timed(lambda m=m: list(m(noop, range(args.tasks)))) / args.tasks
                    for name, m in (("threads", threads), ("dask", dask))
                }
                sequential("sequential")
                mapped("threads", threads)
                mapped("dask", dask)
                limit = {"max_shard_bytes": args.max_bytes}
                sequential("sequential-limit", **limit)
                mapped("threads-limit", threads, **limit)
                mapped("dask-limit", dask, **limit)
            finally:
                threads.close()
                dask.close()
            return {"startup": startup, "overhead": overhead}

        extra = run()
    load1 = os.getloadavg()

    same = digests["sequential"] == digests["threads"] == digests["dask"]
    same_limit = digests["sequential-limit"] == digests["threads-limit"] == digests["dask-limit"]
    shards_0 = len([k for k in digests["sequential"] if k.endswith(".tar")])
    shards_1 = len([k for k in digests["sequential-limit"] if k.endswith(".tar")])
    print(f"# fanout benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} cores")  # fmt: skip
    print(f"corpus: {n} JPEGs (bench/shards.py), 224 px shards, {args.per_shard} per shard")
    print()
    print("| run | shards | wall s | images/s | vs sequential |")
    print("|---|---|---|---|---|")
    for base, label_shards in (("sequential", shards_0), ("sequential-limit", shards_1)):
        peer = results[base]["wall"]
        suffix = base.removeprefix("sequential")
        for label in (base, f"threads{suffix}", f"dask{suffix}"):
            wall = results[label]["wall"]
            rate, ratio = n / wall, peer / wall
            print(f"| {label} | {label_shards} | {wall:.2f} | {rate:.0f} | {ratio:.2f}x |")
    print()
    print(f"bytes identical, no limit: {same}; with the byte limit: {same_limit}")
    print(f"Dask LocalCluster (2 workers) start-up, first tasks: {extra['startup']:.1f} s")
    for name, secs in extra["overhead"].items():
        print(f"one no-op part task, {name}: {1000 * secs:.1f} ms")
    print(f"load average before / after: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} / "
          f"{load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    return 0 if same and same_limit else 1


if __name__ == "__main__":
    raise SystemExit(main())
