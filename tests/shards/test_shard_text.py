from collections import Counter

import pytest

from treeoflife.shards.text import (
    CAPTION_MEMBERS,
    RANDOM_TEXT_TYPES,
    TEXT_TYPES,
    caption_members,
    resolve_text_type,
    text_for,
)

RAVEN = {
    "key": "inat21/abc",
    "kingdom": "Animalia",
    "phylum": "Chordata",
    "class": "Aves",
    "order": "Passeriformes",
    "family": "Corvidae",
    "genus": "Corvus",
    "species": "corax",
    "scientific_name": "Corvus corax",
    "common_name": "Common Raven",
}
TAXON = "Animalia Chordata Aves Passeriformes Corvidae Corvus corax"
TAGGED = (
    "kingdom Animalia phylum Chordata class Aves order Passeriformes family Corvidae "
    "genus Corvus species corax"
)


def test_full_row_gives_bioclip_captions():
    m = caption_members(RAVEN)
    assert list(m) == list(CAPTION_MEMBERS)
    assert m["scientific_name.txt"] == "Corvus corax"
    assert m["taxonomic_name.txt"] == TAXON
    assert m["common_name.txt"] == "Common Raven"
    assert m["sci.txt"] == "a photo of Corvus corax."
    assert m["com.txt"] == "a photo of Common Raven."
    assert m["taxon.txt"] == f"a photo of {TAXON}."
    assert m["taxonTag.txt"] == f"a photo of {TAGGED}."
    assert m["sci_com.txt"] == "a photo of Corvus corax with common name Common Raven."
    assert m["taxon_com.txt"] == f"a photo of {TAXON} with common name Common Raven."
    assert m["taxonTag_com.txt"] == f"a photo of {TAGGED} with common name Common Raven."


def test_missing_common_name_falls_back_to_scientific():
    m = caption_members({**RAVEN, "common_name": None})
    assert m["common_name.txt"] == "Corvus corax"
    assert m["com.txt"] == "a photo of Corvus corax."
    assert m["taxon_com.txt"] == f"a photo of {TAXON} with common name Corvus corax."


def test_missing_ranks_are_skipped_never_none():
    row = {
        "key": "bioscan/P1",
        "kingdom": "Animalia",
        "phylum": "Arthropoda",
        "class": "Insecta",
        "order": "Diptera",
        "family": "Cecidomyiidae",
        "genus": None,
        "species": "",
        "scientific_name": None,
        "common_name": None,
    }
    m = caption_members(row)
    assert m["taxonomic_name.txt"] == "Animalia Arthropoda Insecta Diptera Cecidomyiidae"
    assert m["taxonTag.txt"] == (
        "a photo of kingdom Animalia phylum Arthropoda class Insecta order Diptera "
        "family Cecidomyiidae."
    )
    # No genus: the scientific name is the lowest rank, and common falls back to it.
    assert m["scientific_name.txt"] == "Cecidomyiidae"
    assert m["common_name.txt"] == "Cecidomyiidae"
    assert all("None" not in v and "  " not in v for v in m.values())


def test_common_falls_back_to_taxonomic_when_no_scientific():
    row = {"key": "x", "kingdom": "Plantae", "phylum": None}
    m = caption_members(row)
    assert m["taxonomic_name.txt"] == "Plantae"
    assert m["common_name.txt"] == "Plantae"


def test_names_are_normalised_like_bioclip():
    row = {**RAVEN, "genus": "corvus", "species": "Corvus  Corax", "kingdom": " animalia "}
    m = caption_members(row)
    assert m["scientific_name.txt"] == "Corvus corax"
    assert m["taxonomic_name.txt"] == TAXON


def test_row_without_any_taxonomy_is_an_error():
    with pytest.raises(ValueError, match="no taxonomy"):
        caption_members({"key": "eol/1_2"})


@pytest.mark.parametrize("text_type", TEXT_TYPES)
def test_text_for_each_type_is_that_member(text_type):
    assert text_for(RAVEN, text_type, "k", 0) == caption_members(RAVEN)[f"{text_type}.txt"]


def test_text_for_unknown_type_fails():
    with pytest.raises(ValueError, match="unknown text_type"):
        text_for(RAVEN, "sci-com", "k", 0)


def test_random_is_deterministic_and_covers_the_five_types():
    keys = [f"inat21/{i}" for i in range(2000)]
    first = [resolve_text_type("random", k, 7) for k in keys]
    assert first == [resolve_text_type("random", k, 7) for k in keys]
    counts = Counter(first)
    assert set(counts) == set(RANDOM_TEXT_TYPES)
    assert min(counts.values()) > 300  # roughly uniform: 400 expected each
    # A different seed gives a different mixture.
    other = [resolve_text_type("random", k, 8) for k in keys]
    assert sum(a != b for a, b in zip(first, other, strict=True)) > 1000
    texts = {text_for(RAVEN, "random", k, 7) for k in keys}
    assert texts == {caption_members(RAVEN)[f"{t}.txt"] for t in RANDOM_TEXT_TYPES}
