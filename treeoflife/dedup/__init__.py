"""Hashes of images and evaluation sets, and the removal list they lead to.

- phash: a 64-bit DCT perceptual hash (`PHASH_ALGO` names the version stored next to it).
- hashing: md5 + pHash of a source catalog's stored images and of evaluation-set CSVs.
- removals: exact / near copies of evaluation images, held-out species, in-train duplicates.
"""

from treeoflife.dedup.hashing import EVAL_HASHES, hash_catalog, hash_evalset
from treeoflife.dedup.phash import (
    PHASH_ALGO,
    hamming,
    phash64,
    phash_from_pixels,
    phash_many,
    phash_pixels,
)
from treeoflife.dedup.removals import (
    REASON_PRECEDENCE,
    combine_removals,
    find_eval_duplicates,
    find_held_out_species,
    find_in_train_duplicates,
    removal_report,
)

__all__ = [
    "EVAL_HASHES",
    "PHASH_ALGO",
    "REASON_PRECEDENCE",
    "combine_removals",
    "find_eval_duplicates",
    "find_held_out_species",
    "find_in_train_duplicates",
    "hamming",
    "hash_catalog",
    "hash_evalset",
    "phash64",
    "phash_from_pixels",
    "phash_many",
    "phash_pixels",
    "removal_report",
]
