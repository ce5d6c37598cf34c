"""Backbones for taxonomy tests: the real GBIF Archaea excerpt and small archives made by code."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from tests.conftest import REAL_FIXTURES
from treeoflife.records import query_id
from treeoflife.taxonomy import load_backbone
from treeoflife.taxonomy.queries import QUERY_COLUMNS

REAL_ARCHAEA = REAL_FIXTURES / "gbif-backbone-archaea"

TAXON_HEADER = (
    "taxonID",
    "acceptedNameUsageID",
    "scientificName",
    "canonicalName",
    "genericName",
    "specificEpithet",
    "taxonRank",
    "taxonomicStatus",
    "kingdom",
    "phylum",
    "class",
    "order",
    "family",
    "genus",
)
PLANT = ("Plantae", "Tracheophyta", "Magnoliopsida", "Lamiales", "Lamiaceae")
BIRD = ("Animalia", "Chordata", "Aves", "Passeriformes", "Prunellidae")

# A tiny backbone with a cross-kingdom homonym (Prunella: a plant and a bird genus).
HOMONYM_TAXA = [
    ("1", "", "Plantae", "Plantae", "", "", "kingdom", "accepted", "Plantae", "", "", "", "", ""),
    (
        "2",
        "",
        "Animalia",
        "Animalia",
        "",
        "",
        "kingdom",
        "accepted",
        "Animalia",
        "",
        "",
        "",
        "",
        "",
    ),
    ("10", "", "Prunella L.", "Prunella", "Prunella", "", "genus", "accepted", *PLANT, "Prunella"),
    (
        "11",
        "",
        "Prunella vulgaris L.",
        "Prunella vulgaris",
        "Prunella",
        "vulgaris",
        "species",
        "accepted",
        *PLANT,
        "Prunella",
    ),
    (
        "12",
        "11",
        "Brunella vulgaris (L.) Moench",
        "Brunella vulgaris",
        "Brunella",
        "vulgaris",
        "species",
        "synonym",
        *PLANT,
        "Prunella",
    ),
    (
        "20",
        "",
        "Prunella Vieillot, 1816",
        "Prunella",
        "Prunella",
        "",
        "genus",
        "accepted",
        *BIRD,
        "Prunella",
    ),
    (
        "21",
        "",
        "Prunella modularis (Linnaeus, 1758)",
        "Prunella modularis",
        "Prunella",
        "modularis",
        "species",
        "accepted",
        *BIRD,
        "Prunella",
    ),
    (
        "22",
        "",
        "Prunella collaris (Scopoli, 1769)",
        "Prunella collaris",
        "Prunella",
        "collaris",
        "species",
        "accepted",
        *BIRD,
        "Prunella",
    ),
    ("30", "", "Prunellidae", "Prunellidae", "", "", "family", "accepted", *BIRD, ""),
    # Same name, same kingdom, different phyla: no context can tell them apart.
    (
        "40",
        "",
        "Duplicia A",
        "Duplicia",
        "Duplicia",
        "",
        "genus",
        "accepted",
        "Plantae",
        "Bryophyta",
        "Bryopsida",
        "Hypnales",
        "Hypnaceae",
        "Duplicia",
    ),
    (
        "41",
        "",
        "Duplicia B",
        "Duplicia",
        "Duplicia",
        "",
        "genus",
        "accepted",
        "Plantae",
        "Tracheophyta",
        "Liliopsida",
        "Poales",
        "Poaceae",
        "Duplicia",
    ),
    # "Ambix alba": an accepted plant and, as a synonym, an animal; only context decides.
    (
        "60",
        "",
        "Ambix alba L.",
        "Ambix alba",
        "Ambix",
        "alba",
        "species",
        "accepted",
        *PLANT,
        "Ambix",
    ),
    (
        "61",
        "62",
        "Ambix alba Smith",
        "Ambix alba",
        "Ambix",
        "alba",
        "species",
        "synonym",
        *BIRD,
        "Otherus",
    ),
    (
        "62",
        "",
        "Otherus albus (Smith)",
        "Otherus albus",
        "Otherus",
        "albus",
        "species",
        "accepted",
        *BIRD,
        "Otherus",
    ),
    # A backbone taxon with no phylum/class: the source may fill them in.
    (
        "50",
        "",
        "Gappia testa",
        "Gappia testa",
        "Gappia",
        "testa",
        "species",
        "accepted",
        "Animalia",
        "",
        "",
        "Gapiformes",
        "Gappidae",
        "Gappia",
    ),
]
HOMONYM_VERNACULARS = [
    ("11", "selfheal", "en"),
    ("11", "Common Selfheal", "en"),
    ("11", "Kleine Braunelle", "de"),
    ("21", "Heckenbraunelle", "de"),
    ("21", "Dunnock", "en"),
]


def write_dwca(folder: Path, taxa, vernaculars=(), header=TAXON_HEADER) -> Path:
    """A Darwin Core Archive folder without meta.xml (column names from the header lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(header)] + ["\t".join(row) for row in taxa]
    (folder / "Taxon.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if vernaculars:
        vlines = ["taxonID\tvernacularName\tlanguage"] + ["\t".join(v) for v in vernaculars]
        (folder / "VernacularName.tsv").write_text("\n".join(vlines) + "\n", encoding="utf-8")
    return folder


def make_queries(*queries: dict) -> pa.Table:
    """A queries table (all columns present) with query ids as the records module makes them."""
    rows = []
    for q in queries:
        row = {c: q.get(c) for c in QUERY_COLUMNS}
        row["source"] = q.get("source", "eol")
        row["query_id"] = q.get("query_id") or query_id(row["source"], row)
        rows.append(row)
    schema = pa.schema([(c, pa.string()) for c in QUERY_COLUMNS])
    return pa.Table.from_pylist(rows, schema=schema)


@pytest.fixture(scope="session")
def archaea_db(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("archaea") / "backbone.duckdb"
    load_backbone(REAL_ARCHAEA, db)
    return db


@pytest.fixture(scope="session")
def homonym_db(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("homonyms")
    folder = write_dwca(root / "dwca", HOMONYM_TAXA, HOMONYM_VERNACULARS)
    db = root / "backbone.duckdb"
    load_backbone(folder, db)
    return db
