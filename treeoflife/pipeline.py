"""The build's stage table: each stage's name, what it reads, what it writes, what it depends on
and the function (in its own package) that runs it.

The CLI and the Prefect flows both run stages through `run` / `build`; treeoflife.runner decides
whether a stage is up to date (fingerprint + intact recorded outputs), sweeps, repairs and
records. Stages' own parts or shards are the finer unit of resume inside a stage. Training and
evaluation are not build stages (treeoflife.train.stage, treeoflife.evaluation.stage).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from treeoflife import schemas
from treeoflife.config import BuildConfig
from treeoflife.dedup.phash import PHASH_ALGO
from treeoflife.dedup.stage import hash_evalsets, hash_training_images, run_dedup
from treeoflife.evalsets.layouts import metadata_file
from treeoflife.evalsets.sets import evalset_input_files
from treeoflife.fanout import PartMapper
from treeoflife.layout import Layout
from treeoflife.progress import Progress
from treeoflife.release.stage import run_release, shard_output_settings
from treeoflife.runner import Stage, StageContext, StageResult, output_problems, run_stage
from treeoflife.sample import generate_sample
from treeoflife.sample.published import write_published_world
from treeoflife.sources.catalogs import (
    ingest_source,
    remove_damaged_parts,
    source_configured,
    source_inputs,
    source_settings,
)
from treeoflife.sources.eol import transient_reruns_pending
from treeoflife.taxonomy.stage import run_taxonomy
from treeoflife.vocabulary import Source

INGESTS = tuple(f"ingest-{s}" for s in schemas.SOURCES)


# --------------------------------------------------------------------------- what stages read


def evalset_files(cfg: BuildConfig) -> list[Path]:
    """Every evaluation set's list file and every image it points at."""
    return [f for es in cfg.evalsets for f in evalset_input_files(es, cfg)]


def evalset_lists(cfg: BuildConfig) -> list[Path]:
    """What an evaluation set's rows come from: its list file, or its images where the folder
    tree is the list (the `folder` layout)."""
    out: list[Path] = []
    for es in cfg.evalsets:
        listing = metadata_file(es.layout, cfg.path(es.metadata))
        out += [listing] if listing is not None else evalset_input_files(es, cfg)
    return out


def _evalset_settings(cfg: BuildConfig) -> list[dict]:
    return [dataclasses.asdict(e) for e in cfg.evalsets]


# --------------------------------------------------------------------------- the stages


def _sample(cfg: BuildConfig, ctx: StageContext) -> dict:
    seed = int(cfg.sample.get("seed", 0))
    result = generate_sample(Layout(cfg.root).sample_dir, seed=seed, progress=ctx.progress)
    if cfg.sample.get("published"):  # the same world in TreeOfLife-10M's published layout
        result["published"] = write_published_world(Layout(cfg.root).sample_dir)["totals"]
    return result


def _no_rerun(cfg: BuildConfig) -> bool:
    return False


def _eol_rerun(cfg: BuildConfig) -> bool:
    """Rows that failed transiently are fetched again (sources/rerun.py)."""
    return transient_reruns_pending(cfg) > 0


def _ingest(source: str) -> Stage:
    def outputs(cfg: BuildConfig) -> list[Path]:
        return [Layout(cfg.root).catalog_dir(source), Layout(cfg.root).images_dir(source)]

    return Stage(
        f"ingest-{source}",
        run=lambda cfg, ctx: ingest_source(cfg, source, ctx.progress, ctx.map_parts),
        outputs=outputs,
        inputs=lambda cfg: source_inputs(cfg, source),
        settings=lambda cfg: source_settings(cfg, source),
        skip=lambda cfg: None if source_configured(cfg, source) else "not configured",
        rerun=_eol_rerun if source == Source.EOL else _no_rerun,
        repair=lambda cfg, damaged: remove_damaged_parts(cfg, source, damaged),
    )


def _taxonomy_inputs(cfg: BuildConfig) -> list[Path | None]:
    tc = cfg.taxonomy
    return [cfg.path(tc.backbone), cfg.path(tc.itis_sqlite), *evalset_lists(cfg)]


def _taxonomy_outputs(cfg: BuildConfig) -> list[Path]:
    return [Layout(cfg.root).taxa, Layout(cfg.root).taxonomy_dir / "report.json"]


def _hash_outputs(cfg: BuildConfig) -> list[Path]:
    layout = Layout(cfg.root)
    return [p for s in schemas.SOURCES for p in (layout.hashes(s), layout.hashes_dir / s)]


def _hashes(cfg: BuildConfig, ctx: StageContext) -> dict:
    # each part is keyed by the catalog bytes it hashed (dedup/hashing.py): only the algorithm
    # discards them all
    return hash_training_images(cfg, PHASH_ALGO, ctx.progress, ctx.map_parts)


def _release_settings(cfg: BuildConfig) -> list:
    return [
        cfg.section_dict("splits"),
        shard_output_settings(cfg),
        {"evaluate.text_type": cfg.evaluate.text_type},  # class names of the eval sets
        _evalset_settings(cfg),
        *([cfg.section_dict("published")] if cfg.published.configured else []),
    ]


TABLE: dict[str, Stage] = {
    s.name: s
    for s in [
        Stage(
            "sample",
            run=_sample,
            outputs=lambda cfg: [Layout(cfg.root).sample_dir / ".complete"],
            settings=lambda cfg: cfg.sample,
            skip=lambda cfg: None if cfg.sample else "no sample section in the config",
        ),
        *(_ingest(s) for s in schemas.SOURCES),
        Stage(
            "taxonomy",
            run=lambda cfg, ctx: run_taxonomy(cfg, ctx.progress),
            outputs=_taxonomy_outputs,
            inputs=_taxonomy_inputs,
            settings=lambda cfg: [cfg.section_dict("taxonomy"), _evalset_settings(cfg)],
            depends=INGESTS,
        ),
        Stage(
            "hashes",  # md5 + pHash of every ingested image, by catalog part
            run=_hashes,
            outputs=_hash_outputs,
            settings=lambda cfg: PHASH_ALGO,  # a new algorithm rehashes all
            depends=INGESTS,
        ),
        Stage(
            "evalset-hashes",  # md5 + pHash of every evaluation image
            run=lambda cfg, ctx: hash_evalsets(cfg),
            outputs=lambda cfg: [Layout(cfg.root).hashes_dir / "evalsets"],
            inputs=evalset_files,
            settings=lambda cfg: [PHASH_ALGO, _evalset_settings(cfg)],
        ),
        Stage(
            "dedup",
            run=lambda cfg, ctx: run_dedup(cfg, ctx.progress),
            outputs=lambda cfg: [Layout(cfg.root).dedup_dir],
            inputs=evalset_files,  # lists (held-out species) and images (the near-pair sheet)
            settings=lambda cfg: [cfg.section_dict("dedup"), _evalset_settings(cfg)],
            depends=(*INGESTS, "taxonomy", "hashes", "evalset-hashes"),
        ),
        Stage(
            "release",
            run=lambda cfg, ctx: run_release(cfg, ctx.progress, ctx.map_parts),
            outputs=lambda cfg: [Layout(cfg.root).release_dir],
            inputs=evalset_files,  # packaged in wds layout
            settings=_release_settings,
            depends=(*INGESTS, "taxonomy", "hashes", "evalset-hashes", "dedup"),
        ),
    ]
}

# What `treeoflife build --stage` names, each a group of the table's stages, in build order.
GROUPS: dict[str, tuple[str, ...]] = {
    "sample": ("sample",),
    "ingest": INGESTS,
    "taxonomy": ("taxonomy",),
    "hashes": ("hashes", "evalset-hashes"),
    "dedup": ("dedup",),
    "release": ("release",),
}
STAGES = tuple(GROUPS)


def run(
    name: str,
    cfg: BuildConfig,
    progress: Progress | None = None,
    map_parts: PartMapper | None = None,
) -> StageResult:
    """Run one stage of the table (skipped when up to date and intact)."""
    return run_stage(TABLE[name], cfg, progress, map_parts)


def build(cfg: BuildConfig, progress: Progress | None = None, stages=STAGES) -> dict:
    """Run the stages of the named groups in order; each skips itself when already done.
    Returns {stage name: StageResult}."""
    return {
        name: run(name, cfg, progress)
        for group in STAGES
        if group in stages
        for name in GROUPS[group]
    }


def damaged_outputs(cfg: BuildConfig) -> dict[str, list[str]]:
    """{stage: its recorded output files that are missing or changed} (for `verify`; the
    sample's files are the build's inputs, not checked)."""
    return output_problems([s for s in TABLE.values() if s.name != "sample"], cfg)
