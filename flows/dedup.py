"""Flow `dedup`: hash every image, then remove evaluation copies and held-out species."""

from __future__ import annotations

from prefect import flow, task

from flows._common import LogProgress, load, part_mapper
from treeoflife import pipeline
from treeoflife.runner import StageResult


@task(name="hash-images")
def hash_images(config_path: str, data_root: str | None) -> StageResult:
    cfg = load(config_path, data_root)
    with part_mapper(cfg) as map_parts:  # one task per catalog part, threads or Dask
        return pipeline.run("hashes", cfg, LogProgress(), map_parts)


@task(name="hash-evaluation-images")
def hash_evaluation_images(config_path: str, data_root: str | None) -> StageResult:
    return pipeline.run("evalset-hashes", load(config_path, data_root), LogProgress())


@task(name="find-removals")
def find_removals(config_path: str, data_root: str | None) -> StageResult:
    return pipeline.run("dedup", load(config_path, data_root), LogProgress())


@flow(name="dedup")
def dedup(config_path: str = "configs/sample.yaml", data_root: str | None = None) -> dict:
    hashed = hash_images(config_path, data_root)
    evaluation = hash_evaluation_images(config_path, data_root)
    removals = find_removals(config_path, data_root)
    return {"hashes": hashed, "evalset-hashes": evaluation, "removals": removals}
