"""Hashes of images and evaluation sets, and the removal list they lead to.

- phash: a 64-bit DCT perceptual hash (`PHASH_ALGO` names the version stored next to it).
- hashing: md5 + pHash of a source catalog's stored images and of evaluation sets' images.
- removals: exact / near copies of evaluation images, held-out species, in-train duplicates.
"""

from treeoflife.dedup.hashing import (
    hash_catalog,
    hash_catalog_parts,
    hash_evalset_rows,
)
from treeoflife.dedup.phash import (
    PHASH_ALGO,
    decode_grey,
    hamming,
    phash64,
    phash_from_pixels,
    phash_many,
    phash_of_grey,
)
from treeoflife.dedup.removals import (
    combine_removals,
    find_eval_duplicates,
    find_held_out_species,
    find_in_train_duplicates,
    removal_report,
)
from treeoflife.schemas import EVAL_HASHES

__all__ = [
    "EVAL_HASHES",
    "PHASH_ALGO",
    "combine_removals",
    "find_eval_duplicates",
    "find_held_out_species",
    "find_in_train_duplicates",
    "hamming",
    "hash_catalog",
    "hash_catalog_parts",
    "hash_evalset_rows",
    "phash64",
    "phash_from_pixels",
    "phash_many",
    "phash_of_grey",
    "decode_grey",
    "removal_report",
]
