"""The taxonomy stage on the bundled sample with a local ITIS database and a rank precedence."""

from __future__ import annotations

import dataclasses

import pyarrow.parquet as pq

from tests.conftest import REPO
from tests.taxonomy.test_taxonomy_itis_db import make_itis_sqlite
from treeoflife import pipeline, schemas
from treeoflife.config import load_config
from treeoflife.layout import Layout
from treeoflife.taxonomy.kingdoms import kingdom_key
from treeoflife.taxonomy.names import normalize_name


def test_stage_taxonomy_asks_itis_for_what_the_backbone_missed(tmp_path):
    cfg = load_config(REPO / "configs" / "sample.yaml", data_root=str(tmp_path / "root"))
    pipeline.run("sample", cfg)
    for source in schemas.SOURCES:
        pipeline.run(f"ingest-{source}", cfg)
    first = pipeline.run("taxonomy", cfg).summary
    assert first["itis"] is None
    layout = Layout(cfg.root)
    before = {r["query_id"]: r for r in pq.read_table(layout.taxa).to_pylist()}
    missed = sorted(
        (r for r in before.values() if r["match_type"] == "none"),
        key=lambda r: r["query_id"],
    )
    missed = [
        r
        for r in missed
        if normalize_name(r["verbatim_scientific_name"]).binomial
        and kingdom_key(r["verbatim_kingdom"]) in (None, "animalia")
    ]
    assert missed, "the sample has no unresolved animal binomial to try"
    target = missed[0]
    genus, epithet = normalize_name(target["verbatim_scientific_name"]).binomial.split()
    extra = [
        (990001, genus, None, "valid", 180540, 5, 180),  # under Felidae in the test tree
        (990002, genus, epithet, "valid", 990001, 5, 220),
    ]
    itis = make_itis_sqlite(tmp_path / "ITIS.sqlite", extra)
    cfg2 = dataclasses.replace(
        cfg,
        taxonomy=dataclasses.replace(
            cfg.taxonomy,
            itis_sqlite=str(itis),
            rank_precedence={"species": ["source", "gbif-backbone"]},
        ),
    )
    rerun = pipeline.run("taxonomy", cfg2)
    second = rerun.summary
    assert rerun.up_to_date is False
    assert second["itis"]["improved"] >= 1
    after = {r["query_id"]: r for r in pq.read_table(layout.taxa).to_pylist()}
    assert set(after) == set(before)  # every query still has exactly one row
    row = after[target["query_id"]]
    assert (row["authority"], row["taxon_id"]) == ("itis", "990002")
    assert (row["family"], row["genus"], row["species"]) == ("Felidae", genus, epithet)
    assert pipeline.run("taxonomy", cfg2).up_to_date is True
    for r in after.values():  # species: source first, so a backbone species never contradicts it
        if r["species_provenance"] == "gbif-backbone":
            epithet = normalize_name(r["verbatim_scientific_name"]).epithet
            assert epithet is None or epithet.lower() == r["species"].lower(), r["query_id"]
        if "source_precedence" in r["flags"]:
            assert r["species_provenance"] not in ("gbif-backbone", None)
