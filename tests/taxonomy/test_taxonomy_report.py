"""The taxonomy report: per-source coverage by images, conflicts with their rules, unresolved
names most frequent first; and the Collembola class/order conflict settled by rule."""

from __future__ import annotations

import pytest

from treeoflife.taxonomy import load_backbone, resolve_taxa
from treeoflife.taxonomy.report import taxonomy_report

from .conftest import TAXON_HEADER, make_queries, write_dwca

HEXAPOD = ("Animalia", "Arthropoda", "Collembola", "Entomobryomorpha", "Entomobryidae")
COLLEMBOLA_TAXA = [
    ("1", "", "Entomobrya", "Entomobrya", "Entomobrya", "", "genus", "accepted", *HEXAPOD,
     "Entomobrya"),
    ("2", "", "Entomobrya nivalis (Linnaeus, 1758)", "Entomobrya nivalis", "Entomobrya",
     "nivalis", "species", "accepted", *HEXAPOD, "Entomobrya"),
    ("3", "", "Apis mellifera Linnaeus, 1758", "Apis mellifera", "Apis", "mellifera",
     "species", "accepted", "Animalia", "Arthropoda", "Insecta", "Hymenoptera", "Apidae", "Apis"),
]  # fmt: skip


@pytest.fixture(scope="module")
def collembola_db(tmp_path_factory):
    root = tmp_path_factory.mktemp("collembola")
    db = root / "bb.duckdb"
    load_backbone(write_dwca(root / "dwca", COLLEMBOLA_TAXA, header=TAXON_HEADER), db)
    return db


def _report(db, *queries, images=None):
    table = make_queries(*queries)
    taxa = resolve_taxa(table, db)
    ids = table.column("query_id").to_pylist()
    sources = dict(zip(ids, table.column("source").to_pylist(), strict=True))
    by_name = {q["verbatim_scientific_name"]: qid for q, qid in zip(queries, ids, strict=True)}
    counts = {by_name[k]: v for k, v in (images or {}).items()}
    return taxonomy_report(taxa, sources, counts), taxa


def test_collembola_class_versus_order_is_a_known_conflict(collembola_db):
    bioscan = {
        "source": "bioscan",
        "verbatim_kingdom": "Metazoa",
        "verbatim_phylum": "Arthropoda",
        "verbatim_class": "Insecta",
        "verbatim_order": "Collembola",
        "verbatim_family": "Entomobryidae",
        "verbatim_scientific_name": "Entomobrya nivalis",
    }
    report, taxa = _report(collembola_db, bioscan, images={"Entomobrya nivalis": 40})
    row = taxa.to_pylist()[0]
    assert (row["class"], row["order"]) == ("Collembola", "Entomobryomorpha")  # backbone wins
    assert "conflict" in row["flags"]
    listed = {(c["rank"], c["rule"]): c for c in report["conflicts"]["listed"]}
    assert listed[("class", "known_rank_conflict")]["source_value"] == "Insecta"
    assert listed[("order", "known_rank_conflict")]["resolved_value"] == "Entomobryomorpha"
    assert "Collembola" in listed[("class", "known_rank_conflict")]["note"]
    assert listed[("kingdom", "kingdom_synonym")]["resolved_value"] == "Animalia"
    assert all(c["images"] == 40 for c in report["conflicts"]["listed"])
    assert report["conflicts"]["by_rule"] == {"kingdom_synonym": 1, "known_rank_conflict": 2}


def test_report_shares_are_weighted_by_images_and_unresolved_sorted(collembola_db):
    queries = (
        {"source": "inat21", "verbatim_scientific_name": "Apis mellifera"},
        {"source": "inat21", "verbatim_scientific_name": "Entomobrya"},
        {"source": "inat21", "verbatim_scientific_name": "Nothingus rarus"},
        {"source": "eol", "verbatim_scientific_name": "Nothingus frequens"},
        {"source": "eol", "verbatim_scientific_name": "Apis mellifera"},
        {"source": "eol", "verbatim_scientific_name": "Zzz zzz"},
    )
    table = make_queries(*queries)
    ids = table.column("query_id").to_pylist()
    images = dict(zip(ids, [6, 2, 1, 7, 1, 3], strict=True))
    sources = dict(zip(ids, table.column("source").to_pylist(), strict=True))
    report = taxonomy_report(resolve_taxa(table, collembola_db), sources, images)
    inat = report["by_source"]["inat21"]
    assert (inat["images"], inat["queries"]) == (9, 3)
    assert inat["share_all_seven_ranks"] == round(6 / 9, 4)
    assert inat["share_with_species"] == round(6 / 9, 4)
    assert inat["match_types_images"] == {"exact": 8, "none": 1}
    assert inat["match_types_queries"] == {"exact": 2, "none": 1}
    eol = report["by_source"]["eol"]
    assert eol["unresolved_images"] == 10 and eol["share_with_common_name"] == 0
    names = [(u["source"], u["name"], u["images"]) for u in report["unresolved"]["listed"]]
    assert names == [
        ("eol", "Nothingus frequens", 7),
        ("eol", "Zzz zzz", 3),
        ("inat21", "Nothingus rarus", 1),
    ]
    assert report["unresolved"] == {**report["unresolved"], "names": 3, "images": 11}
    assert report["match_types"] == {"exact": 9, "none": 11}
