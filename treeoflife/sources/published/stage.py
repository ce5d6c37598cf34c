"""The published rebuild as the build's ingest: one run fills the three sources' catalogs.

`stage_ingest` hands over to `published_ingest_stage` when the config has a `published`
section; whichever source asks first runs the whole published ingest (a lock keeps flows that
ingest the sources on threads from running it twice), then each source's marker is written as
if that source had been ingested, so the taxonomy, hashes, dedup and release stages see their
usual upstream markers.
"""

from __future__ import annotations

import dataclasses
import logging
import threading

from treeoflife import __version__
from treeoflife.config import BuildConfig
from treeoflife.layout import Layout
from treeoflife.progress import Progress
from treeoflife.resume import completed, fingerprint, fingerprint_paths, mark_done
from treeoflife.sources.bioscan import zip_paths
from treeoflife.sources.published.ingest import SOURCES, ingest_published, plan_path

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
STAGE = "ingest-published"
# Settings that change what the release says, not what is ingested.
RELEASE_ONLY = ("label_mode", "expected_totals")


def ingest_fingerprint(cfg: BuildConfig) -> str:
    pc = cfg.published
    section = {k: v for k, v in dataclasses.asdict(pc).items() if k not in RELEASE_ONLY}
    files = [cfg.path(pc.catalog), cfg.path(pc.licenses) if pc.licenses else None]
    files += [cfg.path(a) for a in pc.inat21_archives if "://" not in a]
    files += zip_paths(cfg, pc.image_sets) + zip_paths(cfg, pc.bioscan_zips)
    eol = dataclasses.asdict(cfg.sources.eol)
    return fingerprint(STAGE, __version__, section, eol, fingerprint_paths(files))


def published_ingest_stage(cfg: BuildConfig, source: str, progress: Progress | None = None) -> dict:
    """The published ingest (run once per fingerprint); returns `source`'s share of it."""
    layout = Layout(cfg.root)
    with _LOCK:
        fp = ingest_fingerprint(cfg)
        done = completed(layout.state_dir, STAGE, fp, [plan_path(cfg)])
        up_to_date = done is not None
        if done is None:
            done = ingest_published(cfg, progress)
            mark_done(layout.state_dir, STAGE, fp, done)
            for s in SOURCES:
                mark_done(layout.state_dir, f"ingest-{s}", fp, {"published": done.get(s)})
        else:
            log.info("%s: up to date, skipped", STAGE)
    share = done.get(source) or {"source": source, "rows": 0}
    return {**share, "published": True, "up_to_date": up_to_date}
