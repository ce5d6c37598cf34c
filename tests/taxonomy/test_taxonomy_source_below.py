"""Source labels below a higher-rank match: kept when the source confirms the match, else not."""

from __future__ import annotations

from treeoflife.schemas import RANKS
from treeoflife.taxonomy import resolve_taxa

from .conftest import BIRD, make_queries

INAT_BIRD = dict(
    zip(
        ("verbatim_kingdom", "verbatim_phylum", "verbatim_class", "verbatim_order"),
        BIRD[:4],
        strict=True,
    )
)


def _one(db, source_below_match=True, **query) -> dict:
    table = resolve_taxa(make_queries(query), db, source_below_match=source_below_match)
    assert table.num_rows == 1
    return table.to_pylist()[0]


def test_inat21_species_missing_from_the_backbone_keeps_the_source_species(homonym_db):
    row = _one(
        homonym_db,
        source="inat21",
        **INAT_BIRD,
        verbatim_family="Prunellidae",
        verbatim_genus="Prunella",
        verbatim_scientific_name="Prunella himalayana",
    )
    assert row["match_type"] == "higherrank" and row["taxon_id"] == "20"  # the bird genus
    assert {"higher_rank_only", "source_below_match", "homonym_guarded"} <= set(row["flags"])
    assert [row[r] for r in RANKS] == [*BIRD, "Prunella", "himalayana"]
    assert [row[f"{r}_provenance"] for r in RANKS] == ["gbif-backbone"] * 6 + ["inat21"]
    assert row["scientific_name"] == "Prunella himalayana"
    # Turned off, the same query keeps only what the backbone knows.
    off = _one(
        homonym_db,
        source_below_match=False,
        source="inat21",
        **INAT_BIRD,
        verbatim_family="Prunellidae",
        verbatim_genus="Prunella",
        verbatim_scientific_name="Prunella himalayana",
    )
    assert off["species"] is None and "source_below_match" not in off["flags"]
    assert off["scientific_name"] == "Prunella"


def test_source_genus_and_species_fill_below_a_family_match(archaea_db):
    row = _one(
        archaea_db,
        source="bioscan",
        verbatim_kingdom="Archaea",
        verbatim_family="Methanobacteriaceae",
        verbatim_genus="Notagenus",
        verbatim_scientific_name="Notagenus novus",
    )
    assert row["match_type"] == "higherrank" and "source_below_match" in row["flags"]
    assert row["family"] == "Methanobacteriaceae" and row["family_provenance"] == "gbif-backbone"
    assert (row["genus"], row["genus_provenance"]) == ("Notagenus", "bioscan")
    assert (row["species"], row["species_provenance"]) == ("novus", "bioscan")
    assert row["scientific_name"] == "Notagenus novus"
    assert row["confidence"] < 1.0


def test_source_genus_without_species_fills_only_the_genus(archaea_db):
    row = _one(
        archaea_db,
        source="bioscan",
        verbatim_kingdom="Archaea",
        verbatim_family="Methanobacteriaceae",
        verbatim_genus="Notagenus",
        verbatim_scientific_name="not_classified",
    )
    assert (row["genus"], row["genus_provenance"]) == ("Notagenus", "bioscan")
    assert row["species"] is None and row["scientific_name"] == "Notagenus"


def test_source_that_contradicts_the_backbone_above_the_match_fills_nothing(homonym_db):
    row = _one(
        homonym_db,
        source="inat21",
        **INAT_BIRD,
        verbatim_family="Wrongidae",  # the backbone's Prunella (bird) sits in Prunellidae
        verbatim_genus="Prunella",
        verbatim_scientific_name="Prunella himalayana",
    )
    assert row["match_type"] == "higherrank" and row["taxon_id"] == "20"
    assert row["species"] is None and "source_below_match" not in row["flags"]
    assert row["family"] == "Prunellidae" and row["family_provenance"] == "gbif-backbone"


def test_name_only_query_is_not_confirmation_enough(archaea_db):
    # No verbatim rank confirms the genus match: a misspelt or unknown epithet is not kept.
    row = _one(archaea_db, verbatim_scientific_name="Methanothermobacter zzyzxensis")
    assert row["match_type"] == "higherrank" and row["genus"] == "Methanothermobacter"
    assert row["species"] is None and "source_below_match" not in row["flags"]


def test_name_that_lives_in_another_kingdom_does_not_become_a_species_here(homonym_db):
    # "Prunella vulgaris" is a plant; a source saying Animalia gets the bird genus, and its
    # species label is not copied under it (that would invent a bird Prunella vulgaris).
    row = _one(
        homonym_db,
        source="inat21",
        verbatim_kingdom="Animalia",
        verbatim_genus="Prunella",
        verbatim_scientific_name="Prunella vulgaris",
    )
    assert row["taxon_id"] == "20" and row["kingdom"] == "Animalia"
    assert row["species"] is None and row["genus"] == "Prunella"


def test_source_genus_that_disagrees_with_its_own_name_is_not_used(archaea_db):
    row = _one(
        archaea_db,
        source="eol",
        verbatim_kingdom="Archaea",
        verbatim_family="Methanobacteriaceae",
        verbatim_genus="Othergenus",
        verbatim_scientific_name="Notagenus novus",
    )
    assert row["family"] == "Methanobacteriaceae"
    assert row["genus"] is None and row["species"] is None


def test_the_same_species_from_two_sources_gets_one_label(homonym_db):
    inat = {
        "source": "inat21",
        "verbatim_kingdom": "Animalia",
        "verbatim_phylum": "Chordata",
        "verbatim_class": "Aves",
        "verbatim_order": "Gapiformes",
        "verbatim_family": "Gappidae",
        "verbatim_genus": "Gappia",
        "verbatim_scientific_name": "Gappia novus",
    }
    bioscan = {  # no kingdom, nothing the backbone knows: on its own, only its own labels
        "source": "bioscan",
        "verbatim_phylum": "Chordata",
        "verbatim_family": "Gappidae",
        "verbatim_genus": "Gappia",
        "verbatim_scientific_name": "Gappia novus",
    }
    alone = resolve_taxa(make_queries(bioscan), homonym_db).to_pylist()[0]
    assert alone["match_type"] == "source" and alone["kingdom"] is None
    rows = resolve_taxa(make_queries(inat, bioscan), homonym_db).to_pylist()
    by_source = {("inat21" if r["verbatim_kingdom"] else "bioscan"): r for r in rows}
    a, b = by_source["inat21"], by_source["bioscan"]
    assert [a[r] for r in RANKS] == [b[r] for r in RANKS]
    assert a["kingdom"] == "Animalia" and a["kingdom_provenance"] == "gbif-backbone"
    assert b["kingdom_provenance"] == "gbif-backbone" and b["class_provenance"] == "inat21"
    assert "unified_across_sources" in b["flags"]
    assert "unified_across_sources" not in a["flags"]
    assert b["match_type"] == "source" and b["reason"] is None


def test_homonyms_in_two_kingdoms_are_not_unified(homonym_db):
    plant = {
        "source": "eol",
        "verbatim_kingdom": "Plantae",
        "verbatim_scientific_name": "Ambix alba",
    }
    other = {
        "source": "bioscan",
        "verbatim_phylum": "Arthropoda",
        "verbatim_genus": "Ambix",
        "verbatim_scientific_name": "Ambix alba",
    }
    rows = resolve_taxa(make_queries(plant, other), homonym_db).to_pylist()
    assert not any("unified_across_sources" in r["flags"] for r in rows)
