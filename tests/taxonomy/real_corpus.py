"""The real-name regression corpus: queries and the answers public sources give for them.

- `backbone_cases()`: every name of the GBIF backbone's Archaea excerpt as the backbone prints
  it (with authorship), its kingdom written in one of the spellings sources use, and the seven
  ranks the backbone gives it (a synonym: its accepted taxon's). Names held twice in the
  excerpt are left out (nothing in a query can tell them apart).
- `GBIF_CASES`: names asked of GBIF's species-match API whose answers rgbif and pygbif recorded
  (tests/fixtures/real/gbif-match, gbif-api), with the ranks those answers give.
- `parser_cases()`: names from GBIF name-parser's own tests with the parts they expect.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass

from tests.conftest import REAL_FIXTURES
from treeoflife.schemas import RANKS

ARCHAEA_TAXON = REAL_FIXTURES / "gbif-backbone-archaea" / "Taxon.tsv"
KINGDOM_SPELLINGS = ("Archaea", "archaea", "ARCHAEA", "Archaebacteria", None)
USABLE_RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")


@dataclass(frozen=True)
class Case:
    name: str
    kingdom: str | None
    ranks: tuple[str | None, ...]  # expected kingdom..species
    synonym: bool
    taxon_id: str


def backbone_cases() -> list[Case]:
    with open(ARCHAEA_TAXON, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    by_id = {r["taxonID"]: r for r in rows}
    names = Counter(r["canonicalName"].lower() for r in rows if r["canonicalName"])
    cases = []
    for r in rows:
        if not r["canonicalName"] or names[r["canonicalName"].lower()] > 1:
            continue
        if r["taxonRank"] not in USABLE_RANKS:
            continue
        synonym = "synonym" in r["taxonomicStatus"]
        target = by_id.get(r["acceptedNameUsageID"]) if synonym else r
        if target is None or target["taxonRank"] not in USABLE_RANKS:
            continue
        ranks = [target[k] or None for k in RANKS[:-1]]
        epithet = target["specificEpithet"] if target["taxonRank"] == "species" else None
        kingdom = KINGDOM_SPELLINGS[len(cases) % len(KINGDOM_SPELLINGS)]
        cases.append(
            Case(
                r["scientificName"], kingdom, (*ranks, epithet or None), synonym, target["taxonID"]
            )
        )
    return cases


ANIMAL = ("Animalia", "Chordata", "Mammalia", "Carnivora", "Felidae", "Puma", "concolor")
DAMSELFLY = ("Animalia", "Arthropoda", "Insecta", "Odonata", "Calopterygidae", "Calopteryx")
THISTLE = ("Plantae", "Tracheophyta", "Magnoliopsida", "Asterales", "Asteraceae", "Cirsium")
THIBAUDIA = ("Plantae", "Tracheophyta", "Magnoliopsida", "Ericales", "Ericaceae", "Thibaudia")
SUNFLOWER = ("Plantae", "Tracheophyta", "Magnoliopsida", "Asterales", "Asteraceae", "Helianthus")

# (version, name, kingdom as the source wrote it, expected seven ranks or None, match type,
#  flags); the ranks are those of the recorded answer, plus the source's own epithet where the
#  answer stops at the source's genus (`source_below_match`).
GBIF_CASES = [
    ("v1", "Cirsium arvense (L.) Scop.", "Plantae", (*THISTLE, "arvense"), "exact", set()),
    ("v1", "Cirsium arvense (L.) Scop.", "plants", (*THISTLE, "arvense"), "exact", set()),
    ("v1", "Cirsium arvense (L.) Scop.", "Viridiplantae", (*THISTLE, "arvense"), "exact", set()),
    (
        "v1",
        "Calopteryx splendens (Harris, 1780)",
        "Animalia",
        (*DAMSELFLY, "splendens"),
        "exact",
        set(),
    ),
    (
        "v1",
        "Calopteryx splendens (Harris, 1780)",
        "animals",
        (*DAMSELFLY, "splendens"),
        "exact",
        set(),
    ),
    (
        "v1",
        "Calopteryx splendens (Harris, 1780)",
        "Metazoa",
        (*DAMSELFLY, "splendens"),
        "exact",
        set(),
    ),
    ("v1", "Puma concolor (Linnaeus, 1771)", "Animalia", ANIMAL, "exact", set()),
    ("v1", "Puma concolor (Linnaeus, 1771)", "Animals", ANIMAL, "exact", set()),
    ("v1", "Puma concuolor (Linnaeus, 1771)", "Animalia", ANIMAL, "fuzzy", {"fuzzy"}),
    ("v1", "Puma concuolor (Linnaeus, 1771)", "animal", ANIMAL, "fuzzy", {"fuzzy"}),
    (
        "v1",
        "Ceylonosticta alwisi (Priyadarshana & Wijewardhane, 2016)",
        "Animalia",
        # GBIF knows the genus only; the source's epithet under that same genus is kept.
        (
            "Animalia",
            "Arthropoda",
            "Insecta",
            "Odonata",
            "Platystictidae",
            "Ceylonosticta",
            "alwisi",
        ),
        "higherrank",
        {"source_below_match"},
    ),
    ("v1", "Calopteryx", "Animalia", (*DAMSELFLY, None), "exact", set()),
    ("v1", "Calopteryx", "animals", (*DAMSELFLY, None), "exact", set()),
    ("v1", "Calopteryx", None, (*DAMSELFLY, None), "exact", set()),
    ("v1", "Fake species (John Waller 2021)", "Johnlia", None, "none", set()),
    ("v1", "Fake species (John Waller 2021)", None, None, "none", set()),
    ("v1", "Helianthus annuus", None, (*SUNFLOWER, "annuus"), "exact", set()),
    ("v1", "Aso", None, None, "none", set()),
    # v2 with the Catalogue of Life checklist: the damselfly asked as a plant is a plant genus
    # (a synonym of Thibaudia), right for a source that says Plantae; the source's epithet
    # belonged to its own genus, which GBIF replaced: dropped, and said so.
    ("v2", "Calopteryx splendens", "Plantae", (*THIBAUDIA, None), "higherrank", {"rank_dropped"}),
    ("v2", "Calopteryx splendens", "plants", (*THIBAUDIA, None), "higherrank", {"rank_dropped"}),
    ("v2", "Calopteryx fakeus", None, None, "none", set()),
]
COL_CHECKLIST = "7ddf754f-d193-4cc9-b351-99906754a03b"


def parser_cases() -> list[tuple[str, tuple[str, str, str]]]:
    path = REAL_FIXTURES / "gbif-name-parser" / "names.tsv"
    with open(path, encoding="utf-8") as fh:
        rows = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [(r["name"], (r["genus"], r["epithet"], r["infraspecific"])) for r in rows]
