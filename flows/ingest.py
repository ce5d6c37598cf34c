"""Flow `ingest`: the three sources, one task each (each resumes by part)."""

from __future__ import annotations

from prefect import flow, task

from flows._common import LogProgress, load
from treeoflife import pipeline, schemas


@task(name="sample-world")
def make_sample(config_path: str, data_root: str | None) -> dict:
    return pipeline.stage_sample(load(config_path, data_root), LogProgress())


@task(name="ingest-source")
def ingest_source(config_path: str, data_root: str | None, source: str) -> dict:
    return pipeline.stage_ingest(load(config_path, data_root), source, LogProgress())


@flow(name="ingest")
def ingest(config_path: str = "configs/sample.yaml", data_root: str | None = None) -> dict:
    make_sample(config_path, data_root)
    futures = {s: ingest_source.submit(config_path, data_root, s) for s in schemas.SOURCES}
    return {s: f.result() for s, f in futures.items()}
