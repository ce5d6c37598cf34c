import runpy
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from treeoflife.release.catalog import write_catalog

from .conftest import catalog_table

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "catalog_queries.py"


def _catalog() -> pa.Table:
    rows = catalog_table(90).to_pylist()
    for i, row in enumerate(rows):
        genus = ("Corvus", "Rosa", "Amanita", "Pica")[i % 4]
        row["kingdom"] = {"Corvus": "Animalia", "Pica": "Animalia", "Rosa": "Plantae"}.get(
            genus, "Fungi"
        )
        row["genus"] = genus
        row["species"] = "corax" if genus == "Corvus" else ("canina" if i % 3 else None)
    return pa.Table.from_pylist(rows, schema=catalog_table(1).schema)


def test_notebook_runs_and_answers_the_example_questions(tmp_path, monkeypatch, capsys):
    table = _catalog()
    path = tmp_path / "catalog.parquet"
    write_catalog(table, path)
    monkeypatch.setenv("TREEOFLIFE_CATALOG", str(path))
    monkeypatch.setenv("TREEOFLIFE_SPECIES", "Corvus corax")
    ns = runpy.run_path(str(NOTEBOOK))
    rows = table.to_pylist()
    kept = [r for r in rows if r["status"] == "kept"]

    assert dict(ns["per_kingdom"]) == Counter(r["kingdom"] for r in kept)
    genera = dict(zip(ns["largest_genera"]["genus"], ns["largest_genera"]["images"], strict=True))
    assert genera == Counter(r["genus"] for r in kept)
    ravens = [r for r in kept if r["genus"] == "Corvus" and r["species"] == "corax"]
    assert len(ns["one_species"]) == len(ravens) > 0
    assert {(r[0], r[4], r[5]) for r in ns["one_species"]} == {
        (r["key"], r["shard"], r["shard_position"]) for r in ravens
    }
    comp = {r["source"]: r for r in ns["completeness"].to_dicts()}
    for source, rec in comp.items():
        mine = [r for r in kept if r["source"] == source]
        assert rec["images"] == len(mine)
        assert rec["species"] == round(sum(r["species"] is not None for r in mine) / len(mine), 4)
    assert sum(n for _, _, n in ns["not_kept"]) == len(rows) - len(kept)
    assert "images of Corvus corax" in capsys.readouterr().out


def test_notebook_example_species_is_in_the_sample(built_sample, monkeypatch, capsys):
    """Run as the README says on the sample build: its example species has images there."""
    catalog = built_sample["release"] / "catalog.parquet"
    monkeypatch.setenv("TREEOFLIFE_CATALOG", str(catalog))
    monkeypatch.delenv("TREEOFLIFE_SPECIES", raising=False)
    ns = runpy.run_path(str(NOTEBOOK))
    rows = pq.read_table(catalog).to_pylist()
    wanted = [
        r
        for r in rows
        if (r["genus"], r["species"]) == (ns["GENUS"], ns["EPITHET"]) and r["status"] == "kept"
    ]
    assert len(ns["one_species"]) == len(wanted) > 0
    assert f"{len(wanted)} images of {ns['GENUS']} {ns['EPITHET']}" in capsys.readouterr().out
