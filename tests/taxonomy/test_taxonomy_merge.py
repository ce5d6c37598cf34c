"""The per-rank merge rule of a later authority's answer (treeoflife/taxonomy/merge.py)."""

from __future__ import annotations

from treeoflife.schemas import RANKS
from treeoflife.taxonomy.merge import (
    REFUSED_CONTRADICTS,
    REFUSED_NO_GAIN,
    apply_answer,
    scientific_name,
)

CAT = ("Animalia", "Chordata", "Mammalia", "Carnivora", "Felidae")


def _row(values, provenance, **extra) -> dict:
    row = {"query_id": "q", "flags": ["higher_rank_only", "cf"], "common_name": None, **extra}
    for r, v, p in zip(RANKS, values, provenance, strict=True):
        row[r], row[f"{r}_provenance"] = v, (p if v else None)
    return row


def _answer(values, **extra) -> dict:
    ranks = dict(zip(RANKS, values, strict=True))
    return {
        "ranks": ranks,
        "taxon_id": "9",
        "scientific_name": None,
        "match_type": "higherrank",
        "confidence": 0.9,
        "flags": ["higher_rank_only"],
        **extra,
    }


def test_an_answer_never_overrules_another_authority():
    row = _row((*CAT, "Puma", None), ["gbif-backbone"] * 6 + [None])
    answer = _answer(("Animalia", "Chordata", "Mammalia", "Carnivora", "Canidae", "Puma", "x"))
    new, why, _ = apply_answer(row, answer, "gbif-api")
    assert new is None and why == REFUSED_CONTRADICTS


def test_an_answer_that_reaches_no_deeper_adds_nothing():
    row = _row((*CAT, "Puma", None), ["gbif-backbone"] * 6 + [None])
    new, why, _ = apply_answer(row, _answer((*CAT, "Puma", None)), "gbif-api")
    assert new is None and why == REFUSED_NO_GAIN


def test_ranks_the_answer_leaves_empty_keep_their_side_and_provenance():
    row = _row((*CAT[:4], "Felidae", "Puma", "concolor"), ["gbif-backbone"] * 5 + ["inat21"] * 2)
    new, why, lost = apply_answer(row, _answer((*CAT, "Puma", None)), "gbif-api", marker="api")
    assert why is None and lost == []
    assert [new[r] for r in RANKS] == [*CAT, "Puma", "concolor"]
    assert [new[f"{r}_provenance"] for r in RANKS] == ["gbif-api"] * 6 + ["inat21"]
    assert new["scientific_name"] == "Puma concolor"
    # The row's own flags (cf.) stay; how the local match was made is replaced by the answer's.
    assert set(new["flags"]) == {"cf", "higher_rank_only", "api", "source_below_match"}


def test_a_source_epithet_under_a_genus_the_answer_replaces_is_dropped_and_said():
    row = _row((*CAT, "Pumba", "concolor"), ["gbif-backbone"] * 5 + ["inat21"] * 2)
    new, why, lost = apply_answer(row, _answer((*CAT, "Puma", None)), "gbif-api")
    assert why is None and lost == ["species"]
    assert (new["genus"], new["species"]) == ("Puma", None)
    assert "rank_dropped" in new["flags"] and new["scientific_name"] == "Puma"


def test_the_scientific_name_follows_the_ranks():
    row = {"kingdom": "Animalia", "genus": "Canis", "species": "lupus"}
    assert scientific_name(row, "Canis lupus familiaris") == "Canis lupus familiaris"
    assert scientific_name(row, "Aus bus") == "Canis lupus"
    assert scientific_name({"kingdom": "Animalia", "family": "Felidae"}, "Puma") == "Felidae"
    assert scientific_name({}, None) is None
