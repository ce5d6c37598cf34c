"""The GBIF `simple.txt.gz` dump (checklistbank's backbone table as PostgreSQL COPY text)."""

from __future__ import annotations

import gzip

import duckdb

from treeoflife.schemas import RANKS
from treeoflife.taxonomy import load_backbone, resolve_taxa
from treeoflife.taxonomy.backbone import SIMPLE_COLUMNS

from .conftest import make_queries

N = r"\N"
BIRD_KEYS = ["1", "2", "3", "4", "5", "6"]  # kingdom..genus keys of the dunnock


def _row(id_, parent, synonym, status, rank, sci, canonical, genus_or_above, epithet, keys, sp):
    values = dict.fromkeys(SIMPLE_COLUMNS, N)
    values.update(
        id=id_,
        parent_key=parent or N,
        is_synonym="t" if synonym else "f",
        status=status,
        rank=rank,
        nom_status="{}",
        scientific_name=sci,
        canonical_name=canonical,
        genus_or_above=genus_or_above,
        specific_epithet=epithet or N,
        issues="{}",
    )
    for r, k in zip(("kingdom", "phylum", "class", "order", "family", "genus"), keys, strict=False):
        values[f"{r}_key"] = k
    values["species_key"] = sp or N
    return "\t".join(values[c] for c in SIMPLE_COLUMNS)


ROWS = [
    _row("1", None, False, "ACCEPTED", "KINGDOM", "Animalia", "Animalia", "Animalia", None,
         BIRD_KEYS[:1], None),
    _row("2", "1", False, "ACCEPTED", "PHYLUM", "Chordata", "Chordata", "Chordata", None,
         BIRD_KEYS[:2], None),
    _row("3", "2", False, "ACCEPTED", "CLASS", "Aves", "Aves", "Aves", None, BIRD_KEYS[:3], None),
    _row("4", "3", False, "ACCEPTED", "ORDER", "Passeriformes", "Passeriformes", "Passeriformes",
         None, BIRD_KEYS[:4], None),
    _row("5", "4", False, "ACCEPTED", "FAMILY", "Prunellidae", "Prunellidae", "Prunellidae", None,
         BIRD_KEYS[:5], None),
    _row("6", "5", False, "ACCEPTED", "GENUS", "Prunella Vieillot, 1816", "Prunella", "Prunella",
         None, BIRD_KEYS, None),
    _row("7", "6", False, "ACCEPTED", "SPECIES", "Prunella modularis (Linnaeus, 1758)",
         "Prunella modularis", "Prunella", "modularis", BIRD_KEYS, "7"),
    # A synonym: parent_key is its accepted usage; its classification is the accepted one.
    _row("8", "7", True, "HOMOTYPIC_SYNONYM", "SPECIES", "Accentor modularis (Linnaeus, 1758)",
         "Accentor modularis", "Accentor", "modularis", BIRD_KEYS, "7"),
]  # fmt: skip


def test_simple_dump_loads_and_resolves_like_the_archive(tmp_path):
    dump = tmp_path / "simple.txt.gz"
    with gzip.open(dump, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(ROWS) + "\n")
    db = tmp_path / "bb.duckdb"
    counts = load_backbone(dump, db)
    assert (counts["taxa"], counts["synonyms"], counts["rejected_lines"]) == (8, 1, 0)
    assert load_backbone(dump, db)["skipped"] is True
    with duckdb.connect(str(db), read_only=True) as con:
        syn = con.execute(
            "SELECT acceptedNameUsageID, parentNameUsageID, taxonomicStatus, rank, kingdom, genus "
            "FROM taxon WHERE taxonID = '8'"
        ).fetchone()
    assert syn == ("7", None, "homotypic synonym", "species", "Animalia", "Prunella")
    taxa = resolve_taxa(
        make_queries(
            {"verbatim_scientific_name": "Accentor modularis"},
            {"verbatim_scientific_name": "Prunella modularis (Linnaeus, 1758)"},
        ),
        db,
    ).to_pylist()
    by_name = {r["verbatim_scientific_name"]: r for r in taxa}
    syn_row = by_name["Accentor modularis"]
    assert (syn_row["match_type"], syn_row["taxon_id"]) == ("synonym", "7")
    expected = ["Animalia", "Chordata", "Aves", "Passeriformes", "Prunellidae", "Prunella"]
    assert [syn_row[r] for r in RANKS] == [*expected, "modularis"]
    exact = by_name["Prunella modularis (Linnaeus, 1758)"]
    assert (exact["match_type"], exact["taxon_id"], exact["species"]) == ("exact", "7", "modularis")
