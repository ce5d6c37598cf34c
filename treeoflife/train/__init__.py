"""Train BioCLIP-style CLIP models on our shards with stock open_clip_train.

`build_train_argv` turns a `TrainConfig` and a shard folder into open_clip_train arguments,
`train_clip` runs them in a subprocess (resumable: a rerun continues from the latest
checkpoint), `torchrun_command` gives the multi-GPU command line for the same run, and
`export_model` writes a checkpoint as an open_clip `local-dir:` model folder and
`write_model_card` its README.md (Hub model card, `library_name: open_clip`).
"""

from __future__ import annotations

from treeoflife.train.card import model_card, write_model_card
from treeoflife.train.export import export_model
from treeoflife.train.paths import model_configs_dir
from treeoflife.train.run import (
    TrainError,
    TrainResult,
    build_train_argv,
    checkpoint_epochs,
    read_shard_set,
    torchrun_command,
    train_clip,
)

__all__ = [
    "TrainError",
    "TrainResult",
    "build_train_argv",
    "checkpoint_epochs",
    "export_model",
    "model_card",
    "model_configs_dir",
    "read_shard_set",
    "torchrun_command",
    "train_clip",
    "write_model_card",
]
