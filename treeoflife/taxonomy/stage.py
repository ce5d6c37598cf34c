"""The taxonomy stage's work: backbone, local resolution, then each configured authority for
what is still short, the precedence config, per-rank match types, the table and the report.

Order: GBIF backbone (local DuckDB) -> ITIS database (local) -> GBIF species-match API ->
ITIS web service -> rank precedence. Each later step only sees rows the earlier ones left short
of a species and merges by `merge.apply_answer`; any rank a step takes away is recorded (step,
ranks) and listed in the report.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable

import pyarrow as pa

from treeoflife.config import BuildConfig, ConfigError
from treeoflife.evalsets.labels import evalset_source, verbatim_ranks
from treeoflife.evalsets.sets import read_evalset
from treeoflife.io import write_parquet_atomic, write_text_atomic
from treeoflife.layout import Layout
from treeoflife.progress import Progress
from treeoflife.records import VERBATIM_QUERY_FIELDS
from treeoflife.schemas import RANKS
from treeoflife.sources.catalogs import read_all_source_catalogs
from treeoflife.taxonomy.api_client import ApiSettings
from treeoflife.taxonomy.backbone import load_backbone
from treeoflife.taxonomy.gbif_api import refine_with_gbif_api
from treeoflife.taxonomy.itis_api import refine_with_itis_api
from treeoflife.taxonomy.itis_db import load_itis_sqlite, refine_with_itis
from treeoflife.taxonomy.merge import lost_ranks
from treeoflife.taxonomy.precedence import apply_rank_precedence
from treeoflife.taxonomy.provenance import with_rank_match_types
from treeoflife.taxonomy.queries import taxonomy_queries
from treeoflife.taxonomy.report import taxonomy_report
from treeoflife.taxonomy.resolve import resolve_taxa

log = logging.getLogger(__name__)


def _ranks_by_query(taxa: pa.Table) -> dict[str, dict]:
    cols = ["query_id", *RANKS]
    return {r["query_id"]: r for r in taxa.select(cols).to_pylist()}


class _LostRanks:
    """Ranks each step takes away from a row, found by comparing the table before and after."""

    def __init__(self, taxa: pa.Table):
        self.records: list[dict] = []
        self._before = _ranks_by_query(taxa)

    def after(self, step: str, taxa: pa.Table) -> None:
        now = _ranks_by_query(taxa)
        for qid, row in now.items():
            lost = lost_ranks(self._before.get(qid, {}), row)
            if lost:
                self.records.append({"query_id": qid, "step": step, "ranks": lost})
        self._before = now


def build_taxa(
    cfg: BuildConfig,
    layout: Layout,
    queries: pa.Table,
    progress: Progress | None = None,
    images: dict[str, int] | None = None,
) -> dict:
    """Resolve `queries` (TAXONOMY_QUERY_COLUMNS) to seven ranks with every configured
    authority; writes `layout.taxa` and `taxonomy/report.json`. `images` maps query_id -> the
    number of catalog rows behind it (for the report). Returns the stage's summary."""
    tc = cfg.taxonomy
    if not tc.backbone:
        raise ConfigError("taxonomy.backbone: no backbone configured")
    layout.taxonomy_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_backbone(cfg.path(tc.backbone), layout.taxonomy_db, progress=progress)
    taxa = resolve_taxa(
        queries,
        layout.taxonomy_db,
        fuzzy_max_distance=tc.fuzzy_max_distance,
        progress=progress,
        source_below_match=tc.source_below_match,
    )
    ids, srcs = queries.column("query_id").to_pylist(), queries.column("source").to_pylist()
    sources = dict(zip(ids, srcs, strict=True))
    lost = _LostRanks(taxa)
    counts: dict[str, dict | None] = {"itis": None, "gbif_api": None, "itis_api": None}
    steps: list[tuple[str, Callable[[pa.Table], tuple[pa.Table, dict]]]] = []
    if tc.itis_sqlite:  # local ITIS for what the backbone left short of a species
        itis_db = layout.taxonomy_dir / "itis.duckdb"
        load_itis_sqlite(cfg.path(tc.itis_sqlite), itis_db, progress=progress)
        steps.append(("itis", lambda t: refine_with_itis(t, sources, itis_db)))
    if tc.gbif_api_url:  # only what the local sources missed; every answer cached
        gbif = ApiSettings.from_config(tc, tc.gbif_api_url)
        steps.append(
            (
                "gbif_api",
                lambda t: refine_with_gbif_api(
                    t,
                    sources,
                    gbif,
                    layout.taxonomy_dir / "api-cache.duckdb",
                    version=tc.gbif_api_version,
                    checklist_key=tc.gbif_checklist_key,
                    progress=progress,
                ),
            )
        )
    if tc.itis_api_url:  # last: what nothing before answered
        itis = ApiSettings.from_config(tc, tc.itis_api_url)
        cache = layout.taxonomy_dir / "itis-api-cache.duckdb"
        steps.append(("itis_api", lambda t: refine_with_itis_api(t, itis, cache, progress)))
    if tc.rank_precedence:  # per-rank choice between authority and source labels
        steps.append(
            ("precedence", lambda t: apply_rank_precedence(t, sources, tc.rank_precedence))
        )
    for step, run in steps:
        taxa, step_counts = run(taxa)
        if step in counts:
            counts[step] = step_counts
        lost.after(step, taxa)
    # Refinements change ranks' provenance: derive per-rank match types from the final rows.
    taxa = with_rank_match_types(taxa)
    write_parquet_atomic(taxa, layout.taxa)
    report = taxonomy_report(taxa, sources, images, lost.records)
    write_text_atomic(
        layout.taxonomy_dir / "report.json", json.dumps(report, indent=1, sort_keys=True)
    )
    return {
        "backbone_taxa": loaded.get("taxa"),
        "queries": taxa.num_rows,
        "match_types": report["match_types"],
        "unresolved": report["unresolved"]["names"],
        "conflicts": report["conflicts"]["total"],
        "itis": counts["itis"],
        "gbif_api": counts["gbif_api"],
        "itis_api": counts["itis_api"],
    }


def build_queries(cfg: BuildConfig, images: Counter | None = None) -> pa.Table:
    """One row per distinct taxonomy query over every source row and evaluation-set row
    (`taxonomy.queries.taxonomy_queries`). `images`, when given, is filled with the number of
    rows (images) behind each query_id."""
    evalset_rows = (
        {"source": evalset_source(es.name), **verbatim_ranks(er)}
        for es in cfg.evalsets
        for er in read_evalset(es, cfg)
    )
    columns = ["source", *VERBATIM_QUERY_FIELDS, "verbatim_common_name"]
    return taxonomy_queries(read_all_source_catalogs(cfg, columns), evalset_rows, images)


def run_taxonomy(cfg: BuildConfig, progress: Progress | None = None) -> dict:
    """The taxonomy stage: every distinct query of the sources and evaluation sets, resolved."""
    images: Counter = Counter()
    queries = build_queries(cfg, images)
    return build_taxa(cfg, Layout(cfg.root), queries, progress, dict(images))
