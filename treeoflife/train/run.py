"""Run stock open_clip_train on our webdataset shards, locally or under torchrun.

Local (CPU or one GPU), resumable, what the flows call:

    result = train_clip(cfg.train, release / "shards" / "train", models_dir, name="bioclip")
    result.checkpoint  # <models_dir>/bioclip/checkpoints/epoch_N.pt

GPU nodes: `torchrun_command(...)` returns the command line, e.g.

    torchrun --standalone --nproc_per_node=8 -m treeoflife.train.launch \
        --train-data /data/release/shards/train/shard-{000000..000999}.tar \
        --train-num-samples 9500000 --dataset-type webdataset --model ViT-B-16 ... \
        --local-loss --gather-with-grad

`--batch-size` is per process (open_clip's convention). For several nodes replace
`--standalone` with `--nnodes`/`--rdzv-backend`/`--rdzv-endpoint` as torchrun documents.

Resume: every run passes `--resume latest --save-frequency 1`, so open_clip picks up the newest
`checkpoints/epoch_N.pt` of the run folder. open_clip writes checkpoints straight under their
final name; a checkpoint cut short by a kill is recognised (its zip directory is missing) and
renamed to `epoch_N.pt.incomplete` before a rerun, so the rerun resumes from the last good one.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from treeoflife.config import TrainConfig
from treeoflife.errors import InputError, TreeOfLifeError
from treeoflife.procs import die_with_parent_preexec
from treeoflife.progress import Progress, or_null
from treeoflife.train.steps import STEP_LOG, describe_step, parse_train_step

log = logging.getLogger(__name__)

LAUNCH_MODULE = "treeoflife.train.launch"
LOG_TAIL_LINES = 60
_CHECKPOINT_NAME = re.compile(r"^epoch_(\d+)\.pt$")
_START_EPOCH = re.compile(r"Start epoch (\d+)")
_SHARD_NAME = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)\.tar$")
# open_clip's autocast/GradScaler with float16 is a CUDA feature; on CPU it is slow or fails.
_CUDA_ONLY_PRECISIONS = {"amp", "fp16", "pure_fp16"}


class TrainError(TreeOfLifeError):
    """open_clip_train failed; the message ends with the tail of its log."""


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path  # checkpoints/epoch_<epochs>.pt (or the latest one)
    epochs_done: int  # highest epoch with a complete checkpoint
    started_from_epoch: int  # epochs already done before this call
    trained: bool  # False when every epoch was already checkpointed
    run_dir: Path  # <out_dir>/<name>: out.log, params.txt, checkpoints/, train.log
    log_path: Path  # train.log: open_clip's stdout+stderr, appended per launch


@dataclass(frozen=True)
class ShardSet:
    """The shard files of one split folder and their sample counts (from sizes.json)."""

    pattern: str  # brace pattern (or '::'-joined list) open_clip/webdataset expands
    files: tuple[Path, ...]
    num_samples: int


def read_shard_set(shard_dir: Path) -> ShardSet:
    """The `*.tar` shards of a split folder, checked against its `sizes.json`."""
    shard_dir = Path(shard_dir).resolve()
    if not shard_dir.is_dir():
        raise InputError(f"shard folder {shard_dir} does not exist")
    files = sorted(p for p in shard_dir.glob("*.tar") if not p.name.startswith("."))
    if not files:
        raise InputError(f"no .tar shards in {shard_dir}")
    sizes_path = shard_dir / "sizes.json"
    try:
        sizes = json.loads(sizes_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {sizes_path}: {exc}") from exc
    names = {p.name for p in files}
    unlisted = sorted(names - set(sizes))
    missing = sorted(set(sizes) - names)
    if unlisted or missing:
        raise InputError(
            f"{sizes_path} does not match the shards on disk: "
            f"not in sizes.json {unlisted[:5]}, listed but missing {missing[:5]}"
        )
    num_samples = sum(int(sizes[p.name]) for p in files)
    if num_samples <= 0:
        raise InputError(f"{sizes_path} counts no samples")
    return ShardSet(pattern=shard_pattern(files), files=tuple(files), num_samples=num_samples)


def shard_pattern(files: list[Path] | tuple[Path, ...]) -> str:
    """`dir/shard-{000000..000003}.tar` for contiguous numbered shards, else a '::' list."""
    files = sorted(files)
    if len(files) == 1:
        return str(files[0])
    matches = [_SHARD_NAME.match(p.name) for p in files]
    if all(matches) and len({p.parent for p in files}) == 1:
        prefixes = {m["prefix"] for m in matches}
        widths = {len(m["number"]) for m in matches}
        numbers = [int(m["number"]) for m in matches]
        contiguous = numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        if len(prefixes) == 1 and len(widths) == 1 and contiguous:
            first, last = matches[0]["number"], matches[-1]["number"]
            prefix = prefixes.pop()
            if "{" not in prefix and "}" not in prefix and "::" not in str(files[0].parent):
                return str(files[0].parent / f"{prefix}{{{first}..{last}}}.tar")
    return "::".join(str(p) for p in files)


def _precision_for(precision: str, device: str) -> str:
    if device.startswith("cpu") and precision in _CUDA_ONLY_PRECISIONS:
        log.warning("precision %s needs CUDA; training on %s in fp32", precision, device)
        return "fp32"
    return precision


def _argv(
    train: TrainConfig,
    shards: ShardSet,
    logs_dir: Path,
    name: str,
    val_shards: Path | None,
    device: str,
    workers: int,
) -> list[str]:
    argv = [
        "--train-data", shards.pattern,
        "--train-num-samples", str(shards.num_samples),
        "--dataset-type", "webdataset",
        "--model", train.model,
    ]  # fmt: skip
    if train.pretrained:
        argv += ["--pretrained", train.pretrained]
    argv += [
        "--batch-size", str(train.batch_size),
        "--epochs", str(train.epochs),
        "--lr", str(train.lr),
        "--warmup", str(train.warmup),
        "--wd", str(train.wd),
        "--precision", _precision_for(train.precision, device),
        "--workers", str(workers),
        "--seed", str(train.seed),
        "--logs", str(Path(logs_dir).resolve()),
        "--name", name,
        "--save-frequency", "1",
        "--resume", "latest",
        "--report-to", train.report_to,
        "--log-every-n-steps", str(train.log_every_n_steps),
        "--device", device,
    ]  # fmt: skip
    if train.accum_freq != 1:
        argv += ["--accum-freq", str(train.accum_freq)]
    if train.grad_checkpointing:
        argv += ["--grad-checkpointing"]
    if train.lock_image:
        argv += ["--lock-image"]
        if train.lock_image_unlocked_groups:
            argv += ["--lock-image-unlocked-groups", str(train.lock_image_unlocked_groups)]
    if train.lock_text:
        argv += ["--lock-text"]
        if train.lock_text_unlocked_layers:
            argv += ["--lock-text-unlocked-layers", str(train.lock_text_unlocked_layers)]
    if val_shards is not None:
        val = read_shard_set(val_shards)
        argv += [
            "--val-data", val.pattern,
            "--val-num-samples", str(val.num_samples),
            "--val-frequency", "1",
        ]  # fmt: skip
    return argv


def build_train_argv(
    train: TrainConfig,
    train_shards: Path,
    logs_dir: Path,
    name: str,
    val_shards: Path | None = None,
    device: str = "cpu",
) -> list[str]:
    """open_clip_train arguments for one run; checkpoints go to `<logs_dir>/<name>/checkpoints`.

    Dataloader workers are capped at the number of shards (open_clip asserts it).
    """
    shards = read_shard_set(train_shards)
    workers = min(train.workers, len(shards.files))
    if workers < train.workers:
        log.info("using %d dataloader workers: only %d shards", workers, len(shards.files))
    return _argv(train, shards, logs_dir, name, val_shards, device, workers)


def torchrun_command(
    train: TrainConfig,
    train_shards: Path,
    logs_dir: Path,
    name: str = "run",
    val_shards: Path | None = None,
    nproc_per_node: int = 1,
    device: str = "cuda",
) -> list[str]:
    """The torchrun command line of a single-node multi-GPU run (see the module docstring)."""
    if nproc_per_node < 1:
        raise ValueError("nproc_per_node must be >= 1")
    shards = read_shard_set(train_shards)
    if len(shards.files) < nproc_per_node:
        raise InputError(
            f"{len(shards.files)} shards cannot feed {nproc_per_node} processes: "
            "write smaller shards"
        )
    workers = min(train.workers, len(shards.files) // nproc_per_node)
    argv = _argv(train, shards, logs_dir, name, val_shards, device, workers)
    if nproc_per_node > 1:
        argv += ["--local-loss", "--gather-with-grad"]
    return [
        "torchrun",
        "--standalone",
        f"--nproc_per_node={nproc_per_node}",
        "-m",
        LAUNCH_MODULE,
        *argv,
    ]


def launch_command(
    train: TrainConfig,
    train_shards: Path,
    logs_dir: Path,
    name: str,
    val_shards: Path | None = None,
    device: str = "cpu",
) -> list[str]:
    """The process `train_clip` starts: this interpreter running our launch module, under
    torchrun's entry point (`python -m torch.distributed.run`, no PATH lookup) when
    `train.nproc_per_node > 1`."""
    if train.nproc_per_node > 1:
        command = torchrun_command(
            train, train_shards, logs_dir, name, val_shards, train.nproc_per_node, device
        )
        return [sys.executable, "-m", "torch.distributed.run", *command[1:]]
    argv = build_train_argv(train, train_shards, logs_dir, name, val_shards, device)
    return [sys.executable, "-m", LAUNCH_MODULE, *argv]


def checkpoint_epochs(checkpoint_dir: Path) -> dict[int, Path]:
    """Complete `epoch_N.pt` checkpoints by epoch; incomplete ones are renamed aside."""
    checkpoint_dir = Path(checkpoint_dir)
    found: dict[int, Path] = {}
    if not checkpoint_dir.is_dir():
        return found
    for path in sorted(checkpoint_dir.iterdir()):
        match = _CHECKPOINT_NAME.match(path.name)
        if not match or not path.is_file():
            continue
        if _is_complete_checkpoint(path):
            found[int(match[1])] = path
        else:
            aside = path.with_name(path.name + ".incomplete")
            log.warning("checkpoint %s is incomplete (interrupted save); moved to %s", path, aside)
            os.replace(path, aside)
    return dict(sorted(found.items()))


def _is_complete_checkpoint(path: Path) -> bool:
    """torch.save writes a zip; a save cut short lacks the zip's central directory."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _subprocess_env(env: dict | None, device: str = "cpu") -> dict[str, str]:
    merged = dict(os.environ)
    merged["HF_HUB_OFFLINE"] = "1"  # checkpoints and tokenizers come from disk, never the hub
    if device.startswith("cpu"):
        # Small CPU models spend more on thread hand-offs than on maths, and on a shared
        # machine every extra thread waits for a core: one intra-op thread per process.
        # An OMP_NUM_THREADS already in the environment (or in `env`) wins.
        merged.setdefault("OMP_NUM_THREADS", "1")
    merged["PYTHONUNBUFFERED"] = "1"
    project_root = str(Path(__file__).resolve().parents[2])
    paths = [project_root, *[p for p in merged.get("PYTHONPATH", "").split(os.pathsep) if p]]
    merged["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    merged.update({str(k): str(v) for k, v in (env or {}).items()})
    return merged


def train_clip(
    train: TrainConfig,
    train_shards: Path,
    out_dir: Path,
    name: str = "run",
    val_shards: Path | None = None,
    env: dict | None = None,
    *,
    device: str | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train (or resume) `<out_dir>/<name>` to `train.epochs` epochs in an open_clip subprocess.

    A run whose epochs are all checkpointed returns at once. open_clip's output is appended
    to `<out_dir>/<name>/train.log` and logged here; each step it reports is logged as one line
    (epoch, step, loss, samples/s, time left) on `treeoflife.train.steps`; `progress` counts
    epochs. A failure raises `TrainError` with the log tail. `device` defaults to
    `train.device`, else cuda when available, else cpu; `train.nproc_per_node > 1` runs the
    same under torchrun (one node, N processes).
    """
    out_dir = Path(out_dir).resolve()
    run_dir = out_dir / name
    checkpoint_dir = run_dir / "checkpoints"
    log_path = run_dir / "train.log"
    done = checkpoint_epochs(checkpoint_dir)
    start_epoch = max(done, default=0)
    if start_epoch >= train.epochs:
        log.info("run %s already has %d epochs checkpointed; not training", run_dir, start_epoch)
        return TrainResult(
            checkpoint=done.get(train.epochs, done[start_epoch]),
            epochs_done=start_epoch,
            started_from_epoch=start_epoch,
            trained=False,
            run_dir=run_dir,
            log_path=log_path,
        )

    device = device or train.device or _default_device()
    command = launch_command(train, train_shards, out_dir, name, val_shards, device)
    run_dir.mkdir(parents=True, exist_ok=True)
    progress = or_null(progress)
    progress.start("train", train.epochs)
    progress.advance(start_epoch)
    log.info("training %s from epoch %d to %d on %s", run_dir, start_epoch, train.epochs, device)
    global_batch = train.batch_size * train.accum_freq * max(train.nproc_per_node, 1)

    def on_step(line: str) -> None:
        step = parse_train_step(line)
        if step is not None:
            STEP_LOG.info("%s", describe_step(step, train.epochs, global_batch))

    returncode, tail, reported = _run_streaming(
        command, _subprocess_env(env, device), log_path, progress, start_epoch, on_step
    )

    done = checkpoint_epochs(checkpoint_dir)
    epochs_done = max(done, default=0)
    if returncode != 0 or epochs_done < train.epochs:
        progress.finish()
        raise TrainError(
            f"open_clip_train exited with code {returncode} after {epochs_done}/{train.epochs} "
            f"epochs (log: {log_path}); last lines:\n" + "\n".join(tail)
        )
    progress.advance(train.epochs - reported)
    progress.finish()
    return TrainResult(
        checkpoint=done[train.epochs],
        epochs_done=epochs_done,
        started_from_epoch=start_epoch,
        trained=True,
        run_dir=run_dir,
        log_path=log_path,
    )


def _run_streaming(
    command: list[str],
    env: dict[str, str],
    log_path: Path,
    progress: Progress,
    start_epoch: int,
    on_line=None,
) -> tuple[int, list[str], int]:
    """Run `command`, append its output to `log_path` and the logger (and hand each line to
    `on_line`).

    Returns the exit code, the last lines and the last epoch reported to `progress`.
    """
    tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
    reported = start_epoch
    with open(log_path, "a", encoding="utf-8") as log_file:
        log_file.write(f"=== {' '.join(command)}\n")
        log_file.flush()
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            preexec_fn=die_with_parent_preexec,  # noqa: PLW1509 - dies with a killed build
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log_file.write(line)
                log_file.flush()
                line = line.rstrip("\n")
                tail.append(line)
                log.info("open_clip: %s", line)
                if on_line is not None:
                    on_line(line)
                started = _START_EPOCH.search(line)
                if started and int(started[1]) > reported:
                    progress.advance(int(started[1]) - reported)
                    reported = int(started[1])
            returncode = proc.wait()
        except BaseException:
            # The caller is going away (KeyboardInterrupt, a flow cancel): stop the child too,
            # its completed checkpoints stay for the resume.
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
    return returncode, list(tail), reported
