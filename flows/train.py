"""Flow `train`: stock open_clip_train on the release shards, then export a `local-dir:` model.

Resumes from the newest complete checkpoint when rerun after an interruption. On a cluster the
`train/gpu` deployment (deploy/prefect-gpu.yaml) runs it on a GPU work pool; with
`train.nproc_per_node > 1` the task launches torchrun on that node.
"""

from __future__ import annotations

from prefect import flow, task

from flows._common import LogProgress, load
from treeoflife.train.stage import run_train


@task(name="open-clip-train")
def run_training(config_path: str, data_root: str | None, name: str) -> dict:
    return run_train(load(config_path, data_root), name=name, progress=LogProgress())


@flow(name="train")
def train(
    config_path: str = "configs/sample.yaml", data_root: str | None = None, name: str = "run"
) -> dict:
    return run_training(config_path, data_root, name)


if __name__ == "__main__":
    train()
