"""Parent flow `tree-of-life`: the whole build, optionally followed by training and evaluation."""

from __future__ import annotations

from prefect import flow

from flows._common import load, shared_part_mapper
from flows.dedup import dedup
from flows.evaluate import evaluate
from flows.ingest import ingest
from flows.release import release
from flows.taxonomy import taxonomy
from flows.train import train


@flow(name="tree-of-life")
def tree_of_life(
    config_path: str = "configs/sample.yaml",
    data_root: str | None = None,
    with_training: bool = False,
) -> dict:
    # One task runner for the heavy stages' parts and shards (one Dask cluster, when the
    # config's `execution` asks for Dask), shared by the subflows run here.
    with shared_part_mapper(load(config_path, data_root)):
        results = {
            "ingest": ingest(config_path, data_root),
            "taxonomy": taxonomy(config_path, data_root),
            "dedup": dedup(config_path, data_root),
            "release": release(config_path, data_root),
        }
    if with_training:
        results["train"] = train(config_path, data_root)
        results["evaluate"] = evaluate(config_path, data_root)
    return results


if __name__ == "__main__":
    tree_of_life()
