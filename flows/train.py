"""Flow `train`: stock open_clip_train on the release shards (resumes from the last checkpoint)."""

from __future__ import annotations

from prefect import flow, task

from flows._common import load
from treeoflife import pipeline


@task(name="open-clip-train")
def run_training(config_path: str, data_root: str | None, name: str) -> dict:
    return pipeline.stage_train(load(config_path, data_root), name=name)


@flow(name="train")
def train(
    config_path: str = "configs/sample.yaml", data_root: str | None = None, name: str = "run"
) -> dict:
    return run_training(config_path, data_root, name)
