"""The `json` member of a shard sample: what a reader of the shards gets beside the image.

One function, so the shape of that member is decided in one place (the writers, the verifier and
the fingerprint of a shard all call it).

The member carries what a trainer needs, with types that never change from one sample to the
next: readers that infer a schema from the first samples (Hugging Face `datasets` looks at 5)
must not meet a null where a later sample has text, nor an unsigned 64-bit integer. So text is
never null (a missing value is ""), the pHash is 16 hex digits (imagehash's `str(hash)`), and
source-specific ids stay in the catalog, which keeps the full row (`key` joins the two).
"""

from __future__ import annotations

from collections.abc import Mapping

from treeoflife.schemas import RANKS

TEXT_FIELDS = (
    "key",
    "treeoflife_id",
    "source",
    *RANKS,
    "scientific_name",
    "common_name",
    "license",
    "rights_holder",
    "md5",
    "phash_algo",
    "split",
    "shard",
)
"""Catalog text columns in the member ("" where the catalog has null)."""

INT_FIELDS = ("width", "height", "shard_position")
"""Catalog integer columns in the member (the release sets them for every image it ships)."""

PHASH_FIELD = "phash"
"""The catalog's uint64 pHash, as 16 lowercase hex digits in the member."""

SAMPLE_JSON_FIELDS = tuple(sorted((*TEXT_FIELDS, *INT_FIELDS, PHASH_FIELD)))
"""The member's keys, in the order the writer stores them (sorted)."""


def phash_hex(value: int | None) -> str:
    """A uint64 pHash as 16 lowercase hex digits ("" when there is none)."""
    return "" if value is None else f"{int(value):016x}"


def sample_json(row: Mapping) -> dict:
    """The `json` member of a catalog row: its trainer-facing columns with stable types."""
    out: dict = {c: "" if row.get(c) is None else str(row[c]) for c in TEXT_FIELDS}
    for c in INT_FIELDS:
        out[c] = None if row.get(c) is None else int(row[c])
    out[PHASH_FIELD] = phash_hex(row.get(PHASH_FIELD))
    return out
