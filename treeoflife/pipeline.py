"""The build's stages as plain functions: read tables from disk, call a stage, write tables.

The CLI and the Prefect flows both call these; neither holds logic of its own. Each stage skips
itself when its fingerprint (inputs, config, code version, upstream stages) is unchanged, and the
stages' own parts or shards are the finer unit of resume inside a stage.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from treeoflife import __version__, records, schemas
from treeoflife.config import BuildConfig, EvalSetConfig
from treeoflife.evalsets.labels import evalset_source, verbatim_ranks
from treeoflife.evalsets.package import evalset_classnames, package_evalsets
from treeoflife.evalsets.report import image_report
from treeoflife.evalsets.sets import evalset_root, read_evalset
from treeoflife.fanout import PartMapper
from treeoflife.io import remove_stale_temporaries, write_parquet_atomic, write_text_atomic
from treeoflife.layout import Layout
from treeoflife.progress import Progress, or_null
from treeoflife.resume import completed, fingerprint, fingerprint_paths, mark_done, read_marker
from treeoflife.shards.release import write_release_shards as release_shards
from treeoflife.shards.settings import ShardSettings
from treeoflife.storage import shared_storage

log = logging.getLogger(__name__)

STAGES = ("sample", "ingest", "taxonomy", "hashes", "dedup", "release")


def _fp(cfg: BuildConfig, stage: str, *parts) -> str:
    return fingerprint(stage, __version__, *parts)


def _sweep(layout: Layout, *folders: Path) -> None:
    """Remove what a killed run left half-written in these folders and in the stage markers
    (files whose writer is still alive, e.g. a concurrent stage of this run, are kept)."""
    for folder in (*folders, layout.state_dir):
        remove_stale_temporaries(folder)


def _push_image_stores(cfg: BuildConfig, shared, image_files) -> None:
    """Copy the image stores tasks will read to shared storage (what is there is kept)."""
    from treeoflife.storage import push_files

    rels = sorted({f for f in image_files if f is not None})
    root = cfg.root.resolve()
    copied = push_files(root, rels, shared, Layout(cfg.root).shared_ledger)
    log.info("shared storage %s: %d of %d image stores copied", shared.url(""), copied, len(rels))


def _upstream(cfg: BuildConfig, *stages: str) -> list:
    state = Layout(cfg.root).state_dir
    return [(s, (read_marker(state, s) or {}).get("fingerprint")) for s in stages]


# --------------------------------------------------------------------------- sample


def stage_sample(cfg: BuildConfig, progress: Progress | None = None) -> dict:
    """Generate the bundled sample world when the config asks for it (sample.yaml does)."""
    if not cfg.sample:
        return {"skipped": "no sample section in the config"}
    from treeoflife.sample import generate_sample

    seed = int(cfg.sample.get("seed", 0))
    marker = Layout(cfg.root).sample_dir / ".complete"
    before = marker.stat().st_mtime_ns if marker.exists() else None
    result = generate_sample(Layout(cfg.root).sample_dir, seed=seed, progress=progress)
    return {**result, "up_to_date": before == marker.stat().st_mtime_ns}


# --------------------------------------------------------------------------- ingest


def _source_inputs(cfg: BuildConfig, source: str) -> list[Path | None]:
    s = cfg.sources
    if source == "inat21":
        return [cfg.path(p) for a in s.inat21.archives for p in (a.images, a.annotations)]
    if source == "bioscan":
        from treeoflife.sources.bioscan import zip_paths  # glob patterns expanded

        return [cfg.path(s.bioscan.metadata), *zip_paths(cfg)]
    return (
        [cfg.path(m) for m in s.eol.manifests]
        + [cfg.path(s.eol.pages)]
        + [cfg.path(v) for v in s.eol.mirror.values() if "://" not in v]
    )


def source_configured(cfg: BuildConfig, source: str) -> bool:
    s = cfg.sources
    return bool(
        {"inat21": s.inat21.archives, "bioscan": s.bioscan.metadata, "eol": s.eol.manifests}[source]
    )


def stage_ingest(
    cfg: BuildConfig,
    source: str,
    progress: Progress | None = None,
    map_parts: PartMapper | None = None,
) -> dict:
    """Ingest one source into `catalog/<source>/` + `images/<source>/` (resumable by part).

    `map_parts` (treeoflife.fanout) runs EOL's download parts elsewhere (e.g. Dask workers);
    by default they run here. The outputs do not depend on it.
    """
    from treeoflife import sources as src

    layout = Layout(cfg.root)
    stage = f"ingest-{source}"
    if not source_configured(cfg, source):
        return {"source": source, "rows": 0, "skipped": "not configured"}
    section = dataclasses.asdict(getattr(cfg.sources, source))
    fp = _fp(cfg, stage, section, fingerprint_paths(_source_inputs(cfg, source)))
    done = completed(layout.state_dir, stage, fp, [layout.catalog_dir(source)])
    if done is not None and source == "eol" and src.eol.transient_reruns_pending(cfg):
        done = None  # rows that failed transiently are fetched again (sources/rerun.py)
    if done is not None:
        log.info("%s: up to date, skipped", stage)
        return {**done, "up_to_date": True}
    _sweep(layout, layout.catalog_dir(source), layout.images_dir(source))
    if source == "eol" and map_parts is not None:
        stats = src.ingest_eol(cfg, progress=progress, map_parts=map_parts).to_dict()
    else:
        fn = {"inat21": src.ingest_inat21, "bioscan": src.ingest_bioscan, "eol": src.ingest_eol}
        stats = fn[source](cfg, progress=progress).to_dict()
    result = {k: v for k, v in stats.items() if k not in ("parts_written", "parts_skipped")}
    mark_done(layout.state_dir, stage, fp, result)
    return {**stats, "up_to_date": False}


def read_source_catalog(cfg: BuildConfig, source: str) -> pa.Table:
    """All parts of one source's catalog, in part order."""
    parts = sorted(Layout(cfg.root).catalog_dir(source).glob("part-*[0-9].parquet"))
    if not parts:
        return schemas.SOURCE_CATALOG.empty_table()
    return pa.concat_tables([pq.read_table(p, schema=schemas.SOURCE_CATALOG) for p in parts])


def read_all_source_catalogs(cfg: BuildConfig) -> pa.Table:
    return pa.concat_tables([read_source_catalog(cfg, s) for s in schemas.SOURCES])


# --------------------------------------------------------------------------- taxonomy


def add_query_ids(table: pa.Table) -> pa.Table:
    """Append the `query_id` column (a pure function of source + verbatim ranks and name)."""
    cols = {c: table.column(c).to_pylist() for c in ["source", *records.VERBATIM_QUERY_FIELDS]}
    ids = [
        records.query_id(src, {f: cols[f][i] for f in records.VERBATIM_QUERY_FIELDS})
        for i, src in enumerate(cols["source"])
    ]
    return table.append_column("query_id", pa.array(ids, pa.string()))


def build_queries(cfg: BuildConfig, images: Counter | None = None) -> pa.Table:
    """One row per distinct taxonomy query over every source row and evaluation-set row
    (`taxonomy.queries.taxonomy_queries`). `images`, when given, is filled with the number of
    rows (images) behind each query_id."""
    from treeoflife.taxonomy import taxonomy_queries

    evalset_rows = (
        {"source": evalset_source(es.name), **verbatim_ranks(er)}
        for es in cfg.evalsets
        for er in read_evalset(es, cfg)
    )
    return taxonomy_queries(read_all_source_catalogs(cfg), evalset_rows, images)


def stage_taxonomy(cfg: BuildConfig, progress: Progress | None = None) -> dict:
    """Load the backbone into DuckDB and resolve every distinct query to seven ranks."""
    from treeoflife.taxonomy.stage import build_taxa

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
    images: Counter = Counter()
    queries = build_queries(cfg, images)
    result = build_taxa(cfg, layout, queries, progress, dict(images))
    mark_done(layout.state_dir, "taxonomy", fp, result)
    return {**result, "up_to_date": False}


# --------------------------------------------------------------------------- hashes


def stage_hashes(
    cfg: BuildConfig, progress: Progress | None = None, map_parts: PartMapper | None = None
) -> dict:
    """md5 + perceptual hash of every ingested image and every evaluation image.

    Resumable by catalog part (hashes/<source>/part-*.parquet, then hashes/<source>.parquet);
    the pHash algorithm's name is part of the fingerprint, so a new algorithm rehashes all.
    `map_parts` (treeoflife.fanout) runs the catalog parts elsewhere; by default, here.
    """
    from treeoflife.dedup import PHASH_ALGO, hash_catalog_parts, hash_evalset_rows

    layout = Layout(cfg.root)
    fp = _fp(
        cfg,
        "hashes",
        PHASH_ALGO,
        [dataclasses.asdict(e) for e in cfg.evalsets],
        fingerprint_paths([cfg.path(e.metadata) for e in cfg.evalsets]),
        fingerprint_paths([evalset_root(e, cfg) for e in cfg.evalsets]),  # an image replaced
        _upstream(cfg, *[f"ingest-{s}" for s in schemas.SOURCES]),
    )
    outputs = [layout.hashes(s) for s in schemas.SOURCES]
    outputs += [layout.evalset_hashes(e.name) for e in cfg.evalsets]
    done = completed(layout.state_dir, "hashes", fp, outputs)
    if done is not None:
        return {**done, "up_to_date": True}
    _sweep(layout, layout.hashes_dir)
    result: dict = {}
    shared = shared_storage(cfg) if map_parts is not None else None
    for source in schemas.SOURCES:
        path = layout.hashes(source)
        parts = sorted(layout.catalog_dir(source).glob("part-*[0-9].parquet"))
        if shared is not None and parts:
            stores = [pq.read_table(p, columns=["image_file"]).column(0) for p in parts]
            _push_image_stores(cfg, shared, pa.chunked_array(stores).unique().to_pylist())
        hashes = hash_catalog_parts(
            parts,
            layout.hashes_dir / source,
            cfg.root,
            PHASH_ALGO,  # each part is keyed by the catalog bytes it hashed
            workers=cfg.dedup.hash_workers,
            progress=progress,
            run_marker=layout.state_dir / f"hashes-{source}.run_id",
            map_parts=map_parts,
            shared=shared,
        )
        write_parquet_atomic(hashes, path)
        result[source] = hashes.num_rows
    for es in cfg.evalsets:
        cache = layout.state_dir / "evalset-hashes" / f"{es.name}.parquet"  # by size + mtime
        table = hash_evalset_rows(es.name, read_evalset(es, cfg), evalset_root(es, cfg), cache)
        write_parquet_atomic(table, layout.evalset_hashes(es.name))
        result[f"evalset/{es.name}"] = table.num_rows
    mark_done(layout.state_dir, "hashes", fp, result)
    return {**result, "up_to_date": False}


# --------------------------------------------------------------------------- dedup


def _resolved_training_taxa(cfg: BuildConfig) -> pa.Table:
    """key + resolved kingdom/genus/species of every ingested row."""
    catalog = add_query_ids(read_all_source_catalogs(cfg)).select(["key", "query_id"])
    taxa = pq.read_table(Layout(cfg.root).taxa).select(["query_id", "kingdom", "genus", "species"])
    return catalog.join(taxa, "query_id", join_type="left outer").select(
        ["key", "kingdom", "genus", "species"]
    )


def _held_out_taxa(cfg: BuildConfig, es: EvalSetConfig) -> pa.Table:
    """The resolved taxa of an evaluation set's species (resolved like training names)."""
    taxa = pq.read_table(Layout(cfg.root).taxa)
    src = evalset_source(es.name)
    ids = {records.query_id(src, verbatim_ranks(r)) for r in read_evalset(es, cfg)}
    mask = pc.is_in(taxa.column("query_id"), pa.array(sorted(ids), pa.string()))
    return taxa.filter(mask).select(["kingdom", "genus", "species", "verbatim_scientific_name"])


def _unresolved_held_out(held: pa.Table) -> list[str]:
    """Held-out names whose species did not resolve: they cannot be held out (reported)."""
    missing = pc.or_(
        pc.or_(pc.is_null(held["kingdom"]), pc.is_null(held["genus"])),
        pc.is_null(held["species"]),
    )
    names = held.filter(missing)["verbatim_scientific_name"].to_pylist()
    return sorted({n or "(no name)" for n in names})


def stage_dedup(cfg: BuildConfig, progress: Progress | None = None) -> dict:
    """Removal list: copies and near-copies of evaluation images, held-out species."""
    from treeoflife.dedup import (
        combine_removals,
        find_eval_duplicates,
        find_held_out_species,
        find_in_train_duplicates,
        removal_report,
    )
    from treeoflife.dedup.phash import PHASH_ALGO

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
    p = or_null(progress)
    p.start("dedup", None)
    train = pa.concat_tables([pq.read_table(layout.hashes(s)) for s in schemas.SOURCES])
    tables = [find_in_train_duplicates(train, cfg.dedup.in_train_phash_max_distance)]
    evals = [pq.read_table(layout.evalset_hashes(es.name)) for es in cfg.evalsets]
    if evals:
        ev = pa.concat_tables(evals)
        ev = ev.filter(pc.equal(ev.column("status"), "ok"))
        tables.append(find_eval_duplicates(train, ev, cfg.dedup.phash_max_distance))
    resolved = _resolved_training_taxa(cfg)
    unresolved_held_out = {}
    for es in cfg.evalsets:
        if es.hold_out_species:
            held = _held_out_taxa(cfg, es)
            tables.append(find_held_out_species(resolved, held, es.name))
            unresolved_held_out[es.name] = _unresolved_held_out(held)
            if unresolved_held_out[es.name]:
                log.warning(
                    "evaluation set %s: %d held-out species did not resolve to a species and "
                    "cannot be held out: %s",
                    es.name,
                    len(unresolved_held_out[es.name]),
                    ", ".join(unresolved_held_out[es.name][:10]),
                )
    removals = combine_removals(*tables)
    write_parquet_atomic(removals, layout.removals)
    report = removal_report(removals)
    report["held_out_species_unresolved"] = unresolved_held_out
    report["settings"] = {
        "phash_algo": PHASH_ALGO,
        "phash_max_distance": cfg.dedup.phash_max_distance,
        "in_train_phash_max_distance": cfg.dedup.in_train_phash_max_distance,
        "training_images_hashed": train.num_rows,
        "evaluation_images": {
            es.name: image_report(t) for es, t in zip(cfg.evalsets, evals, strict=True)
        },
    }
    write_text_atomic(
        layout.dedup_dir / "report.json", json.dumps(report, indent=1, sort_keys=True)
    )
    _write_near_pair_sheet(cfg, removals)
    p.finish()
    result = {"removed": removals.num_rows, **report}
    mark_done(layout.state_dir, "dedup", fp, result)
    return {**result, "up_to_date": False}


def _write_near_pair_sheet(cfg: BuildConfig, removals: pa.Table) -> None:
    """dedup/near_pairs.jpg: a sample of near-duplicate pairs (training | evaluation image)."""
    from treeoflife.dedup.contact_sheet import SheetPair, sample_near_pairs, write_contact_sheet
    from treeoflife.io import read_image_bytes

    layout = Layout(cfg.root)
    chosen = sample_near_pairs(removals, cfg.dedup.contact_sheet_pairs)
    wanted = {r["key"] for r in chosen}
    location = {}
    if wanted:
        catalog = read_all_source_catalogs(cfg).select(
            ["key", "image_file", "image_offset", "image_size"]
        )
        catalog = catalog.filter(pc.is_in(catalog["key"], pa.array(sorted(wanted), pa.string())))
        location = {r["key"]: r for r in catalog.to_pylist()}
    roots = {es.name: evalset_root(es, cfg) for es in cfg.evalsets}

    def read(fn):
        try:
            return fn()
        except (OSError, KeyError, TypeError):
            return None

    pairs = []
    for r in chosen:
        loc = location.get(r["key"], {})
        train = read(
            lambda loc=loc: read_image_bytes(
                cfg.root, loc["image_file"], loc["image_offset"], loc["image_size"]
            )
        )
        evaluation = read(lambda r=r: (roots[r["evalset"]] / r["eval_key"]).read_bytes())
        caption = f"d={r['distance']} {r['key']} ~ {r['evalset']}:{r['eval_key']}"
        pairs.append(SheetPair(train, evaluation, caption))
    write_contact_sheet(pairs, layout.dedup_dir / "near_pairs.jpg")


# --------------------------------------------------------------------------- release


def _read_or_empty(path: Path, schema: pa.Schema) -> pa.Table:
    return pq.read_table(path) if path.exists() else schema.empty_table()


def joined_catalog(cfg: BuildConfig) -> pa.Table:
    from treeoflife.assemble import join_stage_tables

    layout = Layout(cfg.root)
    hashes = pa.concat_tables(
        [_read_or_empty(layout.hashes(s), schemas.HASHES) for s in schemas.SOURCES]
    )
    return join_stage_tables(
        add_query_ids(read_all_source_catalogs(cfg)),
        pq.read_table(layout.taxa),
        hashes,
        _read_or_empty(layout.removals, schemas.REMOVALS),
    )


def _shard_settings(cfg: BuildConfig) -> dict:
    """Shard settings the output bytes depend on (the worker count is not one of them)."""
    return ShardSettings.from_config(cfg.shards).output_settings()


def _check_shard_settings(cfg: BuildConfig) -> None:
    ShardSettings.from_config(cfg.shards).validate()


def write_release_shards(
    cfg: BuildConfig,
    catalog: pa.Table,
    order: dict[str, list[str]],
    progress=None,
    map_parts: PartMapper | None = None,
) -> tuple[pa.Table, dict]:
    """Shards of train, val, then train_small (treeoflife.shards.release); with `map_parts`
    per-shard tasks write them, through shared storage when the config names one."""
    shared = shared_storage(cfg) if map_parts is not None else None
    if shared is not None:
        _push_image_stores(cfg, shared, catalog.column("image_file").unique().to_pylist())
    settings = ShardSettings.from_config(cfg.shards)
    return release_shards(
        catalog, order, Layout(cfg.root), settings, progress=progress, map_parts=map_parts,
        shared=shared,
    )  # fmt: skip


def stage_release(
    cfg: BuildConfig, progress: Progress | None = None, map_parts: PartMapper | None = None
) -> dict:
    """Final catalog, shards per split, evaluation sets in wds layout, dataset card, Croissant
    metadata, stats report, summary. `map_parts` (treeoflife.fanout) runs the shard tasks."""
    from treeoflife.assemble import IMAGE_LOCATION, assemble_catalog, catalog_summary
    from treeoflife.release.card import write_dataset_card, write_licenses_csv
    from treeoflife.release.catalog import write_catalog
    from treeoflife.release.croissant import write_croissant
    from treeoflife.release.report import write_stats_report

    layout = Layout(cfg.root)
    fp = _fp(
        cfg,
        "release",
        cfg.section_dict("splits"),
        _shard_settings(cfg),
        {"evaluate.text_type": cfg.evaluate.text_type},  # class names of the eval sets
        [dataclasses.asdict(e) for e in cfg.evalsets],
        _upstream(cfg, "taxonomy", "hashes", "dedup", *[f"ingest-{s}" for s in schemas.SOURCES]),
    )
    done = completed(layout.state_dir, "release", fp, [layout.catalog, layout.summary])
    if done is not None:
        return {**done, "up_to_date": True}
    _check_shard_settings(cfg)
    _sweep(layout, layout.release_dir)
    catalog, order = assemble_catalog(joined_catalog(cfg), cfg.splits, cfg.shards)
    catalog, shard_results = write_release_shards(cfg, catalog, order, progress, map_parts)
    public = catalog.drop_columns(IMAGE_LOCATION)
    del catalog
    write_catalog(public, layout.catalog)
    write_licenses_csv(public, layout.release_dir / "licenses.csv")
    evalsets = package_evalsets(cfg, progress=progress)
    summary = {
        **catalog_summary(public),
        "shards": shard_results,
        "evalsets": evalsets,
        # Relative to the data root, so the summary (and the release) does not depend on where
        # the data root lives.
        "outputs": {
            "release": str(layout.release_dir.relative_to(layout.root)),
            "catalog": str(layout.catalog.relative_to(layout.root)),
            "shards": str((layout.release_dir / "shards").relative_to(layout.root)),
            "evalsets": str(layout.evalsets_wds.relative_to(layout.root)),
            "report": str((layout.release_dir / "report" / "index.html").relative_to(layout.root)),
        },
    }
    write_dataset_card(layout.release_dir, summary)
    write_croissant(layout.release_dir, summary)
    write_stats_report(layout.release_dir, public)
    write_text_atomic(layout.summary, json.dumps(summary, indent=1, sort_keys=True))
    mark_done(layout.state_dir, "release", fp, summary)
    return {**summary, "up_to_date": False}


def verify_release(cfg: BuildConfig, progress: Progress | None = None) -> dict:
    """Read every shard of the release back; check it against its manifest and the catalog."""
    from treeoflife.shards.verify import verify_release as verify

    reports = verify(Layout(cfg.root).release_dir, progress=progress)
    return {
        "ok": all(r.ok for r in reports),
        "splits": {r.split: r.to_dict() for r in reports},
    }


# --------------------------------------------------------------------------- the whole build


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


# --------------------------------------------------------------------------- train and evaluate


def run_dir(cfg: BuildConfig, name: str = "run") -> Path:
    """`<train.output>/<name>`: open_clip's logs and checkpoints, and the exported model."""
    return cfg.path(cfg.train.output) / name


def export_dir(cfg: BuildConfig, name: str = "run") -> Path:
    return run_dir(cfg, name) / cfg.train.export


def stage_train(cfg: BuildConfig, name: str = "run", progress: Progress | None = None) -> dict:
    """Train with stock open_clip_train on the release's train shards (resumes when interrupted),
    then export the last checkpoint as a `local-dir:` model folder with a model card."""
    from treeoflife.errors import ConfigError, InputError
    from treeoflife.train import export_model, read_shard_set, train_clip, write_model_card

    layout = Layout(cfg.root)
    shards = layout.shards_dir("train")
    if not (shards / "sizes.json").exists():
        raise InputError(f"no training shards at {shards}: run the build first")
    if cfg.train.text_type is not None and cfg.train.text_type != cfg.shards.text_type:
        raise ConfigError(
            f"train.text_type is {cfg.train.text_type!r} but the shards' txt holds "
            f"{cfg.shards.text_type!r}: stock open_clip trains on txt only; set "
            "shards.text_type and rebuild the release"
        )
    result = train_clip(
        cfg.train,
        shards,
        cfg.path(cfg.train.output),
        name=name,
        progress=progress,
    )
    shard_set = read_shard_set(shards)
    exported = export_model(result.checkpoint, cfg.train.model, export_dir(cfg, name))
    data = {
        "shards": str(shards),
        "shard_files": len(shard_set.files),
        "num_samples": shard_set.num_samples,
        "text_type": cfg.shards.text_type,
        "image_size": cfg.shards.image_size,
        "checkpoint": result.checkpoint.name,
    }
    write_model_card(exported, cfg.train, data)
    out = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(result).items()}
    return {**out, "export": str(exported), "model": f"local-dir:{exported}"}


def latest_checkpoint(cfg: BuildConfig, name: str = "run") -> Path | None:
    """The newest complete checkpoint of a run (a save cut short by a kill is set aside)."""
    from treeoflife.train import checkpoint_epochs

    epochs = checkpoint_epochs(run_dir(cfg, name) / "checkpoints")
    return epochs[max(epochs)] if epochs else None


def stage_evaluate(
    cfg: BuildConfig,
    checkpoint: str | None = None,
    name: str = "run",
    *,
    model: str | None = None,
    label: str | None = None,
    progress: Progress | None = None,
) -> dict:
    """Zero-shot and few-shot results of one model on every packaged evaluation set.

    The model: `model` (an open_clip name, `local-dir:DIR` or `hf-hub:ORG/REPO`) with an
    optional `checkpoint`; by default the run's exported model, else its newest checkpoint.
    Writes `<evaluate.output>/<label>/results.json`, then `results.json` + `results.md` over
    every model evaluated there (BioCLIP's tables: rows models, columns tasks); when the model
    is the run's export, its model card gets the results.
    """
    from treeoflife.errors import InputError
    from treeoflife.evalsets.wds import list_wds_evalsets
    from treeoflife.evaluation.suite import (
        evaluate_model,
        report_markdown,
        write_model_results,
        write_report,
    )
    from treeoflife.evaluation.zeroshot import load_model
    from treeoflife.train import model_configs_dir

    layout = Layout(cfg.root)
    exported = export_dir(cfg, name)
    if model is None and checkpoint is None and (exported / "open_clip_config.json").is_file():
        model = f"local-dir:{exported}"
    if model is None:
        model = cfg.train.model
        checkpoint = checkpoint or latest_checkpoint(cfg, name)
        if checkpoint is None:
            raise InputError("no model to evaluate: run `treeoflife train` first")
    if label is None:
        label = name if model == f"local-dir:{exported}" else _model_label(model, checkpoint)
    dirs = list_wds_evalsets(layout.evalsets_wds)
    if not dirs:
        raise InputError(f"no packaged evaluation sets in {layout.evalsets_wds}")
    ev = cfg.evaluate
    text_type = ev.zero_shot_text_type
    classnames = evalset_classnames(cfg, text_type) if text_type else None
    loaded = load_model(model, checkpoint, _eval_device(ev.device), model_configs_dir())
    results = evaluate_model(
        loaded,
        dirs,
        batch_size=ev.batch_size,
        templates=ev.templates or None,
        classnames=classnames,
        text_type=text_type or ev.text_type,
        shots=ev.shots,
        draws=ev.draws,
        seed=ev.seed,
        progress=progress,
    )
    out = cfg.path(ev.output)
    write_model_results(results, out, label)
    json_path, md_path = write_report(out)
    if model == f"local-dir:{exported}":
        card = exported / "README.md"
        if card.is_file():
            _add_results_to_card(card, report_markdown({label: results}))
    return {
        "model": model,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "label": label,
        "results": results,
        "markdown": md_path.read_text(),
        "outputs": {"json": str(json_path), "markdown": str(md_path)},
    }


def _model_label(model: str, checkpoint) -> str:
    if checkpoint is None:
        return model
    return f"{model} ({Path(str(checkpoint)).name})"


def _eval_device(device: str | None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _add_results_to_card(card: Path, results_md: str) -> None:
    text = card.read_text(encoding="utf-8")
    head, sep, _ = text.partition("## Results\n")
    if sep:
        write_text_atomic(card, f"{head}{sep}\n{results_md.rstrip()}\n")
