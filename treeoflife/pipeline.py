"""The build's stages as plain functions: read tables from disk, call a stage, write tables.

The CLI and the Prefect flows both call these; neither holds logic of its own. Each stage skips
itself when its fingerprint (inputs, config, code version, upstream stages) is unchanged, and the
stages' own parts or shards are the finer unit of resume inside a stage.
"""

from __future__ import annotations

import csv
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
from treeoflife.io import remove_stale_temporaries, write_parquet_atomic, write_text_atomic
from treeoflife.layout import Layout
from treeoflife.progress import Progress, or_null
from treeoflife.resume import completed, fingerprint, fingerprint_paths, mark_done, read_marker

log = logging.getLogger(__name__)

STAGES = ("sample", "ingest", "taxonomy", "hashes", "dedup", "release")


def _fp(cfg: BuildConfig, stage: str, *parts) -> str:
    return fingerprint(stage, __version__, *parts)


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
        return [cfg.path(s.bioscan.metadata)] + [cfg.path(z) for z in s.bioscan.zips]
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


def stage_ingest(cfg: BuildConfig, source: str, progress: Progress | None = None) -> dict:
    """Ingest one source into `catalog/<source>/` + `images/<source>/` (resumable by part)."""
    from treeoflife import sources as src

    layout = Layout(cfg.root)
    stage = f"ingest-{source}"
    if not source_configured(cfg, source):
        return {"source": source, "rows": 0, "skipped": "not configured"}
    section = dataclasses.asdict(getattr(cfg.sources, source))
    fp = _fp(cfg, stage, section, fingerprint_paths(_source_inputs(cfg, source)))
    done = completed(layout.state_dir, stage, fp, [layout.catalog_dir(source)])
    if done is not None:
        log.info("%s: up to date, skipped", stage)
        return {**done, "up_to_date": True}
    remove_stale_temporaries(layout.catalog_dir(source))
    remove_stale_temporaries(layout.images_dir(source))
    fn = {"inat21": src.ingest_inat21, "bioscan": src.ingest_bioscan, "eol": src.ingest_eol}[source]
    stats = fn(cfg, progress=progress).to_dict()
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


# --------------------------------------------------------------------------- evaluation sets


def read_evalset(es: EvalSetConfig, cfg: BuildConfig) -> list[dict]:
    """Rows of a Rare-Species-style metadata CSV (a missing column is a clear error)."""
    from treeoflife.errors import InputError

    path = cfg.path(es.metadata)
    expected = ["kingdom", "phylum", "cls", "order", "family", "genus", "species", "filepath"]
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in expected if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"evaluation set {es.name}: {path} lacks columns {missing}")
            return [dict(r) for r in reader]
    except OSError as exc:
        raise InputError(f"evaluation set {es.name}: cannot read {path}: {exc}") from exc


def evalset_root(es: EvalSetConfig, cfg: BuildConfig) -> Path:
    return cfg.path(es.root) if es.root else cfg.path(es.metadata).parent


def _evalset_verbatim(row: dict) -> dict:
    genus = (row.get("genus") or "").strip()
    species = (row.get("species") or "").strip()
    if species and " " in species:  # a binomial in the species column
        name = species
    else:
        name = " ".join(x for x in (genus, species) if x)
    return {
        "verbatim_kingdom": row.get("kingdom") or None,
        "verbatim_phylum": row.get("phylum") or None,
        "verbatim_class": row.get("cls") or row.get("class") or None,
        "verbatim_order": row.get("order") or None,
        "verbatim_family": row.get("family") or None,
        "verbatim_genus": genus or None,
        "verbatim_scientific_name": name or None,
        "verbatim_common_name": row.get("common_name") or None,
    }


def evalset_source(name: str) -> str:
    return f"evalset/{name}"


# --------------------------------------------------------------------------- taxonomy

_QUERY_COLUMNS = ["query_id", "source", *records.VERBATIM_QUERY_FIELDS, "verbatim_common_name"]


def add_query_ids(table: pa.Table) -> pa.Table:
    """Append the `query_id` column (a pure function of source + verbatim ranks and name)."""
    cols = {c: table.column(c).to_pylist() for c in ["source", *records.VERBATIM_QUERY_FIELDS]}
    ids = [
        records.query_id(src, {f: cols[f][i] for f in records.VERBATIM_QUERY_FIELDS})
        for i, src in enumerate(cols["source"])
    ]
    return table.append_column("query_id", pa.array(ids, pa.string()))


def build_queries(cfg: BuildConfig) -> pa.Table:
    """One row per distinct taxonomy query over every source row and evaluation-set row."""
    rows: dict[str, dict] = {}
    catalog = add_query_ids(read_all_source_catalogs(cfg))
    for r in catalog.select(_QUERY_COLUMNS).to_pylist():
        rows.setdefault(r["query_id"], r)
    for es in cfg.evalsets:
        for er in read_evalset(es, cfg):
            v = _evalset_verbatim(er)
            src = evalset_source(es.name)
            qid = records.query_id(src, v)
            rows.setdefault(qid, {"query_id": qid, "source": src, **v})
    ordered = [rows[k] for k in sorted(rows)]
    schema = pa.schema([pa.field(c, pa.string()) for c in _QUERY_COLUMNS])
    return pa.Table.from_pylist(ordered, schema=schema)


def stage_taxonomy(cfg: BuildConfig, progress: Progress | None = None) -> dict:
    """Load the backbone into DuckDB and resolve every distinct query to seven ranks."""
    from treeoflife.taxonomy import load_backbone, resolve_taxa

    layout = Layout(cfg.root)
    ingests = [f"ingest-{s}" for s in schemas.SOURCES]
    evalset_files = [cfg.path(es.metadata) for es in cfg.evalsets]
    fp = _fp(
        cfg,
        "taxonomy",
        cfg.section_dict("taxonomy"),
        [dataclasses.asdict(e) for e in cfg.evalsets],
        fingerprint_paths([cfg.path(cfg.taxonomy.backbone), *evalset_files]),
        _upstream(cfg, *ingests),
    )
    done = completed(layout.state_dir, "taxonomy", fp, [layout.taxa])
    if done is not None:
        return {**done, "up_to_date": True}
    if not cfg.taxonomy.backbone:
        from treeoflife.errors import ConfigError

        raise ConfigError("taxonomy.backbone: no backbone configured")
    layout.taxonomy_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_backbone(cfg.path(cfg.taxonomy.backbone), layout.taxonomy_db, progress=progress)
    queries = build_queries(cfg)
    taxa = resolve_taxa(
        queries,
        layout.taxonomy_db,
        fuzzy_max_distance=cfg.taxonomy.fuzzy_max_distance,
        progress=progress,
    )
    write_parquet_atomic(taxa, layout.taxa)
    report = taxonomy_report(taxa)
    write_text_atomic(layout.taxonomy_dir / "report.json", json.dumps(report, indent=1))
    result = {
        "backbone_taxa": loaded.get("taxa"),
        "queries": taxa.num_rows,
        "match_types": report["match_types"],
        "unresolved": len(report["unresolved"]),
    }
    mark_done(layout.state_dir, "taxonomy", fp, result)
    return {**result, "up_to_date": False}


def taxonomy_report(taxa: pa.Table) -> dict:
    rows = taxa.select(
        ["source", "verbatim_scientific_name", "match_type", "reason", "kingdom"]
        if "source" in taxa.column_names
        else ["verbatim_scientific_name", "match_type", "reason", "kingdom"]
    ).to_pylist()
    match_types = Counter(r["match_type"] or "none" for r in rows)
    unresolved = sorted(
        (
            {"name": r["verbatim_scientific_name"], "reason": r["reason"]}
            for r in rows
            if r["kingdom"] is None
        ),
        key=lambda r: (r["name"] or "", r["reason"] or ""),
    )
    return {"match_types": dict(sorted(match_types.items())), "unresolved": unresolved}


# --------------------------------------------------------------------------- hashes


def stage_hashes(cfg: BuildConfig, progress: Progress | None = None) -> dict:
    """md5 + perceptual hash of every ingested image and every evaluation image."""
    from treeoflife.dedup import hash_catalog, hash_evalset

    layout = Layout(cfg.root)
    fp = _fp(
        cfg,
        "hashes",
        [dataclasses.asdict(e) for e in cfg.evalsets],
        fingerprint_paths([cfg.path(e.metadata) for e in cfg.evalsets]),
        _upstream(cfg, *[f"ingest-{s}" for s in schemas.SOURCES]),
    )
    outputs = [layout.hashes(s) for s in schemas.SOURCES]
    outputs += [layout.evalset_hashes(e.name) for e in cfg.evalsets]
    done = completed(layout.state_dir, "hashes", fp, outputs)
    if done is not None:
        return {**done, "up_to_date": True}
    result: dict = {}
    for source in schemas.SOURCES:
        path = layout.hashes(source)
        catalog = read_source_catalog(cfg, source)
        hashes = hash_catalog(catalog, cfg.root, progress=progress)
        write_parquet_atomic(hashes, path)
        result[source] = hashes.num_rows
    for es in cfg.evalsets:
        table = hash_evalset(es.name, cfg.path(es.metadata), evalset_root(es, cfg))
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
    ids = {records.query_id(src, _evalset_verbatim(r)) for r in read_evalset(es, cfg)}
    mask = pc.is_in(taxa.column("query_id"), pa.array(sorted(ids), pa.string()))
    return taxa.filter(mask).select(["kingdom", "genus", "species"])


def stage_dedup(cfg: BuildConfig, progress: Progress | None = None) -> dict:
    """Removal list: copies and near-copies of evaluation images, held-out species."""
    from treeoflife.dedup import (
        combine_removals,
        find_eval_duplicates,
        find_held_out_species,
        find_in_train_duplicates,
        removal_report,
    )

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
    p = or_null(progress)
    p.start("dedup", None)
    train = pa.concat_tables([pq.read_table(layout.hashes(s)) for s in schemas.SOURCES])
    tables = [find_in_train_duplicates(train)]
    evals = [pq.read_table(layout.evalset_hashes(es.name)) for es in cfg.evalsets]
    if evals:
        ev = pa.concat_tables(evals)
        ev = ev.filter(pc.equal(ev.column("status"), "ok"))
        tables.append(find_eval_duplicates(train, ev, cfg.dedup.phash_max_distance))
    resolved = _resolved_training_taxa(cfg)
    for es in cfg.evalsets:
        if es.hold_out_species:
            tables.append(find_held_out_species(resolved, _held_out_taxa(cfg, es), es.name))
    removals = combine_removals(*tables)
    write_parquet_atomic(removals, layout.removals)
    report = removal_report(removals)
    write_text_atomic(
        layout.dedup_dir / "report.json", json.dumps(report, indent=1, sort_keys=True)
    )
    p.finish()
    result = {"removed": removals.num_rows, **report}
    mark_done(layout.state_dir, "dedup", fp, result)
    return {**result, "up_to_date": False}


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


def stage_release(cfg: BuildConfig, progress: Progress | None = None) -> dict:
    """Final catalog, shards per split, evaluation sets in wds layout, dataset card, summary."""
    from treeoflife.assemble import IMAGE_LOCATION, assemble_catalog, catalog_summary
    from treeoflife.release.card import write_dataset_card, write_licenses_csv
    from treeoflife.release.catalog import write_catalog
    from treeoflife.shards.writer import write_split_shards

    layout = Layout(cfg.root)
    fp = _fp(
        cfg,
        "release",
        cfg.section_dict("splits"),
        cfg.section_dict("shards"),
        cfg.section_dict("evaluate"),
        [dataclasses.asdict(e) for e in cfg.evalsets],
        _upstream(cfg, "taxonomy", "hashes", "dedup", *[f"ingest-{s}" for s in schemas.SOURCES]),
    )
    done = completed(layout.state_dir, "release", fp, [layout.catalog, layout.summary])
    if done is not None:
        return {**done, "up_to_date": True}
    remove_stale_temporaries(layout.release_dir)
    catalog, order = assemble_catalog(joined_catalog(cfg), cfg.splits, cfg.shards)
    rows_by_key = {r["key"]: r for r in catalog.to_pylist()}
    shard_results = {}
    for split in ("train", "val", "train_small"):
        rows = []
        for i, key in enumerate(order[split]):
            row = dict(rows_by_key[key])
            if split == "train_small":
                n = cfg.shards.samples_per_shard
                row["shard"] = f"train_small/shard-{i // n:06d}.tar"
                row["shard_position"] = i % n
            rows.append(row)
        infos = write_split_shards(
            rows,
            layout.shards_dir(split),
            cfg.root,
            image_size=cfg.shards.image_size,
            jpeg_quality=cfg.shards.jpeg_quality,
            text_type=cfg.shards.text_type,
            seed=cfg.shards.seed,
            progress=progress,
        )
        shard_results[split] = {"shards": len(infos), "samples": sum(i.samples for i in infos)}
    public = catalog.drop_columns(IMAGE_LOCATION)
    write_catalog(public, layout.catalog)
    write_licenses_csv(public, layout.release_dir / "licenses.csv")
    evalsets = package_evalsets(cfg, progress=progress)
    summary = {
        **catalog_summary(public),
        "shards": shard_results,
        "evalsets": evalsets,
        "outputs": {
            "release": str(layout.release_dir),
            "catalog": str(layout.catalog),
            "shards": str(layout.release_dir / "shards"),
            "evalsets": str(layout.evalsets_wds),
        },
    }
    write_dataset_card(layout.release_dir, summary)
    write_text_atomic(layout.summary, json.dumps(summary, indent=1, sort_keys=True))
    mark_done(layout.state_dir, "release", fp, summary)
    return {**summary, "up_to_date": False}


def package_evalsets(cfg: BuildConfig, progress: Progress | None = None) -> dict:
    """Each evaluation set in CLIP_benchmark's wds layout, classes named by resolved taxon."""
    from treeoflife.evalsets import evalset_items
    from treeoflife.release.evalsets import write_wds_evalset

    layout = Layout(cfg.root)
    taxa = pq.read_table(layout.taxa)
    by_query = {r["query_id"]: r for r in taxa.to_pylist()}
    out = {}
    for es in cfg.evalsets:
        hashes = pq.read_table(layout.evalset_hashes(es.name))
        items, classnames, skipped = evalset_items(
            es.name,
            read_evalset(es, cfg),
            evalset_root(es, cfg),
            hashes,
            lambda row, _src=evalset_source(es.name): by_query.get(
                records.query_id(_src, _evalset_verbatim(row))
            ),
            text_type=cfg.evaluate.text_type,
            image_size=cfg.shards.image_size,
            jpeg_quality=cfg.shards.jpeg_quality,
        )
        if not items:  # CLIP_benchmark cannot read a set with no shards: report, don't write
            log.warning("evaluation set %s has no usable images (%s)", es.name, skipped)
            out[es.name] = {"images": 0, "classes": 0, "skipped": skipped}
            continue
        write_wds_evalset(
            layout.evalsets_wds / es.name,
            es.name,
            items,
            classnames,
            ["a photo of {c}."],
        )
        out[es.name] = {"images": len(items), "classes": len(classnames), "skipped": skipped}
    return out


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


def stage_train(cfg: BuildConfig, name: str = "run") -> dict:
    """Train with stock open_clip_train on the release's train shards (resumes when interrupted)."""
    from treeoflife.train import train_clip

    layout = Layout(cfg.root)
    shards = layout.shards_dir("train")
    if not (shards / "sizes.json").exists():
        from treeoflife.errors import InputError

        raise InputError(f"no training shards at {shards}: run the build first")
    result = train_clip(
        cfg.train,
        shards,
        cfg.path(cfg.train.output),
        name=name,
    )
    return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(result).items()}


def latest_checkpoint(cfg: BuildConfig, name: str = "run") -> Path | None:
    """The newest complete checkpoint of a run (a save cut short by a kill is set aside)."""
    from treeoflife.train import checkpoint_epochs

    epochs = checkpoint_epochs(cfg.path(cfg.train.output) / name / "checkpoints")
    return epochs[max(epochs)] if epochs else None


def stage_evaluate(cfg: BuildConfig, checkpoint: str | None = None, name: str = "run") -> dict:
    """Zero-shot top-1/top-5 on every packaged evaluation set; JSON + markdown results."""
    from treeoflife.evaluation.zeroshot import evaluate_all, results_markdown
    from treeoflife.train import model_configs_dir

    layout = Layout(cfg.root)
    ckpt = checkpoint or latest_checkpoint(cfg, name)
    if ckpt is None:
        from treeoflife.errors import InputError

        raise InputError("no checkpoint to evaluate: run `treeoflife train` first")
    results = evaluate_all(
        cfg.train.model,
        ckpt,
        layout.evalsets_wds,
        batch_size=cfg.evaluate.batch_size,
        model_configs=model_configs_dir(),
    )
    label = f"{cfg.train.model} ({Path(str(ckpt)).name})"
    markdown = results_markdown(results, label)
    out = cfg.path(cfg.evaluate.output)
    write_text_atomic(out / "results.json", json.dumps(results, indent=1, sort_keys=True))
    write_text_atomic(out / "results.md", markdown)
    return {"results": results, "markdown": markdown, "checkpoint": str(ckpt)}
