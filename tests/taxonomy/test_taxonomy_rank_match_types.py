import pyarrow as pa

from treeoflife.schemas import RANKS, TAXA
from treeoflife.taxonomy.provenance import rank_match_type, with_rank_match_types


def test_rank_match_type_rules():
    assert rank_match_type(None, "gbif-backbone", "gbif-backbone", "exact") is None
    assert rank_match_type("Aves", "gbif-backbone", "gbif-backbone", "synonym") == "synonym"
    assert rank_match_type("Aves", "inat21", "gbif-backbone", "higherrank") == "source"
    assert rank_match_type("Aves", "evalset/rare_species", "itis", "exact") == "source"
    assert rank_match_type("Aves", "gbif-backbone", "itis", "exact") == "inherited"


def test_with_rank_match_types_fills_every_rank_column():
    row = {"query_id": "q1", "authority": "gbif-backbone", "match_type": "higherrank"}
    row.update({r: None for r in RANKS})
    row.update(kingdom="Animalia", genus="Prunella", species="modularis")
    row.update(
        kingdom_provenance="gbif-backbone",
        genus_provenance="gbif-backbone",
        species_provenance="eol",
    )
    taxa = with_rank_match_types(pa.Table.from_pylist([row], schema=TAXA))
    assert taxa.schema == TAXA
    out = taxa.to_pylist()[0]
    assert out["kingdom_match_type"] == "higherrank"
    assert out["genus_match_type"] == "higherrank"
    assert out["species_match_type"] == "source"
    assert out["phylum_match_type"] is None
