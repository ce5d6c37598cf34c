"""Stable keys and derived ids: pure functions of inputs, so reruns give the same bytes."""

from __future__ import annotations

import hashlib
import uuid

_TREEOFLIFE_NS = uuid.UUID("5b1c8f3e-6d0a-4c53-9f7e-2b9a7a1d0e11")

VERBATIM_QUERY_FIELDS = (
    "verbatim_kingdom",
    "verbatim_phylum",
    "verbatim_class",
    "verbatim_order",
    "verbatim_family",
    "verbatim_genus",
    "verbatim_scientific_name",
)
TAXONOMY_QUERY_COLUMNS = ("query_id", "source", *VERBATIM_QUERY_FIELDS, "verbatim_common_name")
"""The columns of a taxonomy query table (one list for the pipeline, resolver and ITIS)."""


def inat21_key(file_uuid: str) -> str:
    return f"inat21/{file_uuid}"


def bioscan_key(processid: str) -> str:
    return f"bioscan/{processid}"


def eol_key(content_id: int | str, page_id: int | str) -> str:
    return f"eol/{content_id}_{page_id}"


def treeoflife_id(key: str) -> str:
    """The public id of an image: a UUID5 of its stable key."""
    return str(uuid.uuid5(_TREEOFLIFE_NS, key))


def query_id(source: str, verbatim: dict) -> str:
    """Id of a taxonomy query: the source plus its verbatim ranks and name, as given.

    Rows with the same verbatim context share one resolution (one row in the taxa table).
    """
    parts = [source] + [(verbatim.get(f) or "") for f in VERBATIM_QUERY_FIELDS]
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:20]
