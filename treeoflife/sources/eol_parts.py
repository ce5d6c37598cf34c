"""EOL parts: what a part of manifest rows is made from (sources.partstore), its files, and
which parts a run must write.

A part's key hashes its rows' content (manifest fields, names joined from pages.csv), their fetch
URLs and each URL's validator: a local (mirror) file's size and mtime; none for a remote URL,
whose finished image is not fetched again unless the build revalidates (docs/stages/sources.md).
`manifest_parts` gives the manifest's parts in order to the runners in eol.py: a current part is
skipped (and counted) there, a part to write comes with its plan: the images earlier parts
stored, the rows a rerun fetches again, the validators kept for its remote images.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from treeoflife.config import BuildConfig
from treeoflife.fanout import DONE, Parts, batches
from treeoflife.progress import Progress
from treeoflife.sources.eol_manifest import iter_manifest_rows
from treeoflife.sources.eol_validators import ValidatorIndex
from treeoflife.sources.ingest import (
    PART_NAME,
    catalog_dir,
    part_done,
    part_is_current,
    part_parquet,
    reuse_index,
)
from treeoflife.sources.partstore import PartKey, ReuseIndex, image_id
from treeoflife.sources.rerun import PartRerun, pending_reruns, refetch_keys

SOURCE = "eol"


@dataclasses.dataclass(frozen=True)
class PartPlan:
    """What one part is made from (`key`), its rows' image ids, the images of rows an earlier
    part already stored (used instead of fetching them again), and, revalidating, the stored
    remote images to ask about again with the validators kept for them (eol_validators.py)."""

    key: str
    ids: list
    reused: dict = dataclasses.field(default_factory=dict)  # row key -> StoredImage
    stored: dict = dataclasses.field(default_factory=dict)  # row key -> StoredImage (revalidate)
    validators: dict = dataclasses.field(default_factory=dict)  # row key -> (KeptValidators,)


def decode_settings(cfg: BuildConfig) -> tuple:
    """What a stored EOL image's bytes depend on besides the fetched bytes."""
    ecfg = cfg.sources.eol
    return ("decode", ecfg.resize_mode, ecfg.image_size, ecfg.jpeg_quality, ecfg.max_bytes)


def url_validator(url: str | None) -> tuple | None:
    """What says an image changed without fetching it: a local (mirror) file's size and
    mtime; None for a remote URL (a finished remote image is not fetched again unless the
    build revalidates: docs/stages/sources.md)."""
    if url is None or not url.lower().startswith("file:"):
        return None
    try:
        st = os.stat(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    except (OSError, ValueError):
        return ("missing",)
    return (st.st_size, st.st_mtime_ns)


def plan_part(cfg: BuildConfig, batch: list) -> PartPlan:
    """The key of a part of manifest rows: each row's content (names from pages.csv
    included), its URL and the URL's validator, and the settings of the stored bytes."""
    settings = decode_settings(cfg)
    key = PartKey(SOURCE, settings)
    ids = []
    for row, url in batch:
        validator = url_validator(url)
        key.add(row, url, validator)
        ids.append(image_id(url, validator, settings) if url is not None else None)
    return PartPlan(key.hexdigest(), ids)


def is_remote(url: str | None) -> bool:
    return url is not None and not url.lower().startswith("file:")


def status_parquet(cfg: BuildConfig, index: int) -> Path:
    return catalog_dir(cfg, SOURCE) / (PART_NAME.format(index) + ".status.parquet")


def hosts_report(cfg: BuildConfig, index: int | None = None) -> Path:
    """The run's per-host download figures (one per download process: per part there)."""
    name = "hosts" if index is None else "hosts." + PART_NAME.format(index)  # not a part-* file
    return catalog_dir(cfg, SOURCE) / (name + ".status.parquet")


def rerun_plan(cfg: BuildConfig, index: int) -> PartRerun | None:
    """A finished part's rows to fetch again (transient failures, `rerun_transient` runs at
    most), or None: the part stays as it is."""
    if not part_done(cfg, SOURCE, index):
        return None
    keys = refetch_keys(status_parquet(cfg, index), cfg.sources.eol.rerun_transient)
    if not keys:
        return None
    return PartRerun.load(status_parquet(cfg, index), part_parquet(cfg, SOURCE, index),
                          cfg.root, keys)  # fmt: skip


def transient_reruns_pending(cfg: BuildConfig) -> int:
    """Rows the next EOL ingest would fetch again (the stage is not up to date while > 0)."""
    paths = sorted(catalog_dir(cfg, SOURCE).glob("part-?????.status.parquet"))
    return pending_reruns(paths, cfg.sources.eol.rerun_transient)


def part_todo(
    cfg: BuildConfig,
    index: int,
    batch: list,
    reuse: ReuseIndex | None,
    validators: ValidatorIndex | None = None,
):
    """(plan, rerun) of a part to write, or None when the part on disk is current and has no
    transient failure to fetch again. With `sources.eol.revalidate` a part with remote URLs
    is written again, each stored remote image asked again whether it changed (a conditional
    request with the validators kept for it; a plain GET without)."""
    plan = plan_part(cfg, batch)
    revalidate = cfg.sources.eol.revalidate and any(is_remote(url) for _, url in batch)
    if not revalidate and part_is_current(cfg, SOURCE, index, plan.key):
        rerun = rerun_plan(cfg, index)
        return None if rerun is None else (_with_validators(plan, batch, validators), rerun)
    if reuse is not None:
        reuse.set_aside()
        reused, stored = {}, {}
        for (row, url), iid in zip(batch, plan.ids, strict=True):
            image = reuse.get(iid)
            if image is None:
                continue
            if revalidate and is_remote(url):  # what changed (or was taken down) is what it serves
                stored[row["key"]] = image
            else:
                reused[row["key"]] = image
        plan = dataclasses.replace(plan, reused=reused, stored=stored)
    return _with_validators(plan, batch, validators), None


def _with_validators(plan: PartPlan, batch: list, validators: ValidatorIndex | None) -> PartPlan:
    """The plan with the validators kept for its remote rows' images (read from every part
    before the first part is rewritten: a part's file is replaced with the part)."""
    if validators is None:
        return plan
    validators.load()  # even for a part without remote rows: it may replace a part with some
    kept = {}
    for (row, url), iid in zip(batch, plan.ids, strict=True):
        entries = validators.get(iid) if is_remote(url) else None
        if entries:
            kept[row["key"]] = entries
    return dataclasses.replace(plan, validators=kept)


def manifest_parts(
    cfg: BuildConfig, pages: dict, progress: Progress, task: Callable[..., Any] | None = None
) -> Parts:
    """The manifest's parts in order (treeoflife.fanout.Parts), for the runners in eol.py: a
    current part (nothing to fetch again) is skipped, counted and its rows added to the
    progress there; a part to write is the item `task(index, rows, plan, rerun)` (default: that
    tuple)."""
    reuse = reuse_index(cfg, SOURCE)
    validators = ValidatorIndex(cfg)

    def to_do(part: tuple[int, list]) -> Any:
        index, batch = part
        todo = part_todo(cfg, index, batch, reuse, validators)
        if todo is None:
            return DONE
        plan, rerun = todo
        return (index, batch, plan, rerun) if task is None else task(index, batch, plan, rerun)

    rows = iter_manifest_rows(cfg, pages)
    parts = enumerate(batches(rows, cfg.sources.eol.rows_per_part))
    return Parts(parts, to_do, size=lambda part: len(part[1]), progress=progress)
