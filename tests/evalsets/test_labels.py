"""Labels of evaluation rows: the taxonomy query they make, their label, their class names."""

from __future__ import annotations

import pytest

from treeoflife import records
from treeoflife.errors import ConfigError, InputError
from treeoflife.evalsets.labels import (
    caption_kind,
    class_name,
    evalset_source,
    label_columns,
    labeller,
    rename_classes,
    row_label,
    row_query_id,
    verbatim_ranks,
)
from treeoflife.evalsets.layouts import label_row

RED_PANDA = {
    "kingdom": "Animalia", "phylum": "Chordata", "cls": "Mammalia", "order": "Carnivora",
    "family": "Ailuridae", "genus": "Ailurus", "species": "fulgens", "common_name": "Red Panda",
    "filepath": "a.jpg", "class": None,
}  # fmt: skip


def test_verbatim_ranks_make_the_query_the_taxonomy_stage_resolves():
    v = verbatim_ranks(RED_PANDA)
    assert v["verbatim_class"] == "Mammalia" and v["verbatim_genus"] == "Ailurus"
    assert v["verbatim_scientific_name"] == "Ailurus fulgens"
    assert v["verbatim_common_name"] == "Red Panda"
    binomial = verbatim_ranks({**RED_PANDA, "genus": "", "species": "Ailurus fulgens"})
    assert binomial["verbatim_scientific_name"] == "Ailurus fulgens"
    assert row_query_id("rare", RED_PANDA) == records.query_id(evalset_source("rare"), v)
    assert row_query_id("rare", RED_PANDA) != row_query_id("other", RED_PANDA)


def test_a_resolved_taxon_labels_the_row_else_the_sets_own_ranks():
    resolved = {"kingdom": "Animalia", "genus": "Ailurus", "species": "fulgens"}
    label = row_label(RED_PANDA, resolved)
    assert label["genus"] == "Ailurus" and label["common_name"] == "Red Panda"
    assert row_label(RED_PANDA, {"kingdom": None, "genus": "X"})["class"] == "Mammalia"
    # A class that is no taxon keeps a caption: the set's label stands in for the class rank.
    spot = label_row("x.jpg", "Corn Gray leaf spot")
    assert class_name(row_label(spot, None), "sci") == "Corn gray leaf spot"  # as a rank
    taxa = {row_query_id("rare", RED_PANDA): resolved}
    assert labeller("rare", taxa)(RED_PANDA)["species"] == "fulgens"
    assert labeller("other", taxa)(RED_PANDA)["class"] == "Mammalia"  # not resolved there


def test_label_columns_are_the_hashes_tables():
    cols = label_columns({**RED_PANDA, "order": " ", "class": "Ailurus_fulgens"})
    assert cols["class"] == "Mammalia" and cols["label"] == "Ailurus_fulgens"
    assert cols["order"] is None and cols["common_name"] == "Red Panda"


def test_rename_classes_between_text_types():
    labels = [
        {"kingdom": "Animalia", "phylum": "Chordata", "class": "Mammalia", "order": "Carnivora",
         "family": "Canidae", "genus": "Vulpes", "species": "vulpes", "common_name": "Red Fox"},
        {"kingdom": "Plantae", "phylum": "Tracheophyta", "class": "Magnoliopsida",
         "order": "Sapindales", "family": "Sapindaceae", "genus": "Acer", "species": "rubrum",
         "common_name": None},
    ]  # fmt: skip
    packaged = ["Acer rubrum", "Vulpes vulpes"]  # sci, sorted as packaged
    assert rename_classes(packaged, labels, "sci", "common") == ["Acer rubrum", "Red Fox"]
    taxon = rename_classes(packaged, labels, "scientific", "taxonomic")
    assert taxon[1].startswith("Animalia Chordata Mammalia Carnivora Canidae Vulpes vulpes")
    combined = rename_classes(packaged, labels, "sci", "combined")
    assert combined[1].endswith("with common name Red Fox")
    with pytest.raises(InputError, match="no label"):
        rename_classes(["Quercus robur"], labels, "sci", "com")
    assert caption_kind("combined") == "taxon_com" and caption_kind("sci") == "sci"
    with pytest.raises(ConfigError, match="unknown text type"):
        caption_kind("latin")
