"""The published rebuild as the build's ingest: one run fills the three sources' catalogs.

With a `published` section, the source registry (sources/catalogs.py) hands each source's
ingest here: whichever source the runner asks first runs the whole published ingest (a lock
keeps flows that ingest the sources on threads from running it twice); the others find it done
(`published/ingest.done.json`, same fingerprint, every part on disk) and return their share.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
from pathlib import Path

from treeoflife import __version__
from treeoflife.config import BuildConfig
from treeoflife.io import write_text_atomic
from treeoflife.progress import Progress
from treeoflife.runner import fingerprint_paths
from treeoflife.sources.bioscan import zip_paths
from treeoflife.sources.ingest import part_done
from treeoflife.sources.published.ingest import SOURCES, ingest_published, published_dir

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
# Settings that change what the release says, not what is ingested.
RELEASE_ONLY = ("label_mode", "expected_totals")


def published_inputs(cfg: BuildConfig) -> list[Path | None]:
    """Every local file the published ingest reads (URLs are not files)."""
    pc = cfg.published
    files = [cfg.path(pc.catalog), cfg.path(pc.licenses) if pc.licenses else None]
    files += [cfg.path(a) for a in pc.inat21_archives if "://" not in a]
    files += zip_paths(cfg, pc.image_sets) + zip_paths(cfg, pc.bioscan_zips)
    files += [cfg.path(v) for v in cfg.sources.eol.mirror.values() if "://" not in v]
    return files


def published_settings(cfg: BuildConfig) -> dict:
    section = dataclasses.asdict(cfg.published)
    return {
        "published": {k: v for k, v in section.items() if k not in RELEASE_ONLY},
        "eol": dataclasses.asdict(cfg.sources.eol),
    }


def _fingerprint(cfg: BuildConfig) -> str:
    files = fingerprint_paths(published_inputs(cfg), cfg.root)
    body = [__version__, published_settings(cfg), files]
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _done(cfg: BuildConfig, fp: str) -> dict | None:
    """The last run's result if it had this fingerprint and every part it wrote is there."""
    try:
        marker = json.loads((published_dir(cfg) / "ingest.done.json").read_text())
    except (OSError, ValueError):
        return None
    if marker.get("fingerprint") != fp:
        return None
    result = marker.get("result") or {}
    for source in SOURCES:
        parts = (result.get(source) or {}).get("parts", 0)
        if not all(part_done(cfg, source, i) for i in range(parts)):
            return None
    return result


def published_ingest(cfg: BuildConfig, source: str, progress: Progress | None = None) -> dict:
    """The published ingest (run once per fingerprint); returns `source`'s share of it."""
    with _LOCK:
        fp = _fingerprint(cfg)
        done = _done(cfg, fp)
        if done is None:
            done = ingest_published(cfg, progress)
            body = {"fingerprint": fp, "result": done}
            write_text_atomic(published_dir(cfg) / "ingest.done.json", json.dumps(body, indent=1))
        else:
            log.info("published ingest: up to date (%s)", source)
    return {**(done.get(source) or {"source": source, "rows": 0}), "published": True}
