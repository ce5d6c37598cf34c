"""EOL part keys: what a part of manifest rows is made from (sources.partstore).

A row's content (manifest fields, names joined from pages.csv), its fetch URL and the URL's
validator: a local (mirror) file's size and mtime; none for a remote URL, whose finished image
is not fetched again unless the build revalidates (docs/stages/sources.md).
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse

from treeoflife.config import BuildConfig
from treeoflife.sources.partstore import PartKey, image_id

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
