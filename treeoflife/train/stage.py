"""The train stage: stock open_clip_train on the release's train shards, then the exported
`local-dir:` model with its card. Kept out of the build's stage table (it needs a GPU and
torch); the CLI and the `train` flow call it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from treeoflife.config import BuildConfig
from treeoflife.errors import ConfigError, InputError
from treeoflife.layout import Layout
from treeoflife.progress import Progress
from treeoflife.train.card import write_model_card
from treeoflife.train.export import export_model
from treeoflife.train.run import checkpoint_epochs, read_shard_set, train_clip


def run_dir(cfg: BuildConfig, name: str = "run") -> Path:
    """`<train.output>/<name>`: open_clip's logs and checkpoints, and the exported model."""
    return cfg.path(cfg.train.output) / name


def export_dir(cfg: BuildConfig, name: str = "run") -> Path:
    return run_dir(cfg, name) / cfg.train.export


def run_train(cfg: BuildConfig, name: str = "run", progress: Progress | None = None) -> dict:
    """Train with stock open_clip_train on the release's train shards (resumes when interrupted),
    then export the last checkpoint as a `local-dir:` model folder with a model card."""
    layout = Layout(cfg.root)
    shards = layout.shards_dir("train")
    if not (shards / "sizes.json").exists():
        raise InputError(f"no training shards at {shards}: run the build first")
    if cfg.train.text_type is not None and cfg.train.text_type != cfg.shards.text_type:
        raise ConfigError(
            f"train.text_type is {cfg.train.text_type!r} but the shards' txt holds "
            f"{cfg.shards.text_type!r}: stock open_clip trains on txt only; set "
            "shards.text_type and rebuild the release"
        )
    result = train_clip(
        cfg.train,
        shards,
        cfg.path(cfg.train.output),
        name=name,
        progress=progress,
    )
    shard_set = read_shard_set(shards)
    exported = export_model(result.checkpoint, cfg.train.model, export_dir(cfg, name))
    data = {
        "shards": str(shards),
        "shard_files": len(shard_set.files),
        "num_samples": shard_set.num_samples,
        "text_type": cfg.shards.text_type,
        "image_size": cfg.shards.image_size,
        "checkpoint": result.checkpoint.name,
    }
    write_model_card(exported, cfg.train, data)
    out = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(result).items()}
    return {**out, "export": str(exported), "model": f"local-dir:{exported}"}


def latest_checkpoint(cfg: BuildConfig, name: str = "run") -> Path | None:
    """The newest complete checkpoint of a run (a save cut short by a kill is set aside)."""
    epochs = checkpoint_epochs(run_dir(cfg, name) / "checkpoints")
    return epochs[max(epochs)] if epochs else None
