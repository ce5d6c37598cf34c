"""The sources as the later stages see them: which are configured, the files each ingest reads,
its catalog parts read back, and one ingest run (`ingest_source`)."""

from __future__ import annotations

import logging
import re
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
from treeoflife.storage import FsspecStorage, push_files

log = logging.getLogger(__name__)


def source_inputs(cfg: BuildConfig, source: str) -> list[Path | None]:
    """Every file (or folder of files) the source's ingest reads."""
    s = cfg.sources
    if source == "inat21":
        return [cfg.path(p) for a in s.inat21.archives for p in (a.images, a.annotations)]
    if source == "bioscan":
        return [cfg.path(s.bioscan.metadata), *zip_paths(cfg)]  # glob patterns expanded
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


def ingest_source(
    cfg: BuildConfig,
    source: str,
    progress: Progress | None = None,
    map_parts: PartMapper | None = None,
) -> dict:
    """Ingest one source into `catalog/<source>/` + `images/<source>/` (resumable by part).

    `map_parts` (treeoflife.fanout) runs EOL's download parts elsewhere (e.g. Dask workers);
    by default they run here. The outputs do not depend on it.
    """
    if source == "eol" and map_parts is not None:
        stats = ingest_eol(cfg, progress=progress, map_parts=map_parts).to_dict()
    else:
        fn = {"inat21": ingest_inat21, "bioscan": ingest_bioscan, "eol": ingest_eol}
        stats = fn[source](cfg, progress=progress).to_dict()
    return stats


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


def read_source_catalog(cfg: BuildConfig, source: str) -> pa.Table:
    """All parts of one source's catalog, in part order."""
    parts = sorted(Layout(cfg.root).catalog_dir(source).glob("part-*[0-9].parquet"))
    if not parts:
        return schemas.SOURCE_CATALOG.empty_table()
    return pa.concat_tables([pq.read_table(p, schema=schemas.SOURCE_CATALOG) for p in parts])


def read_all_source_catalogs(cfg: BuildConfig) -> pa.Table:
    return pa.concat_tables([read_source_catalog(cfg, s) for s in schemas.SOURCES])


def add_query_ids(table: pa.Table) -> pa.Table:
    """Append the `query_id` column (a pure function of source + verbatim ranks and name)."""
    cols = {c: table.column(c).to_pylist() for c in ["source", *records.VERBATIM_QUERY_FIELDS]}
    ids = [
        records.query_id(src, {f: cols[f][i] for f in records.VERBATIM_QUERY_FIELDS})
        for i, src in enumerate(cols["source"])
    ]
    return table.append_column("query_id", pa.array(ids, pa.string()))


def push_image_stores(cfg: BuildConfig, shared: FsspecStorage, image_files) -> None:
    """Copy the image stores tasks will read to shared storage (what is there is kept)."""
    rels = sorted({f for f in image_files if f is not None})
    root = cfg.root.resolve()
    copied = push_files(root, rels, shared, Layout(cfg.root).shared_ledger)
    log.info("shared storage %s: %d of %d image stores copied", shared.url(""), copied, len(rels))
