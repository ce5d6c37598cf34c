"""The hashes and dedup stages' work: hash every training and evaluation image, then the
removal list (copies and near-copies of evaluation images, held-out species, in-train copies),
its report and a contact sheet of near pairs."""

from __future__ import annotations

import json
import logging

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from treeoflife import records, schemas
from treeoflife.config import BuildConfig, EvalSetConfig
from treeoflife.dedup.contact_sheet import SheetPair, sample_near_pairs, write_contact_sheet
from treeoflife.dedup.hashing import hash_catalog_parts, hash_evalset_rows
from treeoflife.dedup.phash import PHASH_ALGO
from treeoflife.dedup.removals import (
    combine_removals,
    find_eval_duplicates,
    find_held_out_species,
    find_in_train_duplicates,
    removal_report,
)
from treeoflife.evalsets.labels import evalset_source, verbatim_ranks
from treeoflife.evalsets.report import image_report
from treeoflife.evalsets.sets import evalset_root, read_evalset
from treeoflife.fanout import PartMapper
from treeoflife.io import read_image_bytes, write_parquet_atomic, write_text_atomic
from treeoflife.layout import Layout
from treeoflife.progress import Progress, or_null
from treeoflife.sources.catalogs import add_query_ids, push_image_stores, read_all_source_catalogs
from treeoflife.storage import shared_storage
from treeoflife.vocabulary import IngestStatus

log = logging.getLogger(__name__)


def hash_training_images(
    cfg: BuildConfig,
    run_id: str,
    progress: Progress | None = None,
    map_parts: PartMapper | None = None,
) -> dict:
    """md5 + perceptual hash of every ingested image, by catalog part (hashes/<source>/part-*,
    then hashes/<source>.parquet). `run_id` names the inputs and algorithm: parts of another id
    are rehashed. `map_parts` (treeoflife.fanout) runs the parts elsewhere; by default, here."""
    layout = Layout(cfg.root)
    result: dict = {}
    shared = shared_storage(cfg) if map_parts is not None else None
    for source in schemas.SOURCES:
        path = layout.hashes(source)
        parts = sorted(layout.catalog_dir(source).glob("part-*[0-9].parquet"))
        if shared is not None and parts:
            stores = [pq.read_table(p, columns=["image_file"]).column(0) for p in parts]
            push_image_stores(cfg, shared, pa.chunked_array(stores).unique().to_pylist())
        hashes = hash_catalog_parts(
            parts,
            layout.hashes_dir / source,
            cfg.root,
            run_id,
            workers=cfg.dedup.hash_workers,
            progress=progress,
            run_marker=layout.state_dir / f"hashes-{source}.run_id",
            map_parts=map_parts,
            shared=shared,
        )
        write_parquet_atomic(hashes, path)
        result[source] = hashes.num_rows
    return result


def hash_evalsets(cfg: BuildConfig) -> dict:
    """md5 + perceptual hash of every evaluation image (hashes/evalsets/<name>.parquet)."""
    layout = Layout(cfg.root)
    result: dict = {}
    for es in cfg.evalsets:
        cache = layout.state_dir / "evalset-hashes" / f"{es.name}.parquet"  # by size + mtime
        table = hash_evalset_rows(es.name, read_evalset(es, cfg), evalset_root(es, cfg), cache)
        write_parquet_atomic(table, layout.evalset_hashes(es.name))
        result[f"evalset/{es.name}"] = table.num_rows
    return result


def _resolved_training_taxa(cfg: BuildConfig) -> pa.Table:
    """key + resolved kingdom/genus/species of every ingested row."""
    columns = ["key", "source", *records.VERBATIM_QUERY_FIELDS]
    catalog = add_query_ids(read_all_source_catalogs(cfg, columns)).select(["key", "query_id"])
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


def run_dedup(cfg: BuildConfig, progress: Progress | None = None) -> dict:
    """Removal list: copies and near-copies of evaluation images, held-out species."""
    layout = Layout(cfg.root)
    p = or_null(progress)
    p.start("dedup", None)
    train = pa.concat_tables([pq.read_table(layout.hashes(s)) for s in schemas.SOURCES])
    tables = [find_in_train_duplicates(train, cfg.dedup.in_train_phash_max_distance)]
    evals = [pq.read_table(layout.evalset_hashes(es.name)) for es in cfg.evalsets]
    if evals:
        ev = pa.concat_tables(evals)
        ev = ev.filter(pc.equal(ev.column("status"), IngestStatus.OK))
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
    return {"removed": removals.num_rows, **report}


def _write_near_pair_sheet(cfg: BuildConfig, removals: pa.Table) -> None:
    """dedup/near_pairs.jpg: a sample of near-duplicate pairs (training | evaluation image)."""
    layout = Layout(cfg.root)
    chosen = sample_near_pairs(removals, cfg.dedup.contact_sheet_pairs)
    wanted = {r["key"] for r in chosen}
    location = {}
    if wanted:
        # Four columns, not the whole catalog (~600 B per image: 0.6 GB of driver at 1M).
        catalog = read_all_source_catalogs(cfg, ["key", "image_file", "image_offset", "image_size"])
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
