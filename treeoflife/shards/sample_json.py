"""The `json` member of a shard sample: what a reader of the shards gets beside the image.

One function, so the shape of that member is decided in one place (the writers, the verifier and
the fingerprint of a shard all call it).
"""

from __future__ import annotations

from collections.abc import Mapping

from treeoflife.schemas import CATALOG

CATALOG_COLUMNS = tuple(CATALOG.names)


def sample_json(row: Mapping) -> dict:
    """The `json` member: the row's CATALOG columns (not the image-store location)."""
    return {c: row.get(c) for c in CATALOG_COLUMNS}
