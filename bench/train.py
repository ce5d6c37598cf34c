"""Training throughput on our shards vs open_clip's synthetic data, same model and batch.

    .venv/bin/python bench/train.py                       # CPU here: treeoflife-tiny, batch 32
    .venv/bin/python bench/train.py --device cuda --model ViT-B-16 --precision amp \
        --batch-size 256 --workers 8 --image-size 224     # one GPU, where one is lent

Both runs are stock open_clip_train (through treeoflife.train.launch) with the same model,
batch, precision and dataloader workers; only the data differs: `--dataset-type webdataset`
over shards our release stage wrote (the bundled sample's train shards, copied to give enough
steps) vs `--dataset-type synthetic` (one blank image, transformed per sample: no decoding, no
I/O). Throughput is samples / wall time of every logged step after the first epoch (warm-up),
and of the steady steps alone: each epoch's first step waits for webdataset's shuffle buffer
(1000 samples) and its last is partial, stalls that a 10M-sample epoch amortises but the small
epochs of a CPU run do not. The data path is not the bottleneck when ours / synthetic >= 0.9. Runs
alternate (ours, synthetic, ours, ...) so machine load hits both alike; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from treeoflife.config import TrainConfig, load_config  # noqa: E402
from treeoflife.train.run import LAUNCH_MODULE, _subprocess_env, build_train_argv  # noqa: E402

_STEP = re.compile(
    r"Train Epoch: (\d+) \[\s*(\d+)/(\d+).*?Data \(t\): ([\d.]+) Batch \(t\): [\d.]+, ([\d.]+)/s,"
)


def build_shards(root: Path, copies: int, image_size: int) -> Path:
    """The sample's release train shards (built once under `root`), repeated `copies` times."""
    from treeoflife import pipeline

    cfg = load_config(REPO / "configs" / "sample.yaml", data_root=str(root / "data"))
    if image_size:
        cfg = replace(cfg, shards=replace(cfg.shards, image_size=image_size))
    pipeline.build(cfg)
    src = root / "data" / "release" / "shards" / "train"
    out = root / f"shards-x{copies}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    sizes = json.loads((src / "sizes.json").read_text())
    new_sizes, n = {}, 0
    for _ in range(copies):
        for name in sorted(sizes):
            target = f"shard-{n:06d}.tar"
            shutil.copyfile(src / name, out / target)
            new_sizes[target] = sizes[name]
            n += 1
    (out / "sizes.json").write_text(json.dumps(new_sizes, sort_keys=True))
    return out


def run(argv: list[str], device: str) -> tuple[float, float, float, int]:
    """One open_clip_train launch: samples/s over every step after epoch 0, samples/s over
    the steady steps (without each epoch's first and last step), the share of steady step
    time spent waiting for data, and the steps measured."""
    with tempfile.TemporaryDirectory(prefix="bench-train-") as logs:
        argv = [*argv]
        argv[argv.index("--logs") + 1] = logs
        proc = subprocess.run(  # noqa: S603
            [sys.executable, "-m", LAUNCH_MODULE, *argv],
            env=_subprocess_env(None, device),
            capture_output=True,
            text=True,
            cwd=REPO,
        )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"open_clip_train failed:\n{output[-3000:]}")
    batch = int(argv[argv.index("--batch-size") + 1])
    seconds, steps, steady_seconds, steady_steps, waited = 0.0, 0, 0.0, 0, 0.0
    for m in _STEP.finditer(output):
        if int(m[1]) == 0:
            continue
        step_seconds = batch / float(m[5])
        seconds += step_seconds
        steps += 1
        done, total = int(m[2]), int(m[3])
        if batch < done < total:  # not the epoch's first (buffer fill) or last step
            steady_seconds += step_seconds
            steady_steps += 1
            waited += float(m[4])  # logged every step: the meter holds this step only
    if not steps or not steady_steps:
        raise SystemExit(f"no steps logged after epoch 0:\n{output[-3000:]}")
    steady_rate = steady_steps * batch / steady_seconds
    return steps * batch / seconds, steady_rate, waited / steady_seconds, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="treeoflife-tiny")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--copies", type=int, default=12, help="times the sample shards repeat")
    parser.add_argument("--image-size", type=int, default=0, help="shard image size (0: sample's)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-train-"))
    shards = build_shards(work, args.copies, args.image_size)
    cfg = TrainConfig(
        model=args.model,
        batch_size=args.batch_size,
        epochs=args.epochs,
        lr=1e-3,
        warmup=10,
        precision=args.precision,
        workers=args.workers,
        log_every_n_steps=1,
    )
    ours = build_train_argv(cfg, shards, work / "logs", "ours", device=args.device)
    ours = [a for a in ours if a not in ("--resume", "latest")]  # fresh runs only
    synthetic = [*ours]
    i = synthetic.index("--train-data")
    del synthetic[i : i + 2]
    synthetic[synthetic.index("webdataset")] = "synthetic"
    n_samples = ours[ours.index("--train-num-samples") + 1]

    start_load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rates: dict[str, list[float]] = {"ours": [], "synthetic": []}
    steady: dict[str, list[float]] = {"ours": [], "synthetic": []}
    wait: dict[str, list[float]] = {"ours": [], "synthetic": []}
    steps: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, argv in (("ours", ours), ("synthetic", synthetic)):
            rate, steady_rate, data_share, n = run(argv, args.device)
            rates[name].append(rate)
            steady[name].append(steady_rate)
            wait[name].append(data_share)
            steps[name] = n
    load = os.getloadavg()
    print(
        f"model {args.model}  batch {args.batch_size}  workers {args.workers}  "
        f"precision {args.precision}  device {args.device}"
    )
    print(f"shards: {shards} ({n_samples} samples, {len(list(shards.glob('*.tar')))} shards)")
    print(f"epochs {args.epochs} (epoch 0 excluded), {args.repeats} alternating repeats")
    for label, table in (("all steps", rates), ("steady steps", steady)):
        print(f"{label}:")
        for name in ("ours", "synthetic"):
            runs = ", ".join(f"{r:.1f}" for r in table[name])
            print(
                f"  {name:10s} {statistics.median(table[name]):8.1f} samples/s  "
                f"(runs: {runs}; {steps[name]} steps each)"
            )
        ratio = statistics.median(table["ours"]) / statistics.median(table["synthetic"])
        print(f"  ratio ours/synthetic: {ratio:.3f}  (target >= 0.9)")
    for name in ("ours", "synthetic"):
        share = statistics.median(wait[name])
        print(f"steady step time waiting for data, {name}: {100 * share:.1f}%")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"load average at start {start_load}, at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"date: {when}")
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
