"""Per-rank precedence between an authority's label and the source's own label."""

from __future__ import annotations

import pyarrow as pa
import pytest

from treeoflife.config import TaxonomyConfig, config_from_dict
from treeoflife.errors import ConfigError
from treeoflife.schemas import RANKS, TAXA
from treeoflife.taxonomy.precedence import apply_rank_precedence

BACKBONE = "gbif-backbone"


def _row(qid: str, **verbatim) -> dict:
    row = {f: None for f in TAXA.names}
    ranks = ["Animalia", "Arthropoda", "Collembola", "Entomobryomorpha", "Isotomidae",
             "Isotoma", "viridis"]  # fmt: skip
    for r, v in zip(RANKS, ranks, strict=True):
        row[r], row[f"{r}_provenance"] = v, BACKBONE
    row.update(
        query_id=qid,
        scientific_name="Isotoma viridis",
        authority=BACKBONE,
        match_type="exact",
        confidence=1.0,
        flags=[],
    )
    row.update(verbatim)
    return row


@pytest.fixture
def taxa() -> pa.Table:
    rows = [
        # the source disagrees at class and species
        _row("a", verbatim_kingdom="Metazoa", verbatim_class="Entognatha",
             verbatim_scientific_name="Isotoma anglicana"),
        # the source agrees (case aside): nothing to switch
        _row("b", verbatim_class="collembola", verbatim_scientific_name="Isotoma viridis"),
        # the source gives nothing
        _row("c"),
    ]  # fmt: skip
    rows[2]["genus_provenance"] = "bioscan"  # a rank the source filled stays as it is
    rows[2]["verbatim_genus"] = "Other"
    return pa.Table.from_pylist(rows, schema=TAXA)


SOURCES = {"a": "bioscan", "b": "bioscan", "c": "bioscan"}


def test_default_keeps_the_authority(taxa):
    out, switched = apply_rank_precedence(taxa, SOURCES, TaxonomyConfig().rank_precedence)
    assert switched == 0
    assert out.equals(taxa)


def test_source_first_takes_the_source_label_with_provenance_and_flag(taxa):
    precedence = {"class": ["source", BACKBONE], "species": ["source", BACKBONE]}
    out, switched = apply_rank_precedence(taxa, SOURCES, precedence)
    a, b, c = out.to_pylist()
    assert switched == 2
    assert (a["class"], a["class_provenance"]) == ("Entognatha", "bioscan")
    assert (a["species"], a["species_provenance"]) == ("anglicana", "bioscan")
    assert a["scientific_name"] == "Isotoma anglicana"
    assert a["flags"] == ["source_precedence"]
    assert (a["order"], a["order_provenance"]) == ("Entomobryomorpha", BACKBONE)  # no list
    assert b == taxa.to_pylist()[1]
    assert c == taxa.to_pylist()[2]


def test_authority_first_or_unlisted_authority_keeps_its_label(taxa):
    out, switched = apply_rank_precedence(
        taxa, SOURCES, {"class": [BACKBONE, "source"], "kingdom": ["source", "itis"]}
    )
    assert switched == 0  # backbone before source; kingdom: Metazoa = Animalia anyway
    out, switched = apply_rank_precedence(taxa, SOURCES, {"class": ["source", "itis"]})
    assert switched == 0  # gbif-backbone is not listed, so it is not outranked


def test_config_reads_and_checks_rank_precedence():
    cfg = config_from_dict(
        {"taxonomy": {"rank_precedence": {"species": ["source", "gbif-backbone"]}}}
    )
    assert cfg.taxonomy.rank_precedence == {"species": ["source", "gbif-backbone"]}
    with pytest.raises(ConfigError, match="'tribe' is not one of"):
        TaxonomyConfig(rank_precedence={"tribe": ["source"]})
    with pytest.raises(ConfigError, match="rank_precedence.genus"):
        TaxonomyConfig(rank_precedence={"genus": []})
    with pytest.raises(ConfigError, match="rank_precedence.genus"):
        TaxonomyConfig(rank_precedence={"genus": "source"})
