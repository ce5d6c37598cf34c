"""Flow `taxonomy`: load the backbone into DuckDB, resolve every distinct name."""

from __future__ import annotations

from prefect import flow, task

from flows._common import LogProgress, load
from treeoflife import pipeline
from treeoflife.runner import StageResult


@task(name="resolve-taxa")
def resolve(config_path: str, data_root: str | None) -> StageResult:
    return pipeline.run("taxonomy", load(config_path, data_root), LogProgress())


@flow(name="taxonomy")
def taxonomy(config_path: str = "configs/sample.yaml", data_root: str | None = None) -> StageResult:
    return resolve(config_path, data_root)
