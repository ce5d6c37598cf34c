"""open_clip's step lines, read as they stream, turned into what a terminal should show while
a run trains: epoch, step, loss, samples/s and the time left.

open_clip_train logs a line every `--log-every-n-steps` steps and at the end of each epoch
(open_clip_train/train.py):

    Train Epoch: 0 [ 32/384 (8%)] Data (t): 0.279 Batch (t): 0.658, 48.6113/s, 48.6113/s/gpu
    LR: 0.000100 Logit Scale: 14.286 Contrastive_loss: 3.7946 (3.7946) Loss: 3.7946 (3.7946)

(one line). `train_clip` logs each step it reads as one line on the `treeoflife.train.steps`
logger; the CLI shows that logger on the terminal. The time left assumes the current
samples/s for the rest of the run (validation and checkpoint saves not counted).
"""

from __future__ import annotations

import datetime
import logging
import math
import re
from dataclasses import dataclass

STEP_LOG = logging.getLogger("treeoflife.train.steps")

_NUMBER = r"[0-9][0-9.]*(?:[eE][+-]?[0-9]+)?"
_STEP = re.compile(
    rf"Train Epoch: (?P<epoch>\d+) \[\s*(?P<samples>\d+)/(?P<per_epoch>\d+) \(\d+%\)\]"
    rf".*?Batch \(t\): [^,]*, (?P<rate>{_NUMBER})/s,"
    rf".* Loss: (?P<loss>{_NUMBER}) \((?P<avg>{_NUMBER})\)"
)


@dataclass(frozen=True)
class TrainStep:
    epoch: int  # 0-based, as open_clip counts
    samples: int  # seen so far in this epoch (all processes)
    samples_per_epoch: int
    loss: float  # at this step
    loss_avg: float  # over the steps logged since the epoch started
    samples_per_second: float  # all processes


def parse_train_step(line: str) -> TrainStep | None:
    """The step an open_clip log line reports, or None for any other line."""
    match = _STEP.search(line)
    if match is None:
        return None
    return TrainStep(
        epoch=int(match["epoch"]),
        samples=int(match["samples"]),
        samples_per_epoch=int(match["per_epoch"]),
        loss=float(match["loss"]),
        loss_avg=float(match["avg"]),
        samples_per_second=float(match["rate"]),
    )


def seconds_left(step: TrainStep, epochs: int) -> float | None:
    """Seconds until `epochs` epochs are done at the step's speed (None: no speed yet)."""
    if step.samples_per_second <= 0:
        return None
    left = max(epochs - step.epoch - 1, 0) * step.samples_per_epoch
    left += max(step.samples_per_epoch - step.samples, 0)
    return left / step.samples_per_second


def describe_step(step: TrainStep, epochs: int, global_batch: int) -> str:
    """One line: `epoch 1/10  step 3/12  loss 3.7946 (avg 3.8012)  48.6 samples/s  ETA 0:01:17`.

    `global_batch` is the samples of one step over every process (batch x accum x processes).
    """
    global_batch = max(global_batch, 1)
    per_epoch = math.ceil(step.samples_per_epoch / global_batch)
    step_no = min(math.ceil(step.samples / global_batch), per_epoch)
    left = seconds_left(step, epochs)
    eta = "?" if left is None else str(datetime.timedelta(seconds=round(left)))
    return (
        f"epoch {step.epoch + 1}/{epochs}  step {step_no}/{per_epoch}  "
        f"loss {step.loss:.4f} (avg {step.loss_avg:.4f})  "
        f"{step.samples_per_second:.1f} samples/s  ETA {eta}"
    )
