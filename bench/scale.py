"""Scale rehearsal: generated worlds of 10k .. 1M images built end to end, stage by stage.

    .venv/bin/python bench/scale.py --sizes 10k,100k            # ~5 min + ~40 min here
    .venv/bin/python bench/scale.py --sizes 1M --keep           # the full rehearsal (quiet box)
    .venv/bin/python bench/scale.py --sizes 100k --kill         # + a SIGKILL per stage, rerun

For each size: bench/scale_world.py writes the world (iNat21 tar.gz + COCO JSON, BIOSCAN TSV +
zips, EOL manifest chunks whose images a loopback MirrorServer serves over real HTTP, a 1M-row
backbone, 10k evaluation images); then every stage (`treeoflife build --stage S`, its own
process) runs alone while a sampler watches its process tree. Per stage: wall, CPU (every
process of the stage's tree, by its own cgroup's cpuacct where one can be made, else the
processes it waited for: `cpu_method`), the driver's peak RSS (VmHWM), the
workers' peak RSS (largest one and the largest sum at one moment), bytes read and written
(rchar / wchar of /proc/<pid>/io over the tree, sampled every 0.2 s: page-cache hits count,
a process that lives < 0.2 s can be missed), and the
per-image cost. The catalog's final counts are checked against the world's planted ones
(world.json). Prints the growth table (per-image cost relative to the smallest size) and
writes bench/results/scale.md (+ scale.json) with the machine and the load average around
every stage: on a shared box read the figures with the load beside them.

`--kill`: a second data root built with one SIGKILL per stage (at `--kill-at` of the clean wall
time, whole process group), each stage rerun to completion; the release's files must be
byte-identical to the clean build's (summary.json, report/ and run timings excepted, as in
every other byte comparison of this project).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._scale_report import (  # noqa: E402
    STAGES,
    growth_table,
    label,
    parse_size,
    write_results,
)
from bench.scale_world import EOL_PREFIX, WorldSpec, generate_world  # noqa: E402

RESULTS = ROOT / "bench" / "results"


# ------------------------------------------------------------------------------ the server


@contextlib.contextmanager
def mirror_server(folder: Path):
    """The EOL mirror in its own process (its CPU is not the stages'); yields its URL."""
    code = (
        "import sys, time; from tests.support.mirror_server import MirrorServer\n"
        "s = MirrorServer(sys.argv[1]); s.__enter__(); print(s.url, flush=True)\n"
        "while True: time.sleep(3600)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"mirror server did not start: {url!r}")
        yield url
    finally:
        proc.kill()
        proc.wait()


def write_config(path: Path, world: Path, root: Path, url: str, workers: int, dask: bool = False):
    """The build's config: every source in its real format, the sizes tol10m.yaml uses."""
    host = url.split("://", 1)[1].rstrip("/")
    bioscan_zips = sorted(str(p) for p in (world / "bioscan").glob("*.zip"))
    cfg = {
        "data_root": str(root),
        "sources": {
            "inat21": {
                "archives": [
                    {
                        "images": str(world / f"inat21/{s}.tar.gz"),
                        "annotations": str(world / f"inat21/{s}.json"),
                    }
                    for s in ("train", "val")
                ],  # fmt: skip
                "images_per_part": 10_000,
            },
            "bioscan": {
                "metadata": str(world / "bioscan/BIOSCAN_Insect_Dataset_metadata.tsv"),
                "zips": bioscan_zips,
                "images_per_part": 10_000,
            },
            "eol": {
                "manifests": sorted(str(p) for p in (world / "eol").glob("media_manifest_*.csv")),
                "pages": str(world / "eol/pages.csv"),
                "mirror": {EOL_PREFIX: url + "/"},
                "allow_hosts": [host],
                "rows_per_part": 10_000,
                "retries": 1,
            },
        },
        "taxonomy": {"backbone": str(world / "backbone")},
        "evalsets": [
            {
                "name": "rare_species",
                "metadata": str(world / "evalsets/rare_species/metadata.csv"),
                "hold_out_species": True,
            },
            {"name": "seen_species", "metadata": str(world / "evalsets/seen_species/metadata.csv")},
        ],  # fmt: skip
        "dedup": {"phash_max_distance": 8, "hash_workers": workers},
        "splits": {"seed": 0, "val_fraction": 0.05, "train_small_fraction": 0.1},
        "shards": {"samples_per_shard": 10_000, "image_size": 128, "workers": workers},
    }
    if dask:
        cfg["execution"] = {"task_runner": "dask", "dask_workers": workers}
    path.write_text(json.dumps(cfg, indent=1))  # JSON is YAML


# ------------------------------------------------------------------------------ measuring


def _read_proc(pid: int) -> tuple[int, int, int] | None:
    """(VmHWM bytes, bytes read, bytes written) of a live process: rchar / wchar, what its
    read and write calls moved (page-cache hits included; sockets and pipes too)."""
    try:
        hwm = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
                    break
        io = {}
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                k, v = line.split(":")
                io[k] = int(v)
        return hwm, io.get("rchar", 0), io.get("wchar", 0)
    except (OSError, ValueError):
        return None


class TreeSampler(threading.Thread):
    """Samples a process and its descendants every `every` s until stopped."""

    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.stop = threading.Event()
        self.driver_hwm = 0
        self.worker_hwm = 0  # largest single worker
        self.workers_sum = 0  # largest sum of workers' RSS at one moment
        self.io: dict[int, tuple[int, int]] = {}
        self.workers_seen: set[int] = set()
        self.driver_cpu = 0.0  # the driver's own user + system seconds (threads included)

    def run(self):
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.every)

    def sample(self):
        try:
            root = psutil.Process(self.pid)
            kids = root.children(recursive=True)
        except psutil.Error:
            return
        now_sum = 0
        for p in [root, *kids]:
            got = _read_proc(p.pid)
            if got is None:
                continue
            hwm, rb, wb = got
            self.io[p.pid] = (rb, wb)
            if p.pid == self.pid:
                self.driver_hwm = max(self.driver_hwm, hwm)
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    self.driver_cpu = max(self.driver_cpu, t.user + t.system)
            else:
                self.workers_seen.add(p.pid)
                self.worker_hwm = max(self.worker_hwm, hwm)
                with contextlib.suppress(psutil.Error):
                    now_sum += p.memory_info().rss
        self.workers_sum = max(self.workers_sum, now_sum)


class CpuMeter:
    """CPU seconds of a stage's whole process tree. RUSAGE_CHILDREN counts only processes that
    were waited for: decode pools started from a forkserver are children of the forkserver,
    whose own exit is not waited for, so their CPU went uncounted and the figure was the
    driver's alone. Where a cgroup v1 `cpuacct` hierarchy is writable (root on Linux), the
    stage runs in its own cgroup and its `cpuacct.usage` counts every descendant; elsewhere
    the waited-children figure is used and `method` says so."""

    BASE = Path("/sys/fs/cgroup/cpuacct")

    def __init__(self):
        self.group: Path | None = None
        self.method = "rusage_children"
        try:
            group = self.BASE / f"treeoflife-scale-{os.getpid()}"
            group.mkdir(exist_ok=True)
            self.start = int((group / "cpuacct.usage").read_text())
            self.group, self.method = group, "cgroup_cpuacct"
        except OSError:
            pass

    def wrap(self, cmd: list[str]) -> list[str]:
        """`cmd` started inside the cgroup (the shell moves itself in, then execs)."""
        if self.group is None:
            return cmd
        return ["sh", "-c", f'echo $$ > {self.group}/cgroup.procs && exec "$@"', "sh", *cmd]

    def seconds(self, fallback: float) -> float:
        """The tree's CPU since the meter was made (then the group is removed if empty)."""
        if self.group is None:
            return fallback
        used = (int((self.group / "cpuacct.usage").read_text()) - self.start) / 1e9
        with contextlib.suppress(OSError):
            self.group.rmdir()
        return used


def run_stage(config: Path, stage: str, log: Path, kill_after: float | None = None) -> dict:
    """One stage in its own process; measured. `kill_after`: SIGKILL its group after that
    many seconds (returns killed=True, or False when it finished first)."""
    cmd = [sys.executable, "-m", "treeoflife.cli", "build", "--config", str(config),
           "--stage", stage, "-q"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    meter = CpuMeter()
    cmd = meter.wrap(cmd)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, env=env, cwd=ROOT,
                                start_new_session=True)  # fmt: skip
        sampler = TreeSampler(proc.pid)
        sampler.start()
        killed = False
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed = True
        sampler.stop.set()
        sampler.join()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0 and not killed:
        raise RuntimeError(f"stage {stage} failed ({proc.returncode}); see {log}")
    return {
        "stage": stage,
        "killed": killed,
        "wall_s": wall,
        "cpu_s": meter.seconds(
            (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        ),
        "cpu_method": meter.method,
        "driver_cpu_s": sampler.driver_cpu,
        "driver_peak_rss": sampler.driver_hwm,
        "worker_peak_rss": sampler.worker_hwm,
        "workers_peak_rss_sum": sampler.workers_sum,
        "workers": len(sampler.workers_seen),
        "read_bytes": sum(r for r, _ in sampler.io.values()),
        "write_bytes": sum(w for _, w in sampler.io.values()),
        "load_before": [round(x, 2) for x in load0],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def du(path: Path) -> int:
    """Bytes of the files under `path` (apparent sizes)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def release_hashes(root: Path) -> dict[str, str]:
    """sha256 of the release's data files (summary.json, html and report/ carry timings)."""
    rel = root / "release"
    out = {}
    for p in sorted(rel.rglob("*")):
        r = p.relative_to(rel)
        if not p.is_file() or p.name == "summary.json" or p.suffix == ".html":
            continue
        if r.parts[0] == "report" or p.name.startswith("report"):
            continue
        out[str(r)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def catalog_counts(root: Path) -> dict:
    t = pq.read_table(root / "release" / "catalog.parquet", columns=["status", "reason", "source"])
    counts: dict = {"rows": t.num_rows, "kept": 0, "failed": {}, "removed": {}, "excluded": {}}
    for r in t.group_by(["status", "reason"]).aggregate([([], "count_all")]).to_pylist():
        if r["status"] == "kept":
            counts["kept"] += r["count_all"]
        else:
            bucket = counts.setdefault(r["status"], {})
            bucket[r["reason"]] = bucket.get(r["reason"], 0) + r["count_all"]
    return counts


def compare_counts(expected: dict, got: dict) -> list[str]:
    """Lines naming each count that differs from the world's plan."""
    diffs = []
    for key in ("rows", "kept"):
        if expected[key] != got.get(key):
            diffs.append(f"{key}: expected {expected[key]}, got {got.get(key)}")
    for status in ("failed", "removed", "excluded"):
        exp, have = expected[status], got.get(status, {})
        if status == "failed":  # 404s are recorded as http_404 or not_found
            have = dict(have)
            have["not_found"] = have.pop("not_found", 0) + have.pop("http_404", 0)
        for reason in sorted(set(exp) | set(have)):
            if exp.get(reason, 0) != have.get(reason, 0):
                diffs.append(f"{status}/{reason}: expected {exp.get(reason, 0)}, got "
                             f"{have.get(reason, 0)}")  # fmt: skip
    return diffs


# ------------------------------------------------------------------------------ one size


def disk_parts(root: Path) -> dict[str, int]:
    """The data root's bytes by what they hold."""
    parts = {name: du(root / name) for name in ("images", "catalog", "taxonomy", "hashes",
                                                "dedup", "state")}  # fmt: skip
    parts["release/shards"] = du(root / "release" / "shards")
    parts["release/other"] = du(root / "release") - parts["release/shards"]
    return parts


def _earlier_result(path: Path, n: int) -> dict | None:
    """A size's result from a saved scale.json (for --reuse)."""
    for r in json.loads(Path(path).read_text()):
        if r["images"] == n:
            return {k: v for k, v in r.items() if k not in ("kill", "dask")}
    return None


def build_clean(n: int, base: Path, config: Path, root: Path, info: dict, result: dict) -> None:
    """Every stage once, measured; the catalog's statuses checked against the world's plan."""
    for stage in STAGES:
        m = run_stage(config, stage, base / f"build-{label(n)}.log")
        m["per_image_ms"] = 1000 * m["wall_s"] / n
        m["cpu_per_image_ms"] = 1000 * m["cpu_s"] / n
        m["disk_after"] = du(root)
        result["stages"].append(m)
        print(f"[{label(n)}] {stage:<9} wall {m['wall_s']:7.1f} s  cpu {m['cpu_s']:7.1f} s  "
              f"driver {m['driver_peak_rss'] / 2**20:6.0f} MiB  workers "
              f"{m['worker_peak_rss'] / 2**20:5.0f} MiB  load {m['load_after'][0]:.1f}",
              flush=True)  # fmt: skip
    result["disk"] = disk_parts(root)
    result["counts"] = catalog_counts(root)
    result["count_diffs"] = compare_counts(info["expected"], result["counts"])


def run_size(n: int, base: Path, args) -> dict:
    world = base / f"world-{label(n)}"
    spec = WorldSpec(n, args.seed, args.backbone_rows, min(args.eval_images, max(500, n // 10)))
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    info = generate_world(world, spec, args.workers)
    gen_s = time.perf_counter() - t0
    print(f"[{label(n)}] world in {gen_s:.0f} s (load {load0[0]:.1f})", flush=True)
    result: dict = {"images": n, "world": info, "world_s": gen_s, "stages": []}
    result["inputs_bytes"] = du(world)
    root = base / f"root-{label(n)}"
    earlier = _earlier_result(args.reuse, n) if args.reuse else None
    if earlier is not None and (root / "release" / "summary.json").exists():
        print(f"[{label(n)}] clean build reused from {args.reuse}", flush=True)
        result = earlier  # the --keep'd root and its measurements (no stage rerun)
    else:
        earlier = None
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
    with mirror_server(world / "eol" / "mirror") as url:
        config = base / f"config-{label(n)}.yaml"
        if earlier is None:
            write_config(config, world, root, url, args.workers)
            build_clean(n, base, config, root, info, result)
        if args.kill:
            result["kill"] = kill_run(n, base, world, url, args, result)
        if args.dask:
            result["dask"] = dask_run(n, base, world, url, args)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(world, ignore_errors=True)
    return result


def kill_run(n: int, base: Path, world: Path, url: str, args, clean: dict) -> dict:
    """One SIGKILL per stage at `--kill-at` of its clean wall time (half by default), then
    the stage rerun; the release must equal the clean build's, file for file. A stage that
    ends first is reported as not killed."""
    root = base / f"root-{label(n)}-kill"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    config = base / f"config-{label(n)}-kill.yaml"
    write_config(config, world, root, url, args.workers)
    log = base / f"build-{label(n)}-kill.log"
    walls = {m["stage"]: m["wall_s"] for m in clean["stages"]}
    kills = {}
    for stage in STAGES:
        m = run_stage(config, stage, log, kill_after=max(1.0, walls[stage] * args.kill_at))
        kills[stage] = m["killed"]
        run_stage(config, stage, log)
    a = release_hashes(base / f"root-{label(n)}")
    b = release_hashes(root)
    differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return {"killed": kills, "files": len(a), "differ": differ}


def dask_run(n: int, base: Path, world: Path, url: str, args) -> dict:
    """The Prefect flow `tree-of-life` on a Dask LocalCluster (`workers` processes) into its
    own data root; its release must equal the CLI build's, file for file."""
    root = base / f"root-{label(n)}-dask"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    config = base / f"config-{label(n)}-dask.yaml"
    write_config(config, world, root, url, args.workers, dask=True)
    code = (
        "import sys; from flows.tree_of_life import tree_of_life\ntree_of_life(sys.argv[1], None)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    with (base / f"build-{label(n)}-dask.log").open("ab") as out:
        subprocess.run([sys.executable, "-c", code, str(config)], stdout=out, stderr=out,
                       env=env, cwd=ROOT, check=True)  # fmt: skip
    wall = time.perf_counter() - t0
    a = release_hashes(base / f"root-{label(n)}")
    b = release_hashes(root)
    differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return {"wall_s": wall, "files": len(a), "differ": differ,
            "load": [load0[0], os.getloadavg()[0]]}  # fmt: skip


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10k,100k")
    ap.add_argument("--base", type=Path, default=Path("/tmp/treeoflife-scale"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--backbone-rows", type=int, default=1_000_000)
    ap.add_argument("--eval-images", type=int, default=10_000)
    ap.add_argument("--keep", action="store_true", help="keep worlds and data roots")
    ap.add_argument("--kill", action="store_true", help="also a SIGKILL-per-stage build")
    ap.add_argument("--kill-at", type=float, default=0.5,
                    help="kill each stage at this fraction of its clean wall time")  # fmt: skip
    ap.add_argument("--dask", action="store_true", help="also the Prefect flow on Dask")
    ap.add_argument("--reuse", type=Path, help="a scale.json whose sizes' clean builds (kept "
                    "roots) are reused: only --kill / --dask run")  # fmt: skip
    ap.add_argument("--report", type=Path, nargs="*", help="only rewrite the results from "
                    "these scale.json files (merged by size)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=RESULTS / "scale.md")
    args = ap.parse_args(argv)
    if args.report:
        merged = {r["images"]: r for f in args.report for r in json.loads(f.read_text())}
        results = [merged[n] for n in sorted(merged)]
    else:
        args.base.mkdir(parents=True, exist_ok=True)
        results = [run_size(parse_size(s), args.base, args) for s in args.sizes.split(",")]
    write_results(results, args.out)
    if len(results) > 1:
        print("\n".join(growth_table(results)))
    for r in results:
        print(f"[{label(r['images'])}] statuses vs plan: {r['count_diffs'] or 'all equal'}")


if __name__ == "__main__":
    main()
