"""Flow `evaluate`: zero-shot accuracy of a checkpoint on every packaged evaluation set."""

from __future__ import annotations

from prefect import flow, task

from flows._common import load
from treeoflife import pipeline


@task(name="zero-shot")
def zero_shot(config_path: str, data_root: str | None, checkpoint: str | None, name: str) -> dict:
    return pipeline.stage_evaluate(load(config_path, data_root), checkpoint, name=name)


@flow(name="evaluate")
def evaluate(
    config_path: str = "configs/sample.yaml",
    data_root: str | None = None,
    checkpoint: str | None = None,
    name: str = "run",
) -> dict:
    return zero_shot(config_path, data_root, checkpoint, name)
