"""The sources as the build sees them: the registry (which are configured, the files each
ingest reads, the ingest), their catalog parts read back, and repair of damaged parts."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from treeoflife import records, schemas
from treeoflife.config import BuildConfig
from treeoflife.fanout import PartMapper
from treeoflife.layout import Layout
from treeoflife.progress import Progress
from treeoflife.sources.bioscan import ingest_bioscan, zip_paths
from treeoflife.sources.eol import ingest_eol
from treeoflife.sources.inat21 import ingest_inat21
from treeoflife.sources.ingest import IngestStats
from treeoflife.sources.published.stage import (
    published_ingest,
    published_inputs,
    published_settings,
)
from treeoflife.storage import FsspecStorage, push_files
from treeoflife.vocabulary import Source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceEntry:
    """What the build needs to know of a source: whether the config names it, every file its
    ingest reads (the stage's fingerprint), and the ingest itself (resumable by part, into
    `catalog/<name>/` + `images/<name>/`). Register a new source in `REGISTRY`."""

    name: str
    configured: Callable[[BuildConfig], bool]
    inputs: Callable[[BuildConfig], list[Path | None]]
    ingest: Callable[[BuildConfig, Progress | None, PartMapper | None], IngestStats]


def _inat21_inputs(cfg: BuildConfig) -> list[Path | None]:
    return [cfg.path(p) for a in cfg.sources.inat21.archives for p in (a.images, a.annotations)]


def _bioscan_inputs(cfg: BuildConfig) -> list[Path | None]:
    return [cfg.path(cfg.sources.bioscan.metadata), *zip_paths(cfg)]  # glob patterns expanded


def _eol_inputs(cfg: BuildConfig) -> list[Path | None]:
    eol = cfg.sources.eol
    return (
        [cfg.path(m) for m in eol.manifests]
        + [cfg.path(eol.pages)]
        + [cfg.path(v) for v in eol.mirror.values() if "://" not in v]  # a local mirror
    )


REGISTRY: dict[str, SourceEntry] = {
    e.name: e
    for e in [
        SourceEntry(
            Source.INAT21,
            configured=lambda cfg: bool(cfg.sources.inat21.archives),
            inputs=_inat21_inputs,
            ingest=lambda cfg, progress, map_parts: ingest_inat21(cfg, progress),
        ),
        SourceEntry(
            Source.BIOSCAN,
            configured=lambda cfg: bool(cfg.sources.bioscan.metadata),
            inputs=_bioscan_inputs,
            ingest=lambda cfg, progress, map_parts: ingest_bioscan(cfg, progress),
        ),
        SourceEntry(
            Source.EOL,
            configured=lambda cfg: bool(cfg.sources.eol.manifests),
            inputs=_eol_inputs,
            # map_parts runs the download parts elsewhere (e.g. Dask workers); None: here
            ingest=lambda cfg, progress, map_parts: ingest_eol(cfg, progress, map_parts=map_parts),
        ),
    ]
}


def source_inputs(cfg: BuildConfig, source: str) -> list[Path | None]:
    """Every file (or folder of files) the source's ingest reads."""
    if cfg.published.configured:  # a published rebuild fills every source (sources/published)
        return published_inputs(cfg)
    return REGISTRY[source].inputs(cfg)


def source_configured(cfg: BuildConfig, source: str) -> bool:
    return cfg.published.configured or REGISTRY[source].configured(cfg)


def source_settings(cfg: BuildConfig, source: str) -> dict:
    """The settings a source's catalog depends on (a published rebuild: its own, and EOL's
    downloader settings)."""
    if cfg.published.configured:
        return published_settings(cfg)
    return dataclasses.asdict(getattr(cfg.sources, source))


def ingest_source(
    cfg: BuildConfig,
    source: str,
    progress: Progress | None = None,
    map_parts: PartMapper | None = None,
) -> dict:
    """Ingest one source (resumable by part); its stats. `map_parts` (treeoflife.fanout) runs
    the parts elsewhere where the source can; the outputs do not depend on it."""
    if cfg.published.configured:
        return published_ingest(cfg, source, progress)
    return REGISTRY[source].ingest(cfg, progress, map_parts).to_dict()


_PART_NUMBER = re.compile(r"(?:^|\.)part-(\d+)\.")


def remove_damaged_parts(cfg: BuildConfig, source: str, damaged: list[Path]) -> None:
    """Before an ingest runs again over damaged files: remove every file of each damaged part
    (its image store, catalog and sidecars), so the ingest writes the whole part again (a part
    whose catalog exists is done). Other files are removed alone."""
    layout = Layout(cfg.root)
    folders = (layout.catalog_dir(source), layout.images_dir(source))
    numbers = set()
    for path in damaged:
        match = _PART_NUMBER.search(path.name)
        if match:
            numbers.add(int(match[1]))
        path.unlink(missing_ok=True)
    for folder in folders:
        for path in sorted(folder.glob("*part-*")):
            match = _PART_NUMBER.search(path.name)
            if match and int(match[1]) in numbers:
                log.info("%s: removing %s (its part was damaged)", source, path)
                path.unlink()


def source_parts(cfg: BuildConfig, source: str) -> list[Path]:
    """The catalog part files of one source, in part order."""
    return sorted(Layout(cfg.root).catalog_dir(source).glob("part-*[0-9].parquet"))


def read_source_catalog(
    cfg: BuildConfig, source: str, columns: list[str] | None = None
) -> pa.Table:
    """All parts of one source's catalog, in part order (only `columns`, when given: a stage
    that needs 9 of the catalog's columns does not hold all of them for 10M rows)."""
    parts = source_parts(cfg, source)
    if not parts:
        empty = schemas.SOURCE_CATALOG.empty_table()
        return empty if columns is None else empty.select(columns)
    return pa.concat_tables(
        [pq.read_table(p, schema=schemas.SOURCE_CATALOG, columns=columns) for p in parts]
    )


def read_all_source_catalogs(cfg: BuildConfig, columns: list[str] | None = None) -> pa.Table:
    return pa.concat_tables([read_source_catalog(cfg, s, columns) for s in schemas.SOURCES])


def add_query_ids(table: pa.Table) -> pa.Table:
    """Append the `query_id` column (a pure function of source + verbatim ranks and name),
    column-wise: hashed once per distinct query, not a Python dict per row."""
    return table.append_column("query_id", records.query_id_column(table))


def push_image_stores(cfg: BuildConfig, shared: FsspecStorage, image_files) -> None:
    """Copy the image stores tasks will read to shared storage (what is there is kept)."""
    rels = sorted({f for f in image_files if f is not None})
    root = cfg.root.resolve()
    copied = push_files(root, rels, shared, Layout(cfg.root).shared_ledger)
    log.info("shared storage %s: %d of %d image stores copied", shared.url(""), copied, len(rels))
