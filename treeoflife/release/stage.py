"""The release stage's work: the final catalog, shards per split, evaluation sets in wds layout,
dataset card, Croissant metadata, stats report and summary; and `verify_release`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from treeoflife import schemas
from treeoflife.assemble import catalog_summary, join_stage_tables
from treeoflife.config import BuildConfig
from treeoflife.errors import InputError
from treeoflife.evalsets.package import package_evalsets
from treeoflife.fanout import PartMapper
from treeoflife.io import write_text_atomic
from treeoflife.layout import Layout
from treeoflife.progress import Progress
from treeoflife.release import published as pub
from treeoflife.release.card import write_dataset_card, write_licenses_rows
from treeoflife.release.catalog import write_catalog_batches
from treeoflife.release.croissant import write_croissant
from treeoflife.release.label_diff import write_label_diff
from treeoflife.release.report import write_stats_report
from treeoflife.release.tables import ReleaseTables
from treeoflife.shards.manifest import INDEX_FILE
from treeoflife.shards.release import write_release_shards as release_shards
from treeoflife.shards.settings import ShardSettings
from treeoflife.shards.verify import verify_release as verify
from treeoflife.shards.verify import verify_split
from treeoflife.sources.catalogs import add_query_ids, push_image_stores, read_all_source_catalogs
from treeoflife.storage import shared_storage


def joined_catalog(cfg: BuildConfig) -> pa.Table:
    """The joined stage tables in memory (bench/scale_profile.py measures what the release no
    longer holds; the release streams them: treeoflife.release.tables)."""
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


def _read_or_empty(path: Path, schema: pa.Schema) -> pa.Table:
    return pq.read_table(path) if path.exists() else schema.empty_table()


def shard_output_settings(cfg: BuildConfig) -> dict:
    """Shard settings the output bytes depend on (the worker count is not one of them)."""
    return ShardSettings.from_config(cfg.shards).output_settings()


def write_release_shards(
    cfg: BuildConfig,
    tables: ReleaseTables,
    progress=None,
    map_parts: PartMapper | None = None,
) -> tuple[dict[str, Path], dict]:
    """Shards of train, val, then train_small (treeoflife.shards.release), their rows streamed
    from the release's tables; with `map_parts` per-shard tasks write them, through shared
    storage when the config names one. Returns the train and val shard indexes and per split
    what was written."""
    layout = Layout(cfg.root)
    shared = shared_storage(cfg) if map_parts is not None else None
    if shared is not None:
        push_image_stores(cfg, shared, tables.image_files())
    train_index = layout.shards_dir("train") / INDEX_FILE

    def rows_of(split: str):
        return tables.split_rows(split, train_index if split == "train_small" else None)

    settings = ShardSettings.from_config(cfg.shards)
    return release_shards(
        rows_of, layout, settings, progress=progress, map_parts=map_parts, shared=shared
    )


def _public_columns(cfg: BuildConfig) -> list[str]:
    """The catalog columns the summary, the stats report (and a published rebuild's
    reproduction report) count: read back narrow, not the whole catalog."""
    columns = ["source", "status", "reason", "split", "in_train_small", *schemas.RANKS]
    if cfg.published.configured:
        columns += ["treeoflife_id", "key", "removal_evalset", "removal_eval_key",
                    "removal_distance"]  # fmt: skip
    return columns


def run_release(
    cfg: BuildConfig, progress: Progress | None = None, map_parts: PartMapper | None = None
) -> dict:
    """Final catalog, shards per split, evaluation sets in wds layout, dataset card, Croissant
    metadata, stats report, summary. `map_parts` (treeoflife.fanout) runs the shard tasks.

    The catalog never sits in memory whole: DuckDB joins and sorts the stage tables in a
    work folder and the shard and catalog writers take them a batch at a time
    (treeoflife.release.tables)."""
    layout = Layout(cfg.root)
    ShardSettings.from_config(cfg.shards).validate()
    published: dict = {}
    with ReleaseTables(cfg, layout.release_work) as tables:
        assembled = tables.assemble(progress)
        if cfg.published.configured:  # the label diff, from the joined tables and the plan
            mode = cfg.published.label_mode
            diff = write_label_diff(
                layout.release_dir, assembled.label_diff, assembled.compared, mode
            )
            published = {"label_mode": mode, "label_diff": diff}
        indexes, shard_results = write_release_shards(cfg, tables, progress, map_parts)
        write_catalog_batches(tables.catalog_batches(indexes), layout.catalog)
        write_licenses_rows(
            tables.licenses_batches(layout.catalog), layout.release_dir / "licenses.csv"
        )
    public = pq.read_table(layout.catalog, columns=_public_columns(cfg))
    if cfg.published.configured:  # the reproduction report
        published.update(pub.after_release(cfg, layout.release_dir, public))
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
    if cfg.published.configured:
        summary["published"] = published
    write_dataset_card(layout.release_dir, summary)
    write_croissant(layout.release_dir, summary)
    write_stats_report(layout.release_dir, public)
    if cfg.published.configured:  # the report links the label diff and reproduction pages
        pub.link_report_pages(layout.release_dir)
    write_text_atomic(layout.summary, json.dumps(summary, indent=1, sort_keys=True))
    return summary


def verify_release(cfg: BuildConfig, progress: Progress | None = None) -> dict:
    """Read every shard of the release back; check it against its manifest and the catalog.

    {ok, problems (release-wide), splits: {split: report}}. An unreadable catalog is a problem
    and the shards are still read back against their manifests; no release at all (no catalog,
    no shards) is an InputError."""
    release_dir = Layout(cfg.root).release_dir
    problems: list[str] = []
    try:
        reports = verify(release_dir, progress=progress)
    except InputError as exc:
        catalog = release_dir / "catalog.parquet"
        roots = sorted(p for p in (release_dir / "shards").glob("*") if p.is_dir())
        if not roots:  # nothing was built
            raise
        if catalog.exists():
            problems.append(f"{catalog.name}: cannot read it ({exc.__cause__ or exc})")
        else:
            problems.append(f"{catalog.name}: missing")
        reports = [verify_split(p, None, progress) for p in roots]
    return {
        "ok": not problems and all(r.ok for r in reports),
        "problems": problems,
        "splits": {r.split: r.to_dict() for r in reports},
    }
