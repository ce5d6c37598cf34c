"""Flow `taxonomy`: load the backbone into DuckDB, resolve every distinct name."""

from __future__ import annotations

from prefect import flow, task

from flows._common import LogProgress, load
from treeoflife import pipeline


@task(name="resolve-taxa")
def resolve(config_path: str, data_root: str | None) -> dict:
    return pipeline.stage_taxonomy(load(config_path, data_root), LogProgress())


@flow(name="taxonomy")
def taxonomy(config_path: str = "configs/sample.yaml", data_root: str | None = None) -> dict:
    return resolve(config_path, data_root)
