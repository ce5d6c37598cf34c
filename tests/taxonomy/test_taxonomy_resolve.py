"""Resolving queries: exact, synonym, fuzzy, higher rank, homonyms, source labels, unresolved."""

from __future__ import annotations

import csv

import pyarrow as pa
import pytest

from treeoflife.records import query_id
from treeoflife.schemas import RANKS, TAXA
from treeoflife.taxonomy import resolve_taxa, taxonomy_queries

from .conftest import BIRD, PLANT, REAL_ARCHAEA, make_queries


def _archaea_rows() -> dict[str, dict]:
    with open(REAL_ARCHAEA / "Taxon.tsv", encoding="utf-8", newline="") as fh:
        return {r["taxonID"]: r for r in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)}


def _one(db, fuzzy_max_distance=2, source_below_match=True, **query) -> dict:
    table = resolve_taxa(
        make_queries(query),
        db,
        fuzzy_max_distance=fuzzy_max_distance,
        source_below_match=source_below_match,
    )
    assert table.num_rows == 1
    return table.to_pylist()[0]


def test_real_synonym_resolves_to_its_accepted_taxon(archaea_db):
    rows = _archaea_rows()
    synonym = next(
        r for r in rows.values() if r["canonicalName"] == "Methanobacterium thermoflexum"
    )
    accepted = rows[synonym["acceptedNameUsageID"]]
    row = _one(archaea_db, verbatim_scientific_name="Methanobacterium thermoflexum")
    assert row["match_type"] == "synonym"
    assert row["taxon_id"] == accepted["taxonID"] != synonym["taxonID"]
    assert row["genus"] == "Methanothermobacter" == accepted["genus"]
    assert row["species"] == accepted["specificEpithet"]
    assert row["scientific_name"] == accepted["canonicalName"]
    assert [row[r] for r in RANKS[:-1]] == [accepted[r] for r in RANKS[:-1]]
    assert row["flags"] == ["synonym"]
    assert row["confidence"] == 1.0 and row["reason"] is None
    assert all(row[f"{r}_provenance"] == "gbif-backbone" for r in RANKS)
    assert row["authority"] == "gbif-backbone"


def test_exact_match_strips_authorship_and_prefers_accepted_over_doubtful(archaea_db):
    # The real excerpt holds "Methanosarcina mazei" twice: accepted and doubtful.
    rows = [r for r in _archaea_rows().values() if r["canonicalName"] == "Methanosarcina mazei"]
    assert {r["taxonomicStatus"] for r in rows} == {"accepted", "doubtful"}
    accepted = next(r for r in rows if r["taxonomicStatus"] == "accepted")
    row = _one(archaea_db, verbatim_scientific_name=accepted["scientificName"])
    assert row["scientific_name"] == "Methanosarcina mazei"
    assert row["taxon_id"] == accepted["taxonID"]
    assert (row["match_type"], row["confidence"], row["flags"]) == ("exact", 1.0, [])
    upper = _one(archaea_db, verbatim_scientific_name="  METHANOSARCINA   MAZEI ")
    assert upper["taxon_id"] == accepted["taxonID"]


def test_fuzzy_match_within_the_genus_only(archaea_db):
    accepted = next(
        r
        for r in _archaea_rows().values()
        if r["canonicalName"] == "Methanothermobacter thermoflexus"
    )
    one_off = _one(archaea_db, verbatim_scientific_name="Methanothermobacter thermoflexis")
    two_off = _one(archaea_db, verbatim_scientific_name="Methanothermobacter thermoplexis")
    for row in (one_off, two_off):
        assert row["match_type"] == "fuzzy" and "fuzzy" in row["flags"]
        assert row["taxon_id"] == accepted["taxonID"]
        assert row["species"] == "thermoflexus"
    assert 1.0 > one_off["confidence"] > two_off["confidence"]
    # Distance 3 is beyond the default limit: only the genus is kept.
    three_off = _one(archaea_db, verbatim_scientific_name="Methanothermobacter thermaplexos")
    assert three_off["match_type"] == "higherrank"
    assert three_off["species"] is None and three_off["genus"] == "Methanothermobacter"
    wider = _one(
        archaea_db,
        fuzzy_max_distance=3,
        verbatim_scientific_name="Methanothermobacter thermaplexos",
    )
    assert wider["match_type"] == "fuzzy" and wider["taxon_id"] == accepted["taxonID"]
    # The right epithet under another genus is not a fuzzy hit: blocking is by exact genus.
    other_genus = _one(archaea_db, verbatim_scientific_name="Methanobrevibacter thermoflexus")
    assert other_genus["match_type"] != "fuzzy"
    assert other_genus["taxon_id"] != accepted["taxonID"]


def test_higher_rank_fallback_takes_the_most_specific_known_rank(archaea_db):
    family = next(
        r
        for r in _archaea_rows().values()
        if r["canonicalName"] == "Methanobacteriaceae" and r["taxonRank"] == "family"
    )
    row = _one(
        archaea_db,
        source_below_match=False,
        verbatim_kingdom="Archaea",
        verbatim_family="Methanobacteriaceae",
        verbatim_genus="Notagenus",
        verbatim_scientific_name="Notagenus novus",
    )
    assert row["match_type"] == "higherrank"
    assert "higher_rank_only" in row["flags"]
    assert row["taxon_id"] == family["taxonID"]
    assert (
        row["family"] == "Methanobacteriaceae" and row["scientific_name"] == "Methanobacteriaceae"
    )
    assert row["genus"] is None and row["species"] is None
    assert row["genus_provenance"] is None and row["family_provenance"] == "gbif-backbone"
    assert 0 < row["confidence"] < 1 and row["reason"] is None


@pytest.mark.parametrize(
    ("kingdom", "phylum", "expected_id", "expected"),
    [
        ("Plantae", None, "10", PLANT),
        ("Animalia", None, "20", BIRD),
        ("Metazoa", None, "20", BIRD),
        ("Viridiplantae", None, "10", PLANT),
        (None, "Chordata", "20", BIRD),
    ],
)
def test_cross_kingdom_homonym_is_chosen_by_context(
    homonym_db, kingdom, phylum, expected_id, expected
):
    row = _one(
        homonym_db,
        verbatim_kingdom=kingdom,
        verbatim_phylum=phylum,
        verbatim_scientific_name="Prunella",
    )
    assert row["match_type"] == "exact"
    assert row["taxon_id"] == expected_id
    assert tuple(row[r] for r in RANKS[:5]) == expected
    assert "homonym_guarded" in row["flags"]


def test_homonym_without_context_is_not_guessed(homonym_db):
    row = _one(homonym_db, verbatim_scientific_name="Prunella")
    assert row["match_type"] == "none"
    assert row["reason"] == "ambiguous_homonym"
    assert all(row[r] is None for r in RANKS) and row["taxon_id"] is None


def test_ambiguous_homonym_keeps_the_ranks_its_candidates_agree_on(homonym_db):
    row = _one(homonym_db, verbatim_scientific_name="Duplicia")
    assert row["reason"] == "ambiguous_homonym"
    assert row["kingdom"] == "Plantae" and row["kingdom_provenance"] == "gbif-backbone"
    assert all(row[r] is None for r in RANKS[1:])
    assert row["taxon_id"] is None


def test_species_in_the_wrong_kingdom_is_never_accepted(homonym_db):
    # Prunella vulgaris is a plant; a query that says Animalia must not get it.
    row = _one(
        homonym_db, verbatim_kingdom="Animalia", verbatim_scientific_name="Prunella vulgaris"
    )
    assert row["kingdom"] == "Animalia"
    assert row["taxon_id"] == "20"  # the bird genus, via the higher-rank fallback
    assert row["match_type"] == "higherrank" and row["species"] is None
    assert "homonym_guarded" in row["flags"]
    plant = _one(
        homonym_db, verbatim_kingdom="Plantae", verbatim_scientific_name="Prunella vulgaris"
    )
    assert (plant["taxon_id"], plant["species"], plant["match_type"]) == ("11", "vulgaris", "exact")


@pytest.mark.parametrize(
    ("kingdom", "expected"),
    [("Plantae", ("60", "exact", "alba")), ("Animalia", ("62", "synonym", "albus"))],
)
def test_name_accepted_in_one_kingdom_and_synonym_in_another(homonym_db, kingdom, expected):
    row = _one(homonym_db, verbatim_kingdom=kingdom, verbatim_scientific_name="Ambix alba")
    assert (row["taxon_id"], row["match_type"], row["species"]) == expected
    assert row["kingdom"] == kingdom and "homonym_guarded" in row["flags"]


def test_accepted_versus_synonym_homonym_without_context_is_not_guessed(homonym_db):
    row = _one(homonym_db, verbatim_scientific_name="Ambix alba")
    assert (row["match_type"], row["reason"], row["taxon_id"]) == (
        "none",
        "ambiguous_homonym",
        None,
    )


def test_common_name_is_a_sorted_english_vernacular_else_the_verbatim_one(homonym_db):
    plant = _one(
        homonym_db, verbatim_scientific_name="Prunella vulgaris", verbatim_common_name="heal-all"
    )
    assert plant["common_name"] == "Common Selfheal"  # first English name in sorted order
    bird = _one(
        homonym_db,
        verbatim_scientific_name="Prunella collaris",
        verbatim_common_name="Alpine Accentor",
    )
    assert bird["common_name"] == "Alpine Accentor"  # the backbone has none for it
    none = _one(homonym_db, verbatim_scientific_name="Prunella collaris")
    assert none["common_name"] is None


def test_synonym_with_infraspecific_name_and_missing_ranks_filled_from_source(homonym_db):
    syn = _one(homonym_db, verbatim_scientific_name="Brunella vulgaris subsp. lanceolata")
    assert syn["taxon_id"] == "11" and syn["match_type"] == "synonym"
    assert {"synonym", "infraspecific_dropped"} <= set(syn["flags"])
    assert syn["confidence"] < 1.0
    gap = _one(
        homonym_db,
        source="inat21",
        verbatim_kingdom="Animalia",
        verbatim_phylum="Chordata",
        verbatim_class="Aves",
        verbatim_order="Wrongiformes",
        verbatim_scientific_name="Gappia testa",
    )
    assert gap["match_type"] == "exact"
    assert (gap["phylum"], gap["phylum_provenance"]) == ("Chordata", "inat21")
    assert (gap["class"], gap["class_provenance"]) == ("Aves", "inat21")
    # The backbone's own order wins over the source's.
    assert (gap["order"], gap["order_provenance"]) == ("Gapiformes", "gbif-backbone")


def test_source_labels_when_the_backbone_knows_nothing(homonym_db):
    row = _one(
        homonym_db,
        source="bioscan",
        verbatim_kingdom="Fungi",
        verbatim_phylum="Basidiomycota",
        verbatim_class="Agaricomycetes",
        verbatim_order="Agaricales",
        verbatim_family="Amanitaceae",
        verbatim_genus="not_classified",
        verbatim_scientific_name="Amanita muscaria",
        verbatim_common_name="fly agaric",
    )
    assert row["match_type"] == "source" and row["authority"] == "bioscan"
    assert [row[r] for r in RANKS] == [
        "Fungi",
        "Basidiomycota",
        "Agaricomycetes",
        "Agaricales",
        "Amanitaceae",
        "Amanita",
        "muscaria",
    ]
    assert all(row[f"{r}_provenance"] == "bioscan" for r in RANKS)
    assert row["scientific_name"] == "Amanita muscaria" and row["common_name"] == "fly agaric"
    assert row["taxon_id"] is None and row["reason"] is None


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"verbatim_scientific_name": None}, "empty_name"),
        ({"verbatim_scientific_name": "not_classified", "verbatim_genus": "unknown"}, "empty_name"),
        ({"verbatim_scientific_name": "12345"}, "unparsed_name"),
        ({"verbatim_scientific_name": "Nothingus nowhere"}, "no_match"),
    ],
)
def test_unresolved_queries_carry_a_reason(homonym_db, query, reason):
    row = _one(homonym_db, **query)
    assert row["match_type"] == "none" and row["reason"] == reason
    assert all(row[r] is None and row[f"{r}_provenance"] is None for r in RANKS)
    assert row["taxon_id"] is None


def test_output_schema_order_and_determinism(homonym_db, archaea_db):
    queries = make_queries(
        {"verbatim_scientific_name": "Prunella modularis"},
        {"verbatim_scientific_name": "Prunella", "verbatim_kingdom": "Plantae"},
        {"verbatim_scientific_name": "Brunella vulgaris"},
        {"verbatim_scientific_name": "Prunella modularis", "source": "inat21"},
        {"verbatim_scientific_name": ""},
        {"verbatim_scientific_name": "Nothingus nowhere", "verbatim_kingdom": "Fungi"},
    )
    a = resolve_taxa(queries, homonym_db)
    assert a.schema.equals(TAXA, check_metadata=True)
    ids = a.column("query_id").to_pylist()
    assert ids == sorted(ids) and len(set(ids)) == queries.num_rows
    reversed_input = queries.take(pa.array(range(queries.num_rows - 1, -1, -1)))
    doubled = pa.concat_tables([reversed_input, queries])  # duplicates resolve once
    b = resolve_taxa(doubled, homonym_db)
    assert a.equals(b)
    # Every query is counted: resolved rows have no reason, unresolved ones have one.
    for row in a.to_pylist():
        assert (row["reason"] is None) == (row["match_type"] != "none")
        assert row["flags"] == sorted(row["flags"])
    empty = resolve_taxa(queries.slice(0, 0), archaea_db)
    assert empty.num_rows == 0 and empty.schema.equals(TAXA, check_metadata=True)


def test_taxonomy_queries_from_a_catalog_join_back_by_query_id(homonym_db):
    catalog = pa.table(
        {
            "key": ["eol/1_1", "eol/2_1", "inat21/a", "eol/3_2"],
            "source": ["eol", "eol", "inat21", "eol"],
            "verbatim_kingdom": [None, None, "Animalia", None],
            "verbatim_phylum": [None] * 4,
            "verbatim_class": [None] * 4,
            "verbatim_order": [None] * 4,
            "verbatim_family": [None] * 4,
            "verbatim_genus": [None, None, "Prunella", None],
            "verbatim_scientific_name": [
                "Prunella vulgaris",
                "Prunella vulgaris",
                "Prunella modularis",
                "Ambix alba",
            ],
            "verbatim_common_name": ["selfheal", "heal-all", "Dunnock", None],
        }
    )
    queries = taxonomy_queries(catalog)
    assert queries.num_rows == 3  # the two EOL Prunella vulgaris rows share one query
    by_name = {r["verbatim_scientific_name"]: r for r in queries.to_pylist()}
    assert by_name["Prunella vulgaris"]["verbatim_common_name"] == "heal-all"
    taxa = {r["query_id"]: r for r in resolve_taxa(queries, homonym_db).to_pylist()}
    for row in catalog.to_pylist():
        resolved = taxa[query_id(row["source"], row)]  # every catalog row finds its taxon
        assert resolved["verbatim_scientific_name"] == row["verbatim_scientific_name"]
