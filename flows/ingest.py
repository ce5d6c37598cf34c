"""Flow `ingest`: the three sources, one task each (each resumes by part); EOL's download parts
run as tasks on the task runner `execution` names (threads or Dask)."""

from __future__ import annotations

from prefect import flow, task

from flows._common import LogProgress, load, part_mapper
from treeoflife import pipeline, schemas
from treeoflife.runner import StageResult


@task(name="sample-world")
def make_sample(config_path: str, data_root: str | None) -> StageResult:
    return pipeline.run("sample", load(config_path, data_root), LogProgress())


@task(name="ingest-source")
def ingest_source(config_path: str, data_root: str | None, source: str) -> StageResult:
    cfg = load(config_path, data_root)
    with part_mapper(cfg) as map_parts:  # EOL's download parts on the configured runner
        return pipeline.run(f"ingest-{source}", cfg, LogProgress(), map_parts)


@flow(name="ingest")
def ingest(
    config_path: str = "configs/sample.yaml", data_root: str | None = None
) -> dict[str, StageResult]:
    make_sample(config_path, data_root)
    futures = {s: ingest_source.submit(config_path, data_root, s) for s in schemas.SOURCES}
    return {s: f.result() for s, f in futures.items()}
