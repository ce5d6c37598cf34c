"""The build's stages as plain functions: read tables from disk, call a stage, write tables.

The CLI and the Prefect flows both call these; neither holds logic of its own. Each stage skips
itself when its fingerprint (inputs, config, code version, upstream stages) is unchanged, and the
stages' own parts or shards are the finer unit of resume inside a stage.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from treeoflife import __version__, schemas
from treeoflife.config import BuildConfig
from treeoflife.dedup.phash import PHASH_ALGO
from treeoflife.dedup.stage import hash_evalsets, hash_training_images, run_dedup
from treeoflife.fanout import PartMapper
from treeoflife.io import remove_stale_temporaries
from treeoflife.layout import Layout
from treeoflife.progress import Progress
from treeoflife.release.stage import run_release, shard_output_settings
from treeoflife.resume import completed, fingerprint, fingerprint_paths, mark_done, read_marker
from treeoflife.sample import generate_sample
from treeoflife.sources.catalogs import ingest_source, source_configured, source_inputs
from treeoflife.sources.eol import transient_reruns_pending
from treeoflife.taxonomy.stage import run_taxonomy

log = logging.getLogger(__name__)

STAGES = ("sample", "ingest", "taxonomy", "hashes", "dedup", "release")


def _fp(cfg: BuildConfig, stage: str, *parts) -> str:
    return fingerprint(stage, __version__, *parts)


def _sweep(layout: Layout, *folders: Path) -> None:
    """Remove what a killed run left half-written in these folders and in the stage markers
    (files whose writer is still alive, e.g. a concurrent stage of this run, are kept)."""
    for folder in (*folders, layout.state_dir):
        remove_stale_temporaries(folder)


def _upstream(cfg: BuildConfig, *stages: str) -> list:
    state = Layout(cfg.root).state_dir
    return [(s, (read_marker(state, s) or {}).get("fingerprint")) for s in stages]


def stage_sample(cfg: BuildConfig, progress: Progress | None = None) -> dict:
    """Generate the bundled sample world when the config asks for it (sample.yaml does)."""
    if not cfg.sample:
        return {"skipped": "no sample section in the config"}
    seed = int(cfg.sample.get("seed", 0))
    marker = Layout(cfg.root).sample_dir / ".complete"
    before = marker.stat().st_mtime_ns if marker.exists() else None
    result = generate_sample(Layout(cfg.root).sample_dir, seed=seed, progress=progress)
    return {**result, "up_to_date": before == marker.stat().st_mtime_ns}


def stage_ingest(
    cfg: BuildConfig,
    source: str,
    progress: Progress | None = None,
    map_parts: PartMapper | None = None,
) -> dict:
    layout = Layout(cfg.root)
    stage = f"ingest-{source}"
    if not source_configured(cfg, source):
        return {"source": source, "rows": 0, "skipped": "not configured"}
    section = dataclasses.asdict(getattr(cfg.sources, source))
    fp = _fp(cfg, stage, section, fingerprint_paths(source_inputs(cfg, source)))
    done = completed(layout.state_dir, stage, fp, [layout.catalog_dir(source)])
    if done is not None and source == "eol" and transient_reruns_pending(cfg):
        done = None  # rows that failed transiently are fetched again (sources/rerun.py)
    if done is not None:
        log.info("%s: up to date, skipped", stage)
        return {**done, "up_to_date": True}
    _sweep(layout, layout.catalog_dir(source), layout.images_dir(source))
    result = ingest_source(cfg, source, progress, map_parts)
    mark_done(layout.state_dir, stage, fp, result)
    return {**result, "up_to_date": False}


def stage_taxonomy(cfg: BuildConfig, progress: Progress | None = None) -> dict:
    """Load the backbone into DuckDB and resolve every distinct query to seven ranks."""
    layout = Layout(cfg.root)
    ingests = [f"ingest-{s}" for s in schemas.SOURCES]
    evalset_files = [cfg.path(es.metadata) for es in cfg.evalsets]
    fp = _fp(
        cfg,
        "taxonomy",
        cfg.section_dict("taxonomy"),
        [dataclasses.asdict(e) for e in cfg.evalsets],
        fingerprint_paths(
            [cfg.path(cfg.taxonomy.backbone), cfg.path(cfg.taxonomy.itis_sqlite), *evalset_files]
        ),
        _upstream(cfg, *ingests),
    )
    done = completed(layout.state_dir, "taxonomy", fp, [layout.taxa])
    if done is not None:
        return {**done, "up_to_date": True}
    _sweep(layout, layout.taxonomy_dir)
    result = run_taxonomy(cfg, progress)
    mark_done(layout.state_dir, "taxonomy", fp, result)
    return {**result, "up_to_date": False}


def stage_hashes(
    cfg: BuildConfig, progress: Progress | None = None, map_parts: PartMapper | None = None
) -> dict:
    layout = Layout(cfg.root)
    fp = _fp(
        cfg,
        "hashes",
        PHASH_ALGO,
        [dataclasses.asdict(e) for e in cfg.evalsets],
        fingerprint_paths([cfg.path(e.metadata) for e in cfg.evalsets]),
        _upstream(cfg, *[f"ingest-{s}" for s in schemas.SOURCES]),
    )
    outputs = [layout.hashes(s) for s in schemas.SOURCES]
    outputs += [layout.evalset_hashes(e.name) for e in cfg.evalsets]
    done = completed(layout.state_dir, "hashes", fp, outputs)
    if done is not None:
        return {**done, "up_to_date": True}
    _sweep(layout, layout.hashes_dir)
    result = {**hash_training_images(cfg, fp, progress, map_parts), **hash_evalsets(cfg)}
    mark_done(layout.state_dir, "hashes", fp, result)
    return {**result, "up_to_date": False}


def stage_dedup(cfg: BuildConfig, progress: Progress | None = None) -> dict:
    layout = Layout(cfg.root)
    fp = _fp(
        cfg,
        "dedup",
        cfg.section_dict("dedup"),
        [dataclasses.asdict(e) for e in cfg.evalsets],
        _upstream(cfg, "hashes", "taxonomy"),
    )
    done = completed(layout.state_dir, "dedup", fp, [layout.removals])
    if done is not None:
        return {**done, "up_to_date": True}
    _sweep(layout, layout.dedup_dir)
    result = run_dedup(cfg, progress)
    mark_done(layout.state_dir, "dedup", fp, result)
    return {**result, "up_to_date": False}


def stage_release(
    cfg: BuildConfig, progress: Progress | None = None, map_parts: PartMapper | None = None
) -> dict:
    layout = Layout(cfg.root)
    fp = _fp(
        cfg,
        "release",
        cfg.section_dict("splits"),
        shard_output_settings(cfg),
        {"evaluate.text_type": cfg.evaluate.text_type},  # class names of the eval sets
        [dataclasses.asdict(e) for e in cfg.evalsets],
        _upstream(cfg, "taxonomy", "hashes", "dedup", *[f"ingest-{s}" for s in schemas.SOURCES]),
    )
    done = completed(layout.state_dir, "release", fp, [layout.catalog, layout.summary])
    if done is not None:
        return {**done, "up_to_date": True}
    _sweep(layout, layout.release_dir)
    summary = run_release(cfg, progress, map_parts)
    mark_done(layout.state_dir, "release", fp, summary)
    return {**summary, "up_to_date": False}


def build(cfg: BuildConfig, progress: Progress | None = None, stages=STAGES) -> dict:
    """Run every stage in order; each skips itself when already done."""
    results: dict = {}
    if "sample" in stages:
        results["sample"] = stage_sample(cfg, progress)
    if "ingest" in stages:
        for source in schemas.SOURCES:
            results[f"ingest-{source}"] = stage_ingest(cfg, source, progress)
    if "taxonomy" in stages:
        results["taxonomy"] = stage_taxonomy(cfg, progress)
    if "hashes" in stages:
        results["hashes"] = stage_hashes(cfg, progress)
    if "dedup" in stages:
        results["dedup"] = stage_dedup(cfg, progress)
    if "release" in stages:
        results["release"] = stage_release(cfg, progress)
    return results
