"""Caption texts of a shard sample, written exactly as BioCLIP's `make_wds.py` wrote them.

BioCLIP (Imageomics/bioclip, scripts/evobio10m/make_wds.py `make_txt`) stores ten text members
per sample: three plain names and seven "a photo of ..." captions. Names are normalised like its
`naming.Taxon`: ranks kingdom..genus capitalised, the species epithet lower case, whitespace
collapsed; empty ranks are skipped. A missing common name falls back to the scientific name, then
to the taxonomic name.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from treeoflife.io import stable_hash64
from treeoflife.schemas import RANKS

CAPTION_MEMBERS = (
    "scientific_name.txt",
    "taxonomic_name.txt",
    "common_name.txt",
    "sci.txt",
    "com.txt",
    "taxon.txt",
    "taxonTag.txt",
    "sci_com.txt",
    "taxon_com.txt",
    "taxonTag_com.txt",
)
"""The ten BioCLIP text members, in the order they are written to a shard."""

TEXT_TYPES = ("sci", "com", "taxon", "taxonTag", "sci_com", "taxon_com", "taxonTag_com")
"""Caption kinds the plain `txt` member can hold (plus "random")."""

RANDOM_TEXT_TYPES = ("sci", "com", "taxon", "sci_com", "taxon_com")
"""BioCLIP's mixed text type: one of these per sample."""

RANDOM = "random"


def _clean(value) -> str:
    """A name with collapsed whitespace; '' for None/blank."""
    if value is None:
        return ""
    return " ".join(str(value).split())


def _ranks(row: Mapping) -> list[tuple[str, str]]:
    """(rank, normalised value) for the ranks present, in rank order."""
    out = []
    genus = _clean(row.get("genus"))
    for rank in RANKS:
        value = _clean(row.get(rank))
        if not value:
            continue
        if rank == "species":
            # The epithet only, even if a binomial slipped through.
            first, _, rest = value.partition(" ")
            if genus and rest and first.lower() == genus.lower():
                value = rest
            value = value.lower()
        else:
            value = value.capitalize()
        out.append((rank, value))
    return out


def _names(row: Mapping) -> tuple[str, str, str, str]:
    """(scientific, taxonomic, tagged, common) names of a catalog row."""
    ranks = _ranks(row)
    by_rank = dict(ranks)
    taxonomic = " ".join(v for _, v in ranks)
    tagged = " ".join(f"{rank} {value}" for rank, value in ranks)
    genus, species = by_rank.get("genus", ""), by_rank.get("species", "")
    if genus:
        scientific = f"{genus} {species}".strip()
    else:
        # BioCLIP would write an empty name here; the resolved name (or the lowest rank) is better.
        scientific = _clean(row.get("scientific_name")) or (ranks[-1][1] if ranks else "")
        scientific = scientific[:1].upper() + scientific[1:]
    if not taxonomic:
        taxonomic = tagged = scientific
    if not taxonomic:
        raise ValueError(f"row {row.get('key')!r} has no taxonomy to caption")
    common = _clean(row.get("common_name")) or scientific or taxonomic
    return scientific, taxonomic, tagged, common


_NAME_FIELDS = (*RANKS, "scientific_name", "common_name")


def caption_members(row: Mapping) -> dict[str, str]:
    """The ten BioCLIP text members of a catalog row (member suffix -> text).

    Captions depend only on the names, and a species' images share them: cached per names.
    """
    names = tuple(row.get(f) for f in _NAME_FIELDS)
    try:
        return dict(_captions(names))
    except ValueError:
        raise ValueError(f"row {row.get('key')!r} has no taxonomy to caption") from None


@functools.lru_cache(maxsize=1 << 16)
def _captions(names: tuple) -> tuple[tuple[str, str], ...]:
    scientific, taxonomic, tagged, common = _names(dict(zip(_NAME_FIELDS, names, strict=True)))
    return tuple(
        {
            "scientific_name.txt": scientific,
            "taxonomic_name.txt": taxonomic,
            "common_name.txt": common,
            "sci.txt": f"a photo of {scientific}.",
            "com.txt": f"a photo of {common}.",
            "taxon.txt": f"a photo of {taxonomic}.",
            "taxonTag.txt": f"a photo of {tagged}.",
            "sci_com.txt": f"a photo of {scientific} with common name {common}.",
            "taxon_com.txt": f"a photo of {taxonomic} with common name {common}.",
            "taxonTag_com.txt": f"a photo of {tagged} with common name {common}.",
        }.items()
    )


def resolve_text_type(text_type: str, key: str, seed: int) -> str:
    """The concrete caption kind of a sample ("random" picks one from a stable hash of key+seed)."""
    if text_type == RANDOM:
        return RANDOM_TEXT_TYPES[stable_hash64(key, str(seed)) % len(RANDOM_TEXT_TYPES)]
    if text_type not in TEXT_TYPES:
        expected = (*TEXT_TYPES, RANDOM)
        raise ValueError(f"unknown text_type {text_type!r}; expected one of {expected}")
    return text_type


def text_for(row: Mapping, text_type: str, key: str, seed: int) -> str:
    """The plain `txt` member (the only text stock open_clip reads)."""
    return caption_members(row)[resolve_text_type(text_type, key, seed) + ".txt"]
