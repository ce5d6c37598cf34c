"""Flow `release`: final catalog, shards per split, evaluation sets, dataset card."""

from __future__ import annotations

from prefect import flow, task

from flows._common import LogProgress, load, part_mapper
from treeoflife import pipeline
from treeoflife.runner import StageResult


@task(name="write-release")
def write_release(config_path: str, data_root: str | None) -> StageResult:
    cfg = load(config_path, data_root)
    with part_mapper(cfg) as map_parts:  # one task per shard (and encode chunk), threads or Dask
        return pipeline.run("release", cfg, LogProgress(), map_parts)


@flow(name="release")
def release(config_path: str = "configs/sample.yaml", data_root: str | None = None) -> StageResult:
    return write_release(config_path, data_root)
