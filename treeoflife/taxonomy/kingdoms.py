"""Kingdom names as sources write them, mapped to the GBIF backbone's eight kingdoms.

GBIF's species-match API accepts vernacular and historic spellings (`animals`, `plants`,
`Metazoa`) and answers in its own (`Animalia`, `Plantae`); sources copy whichever they were
given. Every place that compares or keeps a source's kingdom goes through `kingdom_key`
(for comparing) or `canonical_kingdom` (for a label). A value that maps to nothing (a typo,
`Johnlia`) is unknown: it is never compared as a kingdom, never kept as a label, and the
resolver flags it (`unknown_kingdom`) and the report lists it.

The table: GBIF's Kingdom enum (gbif-api `org.gbif.api.vocabulary.Kingdom`: Animalia, Archaea,
Bacteria, Chromista, Fungi, Plantae, Protozoa, Viruses, incertae sedis), the plural English
vernaculars, and the synonyms older classifications use (Metazoa; Viridiplantae and
Archaeplastida, whose GBIF kingdom is Plantae; Protista / Protoctista for Protozoa;
Eubacteria; Archaebacteria; Mycota / Eumycota).
"""

from __future__ import annotations

import functools

KINGDOMS = (
    "Animalia",
    "Archaea",
    "Bacteria",
    "Chromista",
    "Fungi",
    "Plantae",
    "Protozoa",
    "Viruses",
)

_SPELLINGS: dict[str, tuple[str, ...]] = {
    "Animalia": ("animal", "animals", "metazoa", "metazoans"),
    "Archaea": ("archaebacteria", "archaeobacteria", "archaeota"),
    "Bacteria": ("bacterium", "eubacteria"),
    "Chromista": ("chromists",),
    "Fungi": ("fungus", "mycota", "eumycota"),
    "Plantae": ("plant", "plants", "viridiplantae", "archaeplastida", "green plants"),
    "Protozoa": ("protozoans", "protista", "protists", "protoctista"),
    "Viruses": ("virus", "vira"),
}
KINGDOM_TABLE: dict[str, str] = {
    **{k.lower(): k for k in KINGDOMS},
    **{s: k for k, spellings in _SPELLINGS.items() for s in spellings},
}
"""lower-case spelling -> GBIF kingdom."""

UNPLACED = frozenset({"incertae sedis", "unknown", "unplaced", "not assigned"})
"""Values that say "no kingdom" (GBIF's kingdom 0 is `incertae sedis`): empty, not unknown."""


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    k = " ".join(str(value).replace("_", " ").split()).lower()
    return k or None


@functools.lru_cache(maxsize=1 << 12)
def canonical_kingdom(value: str | None) -> str | None:
    """The GBIF kingdom a spelling stands for ("animals" -> "Animalia"), else None."""
    k = _clean(value)
    return None if k is None else KINGDOM_TABLE.get(k)


def kingdom_key(value: str | None) -> str | None:
    """A kingdom for comparison (lower-case GBIF kingdom), None when empty or unknown."""
    k = canonical_kingdom(value)
    return k.lower() if k else None


def is_unknown_kingdom(value: str | None) -> bool:
    """True for a non-empty value that names no kingdom (a typo, a made-up name)."""
    k = _clean(value)
    return k is not None and k not in KINGDOM_TABLE and k not in UNPLACED


def kingdom_mapping(value: str | None) -> str:
    """How a verbatim kingdom was read, for the report: the GBIF kingdom, `unplaced` or
    `unknown`."""
    if is_unknown_kingdom(value):
        return "unknown"
    return canonical_kingdom(value) or "unplaced"
