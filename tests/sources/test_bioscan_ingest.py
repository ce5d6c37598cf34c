"""BIOSCAN-1M ingest over a real TSV + zips made by code."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from treeoflife.config import config_from_dict
from treeoflife.errors import InputError
from treeoflife.schemas import SOURCE_CATALOG
from treeoflife.sources import ingest_bioscan

from .builders import (
    BIOSCAN_HEADER,
    HTML,
    bioscan_line,
    jpeg,
    png_rgba,
    read_catalog,
    rows_of,
    snapshot,
    stored_bytes,
    write_tsv,
    write_zip,
)

SPECIES = {"order": "Diptera", "family": "Cecidomyiidae", "genus": "Lestodiplosis",
           "species": "Lestodiplosis sp. 1"}  # fmt: skip
GENUS = {"order": "Diptera", "family": "Sciaridae", "genus": "Bradysia"}
FAMILY = {"order": "Hymenoptera", "family": "Braconidae", "subfamily": "Microgastrinae"}
ORDER = {"order": "Coleoptera"}


def make_bioscan(folder: Path) -> tuple[dict, dict[str, bytes]]:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        bioscan_line("BIOUG001-01", 1, SPECIES),
        bioscan_line("BIOUG002-01", 1, GENUS),
        bioscan_line("BIOUG003-01", 2, FAMILY),
        bioscan_line("BIOUG004-01", 2, ORDER),  # image absent from every zip
        bioscan_line("BIOUG001-01", 1, SPECIES, image_file="other.jpg"),  # duplicate processid
        ["too", "few", "fields"],
        bioscan_line("BIOUG005-01", 2, GENUS),  # served as HTML
        bioscan_line("BIOUG006-01", 1, FAMILY),  # an RGBA PNG: converted
    ]
    write_tsv(folder / "metadata.tsv", BIOSCAN_HEADER, lines)
    payloads = {
        "part1/BIOUG001-01.jpg": jpeg(1),
        "part1/BIOUG002-01.jpg": jpeg(2),
        "part1/BIOUG006-01.jpg": png_rgba(6),
        "part2/BIOUG003-01.jpg": jpeg(3),
        "part2/BIOUG005-01.jpg": HTML,
    }
    part1 = {k: v for k, v in payloads.items() if k.startswith("part1/")}
    part1["part1/unlisted.jpg"] = jpeg(99)
    part1["../escape.jpg"] = jpeg(98)
    write_zip(folder / "images_part1.zip", part1, symlinks=("part1/link.jpg",))
    # a leading folder inside the zip is tolerated
    write_zip(
        folder / "images_part2.zip",
        {f"bioscan/{k}": v for k, v in payloads.items() if k.startswith("part2/")},
    )
    section = {
        "metadata": str(folder / "metadata.tsv"),
        "zips": [str(folder / "images_part1.zip"), str(folder / "images_part2.zip")],
        "images_per_part": 3,
    }
    return section, payloads


def make_cfg(tmp_path: Path, section: dict):
    return config_from_dict({"data_root": str(tmp_path / "data"), "sources": {"bioscan": section}})


def test_rows_ranks_and_images(tmp_path):
    section, payloads = make_bioscan(tmp_path / "in")
    cfg = make_cfg(tmp_path, section)
    stats = ingest_bioscan(cfg)
    tables, parts = read_catalog(cfg.root, "bioscan")
    assert len(parts) == 3
    for p in parts:
        assert pq.read_schema(p).equals(SOURCE_CATALOG, check_metadata=True)
    rows = rows_of(tables)
    assert [r["key"] for r in rows] == [
        "bioscan/BIOUG001-01",
        "bioscan/BIOUG002-01",
        "bioscan/BIOUG003-01",
        "bioscan/BIOUG004-01",
        "bioscan/BIOUG001-01#dup1",
        "bioscan/malformed/line7",
        "bioscan/BIOUG005-01",
        "bioscan/BIOUG006-01",
    ]
    assert [r["reason"] for r in rows] == [
        None,
        None,
        None,
        "missing_in_archive",
        "duplicate_key",
        "malformed_row",
        "not_an_image",
        None,
    ]
    assert [r["status"] for r in rows].count("ok") == 4
    sp, ge, fa, order = rows[:4]
    assert all(r["verbatim_kingdom"] == "Animalia" for r in (sp, ge, fa, order))
    assert sp["verbatim_phylum"] == "Arthropoda" and sp["verbatim_class"] == "Insecta"
    assert sp["verbatim_scientific_name"] == "Lestodiplosis sp. 1"
    assert ge["verbatim_scientific_name"] == "Bradysia" and ge["verbatim_genus"] == "Bradysia"
    assert fa["verbatim_scientific_name"] == "Microgastrinae"  # most specific rank given
    assert fa["verbatim_genus"] is None  # not_classified -> null
    assert order["verbatim_scientific_name"] == "Coleoptera" and order["verbatim_family"] is None
    assert (sp["bioscan_processid"], sp["bioscan_part"], sp["bioscan_filename"]) == (
        "BIOUG001-01",
        "part1",
        "BIOUG001-01.jpg",
    )
    assert sp["license"] == "CreativeCommons - Attribution"
    assert sp["rights_holder"] == "CBG Photography Group"
    for row in rows:
        if row["status"] != "ok":
            continue
        data = stored_bytes(cfg.root, row)
        source = payloads[f"{row['bioscan_part']}/{row['bioscan_filename']}"]
        if row["key"] == "bioscan/BIOUG006-01":
            assert data != source and data[:3] == b"\xff\xd8\xff"  # PNG -> JPEG
        else:
            assert data == source
    assert (stats.rows, stats.ok, stats.failed) == (8, 4, 4)
    assert stats.ignored == {"unlisted_member": 1, "unsafe_member": 2}
    saved = json.loads((cfg.root / "catalog/bioscan/_stats.json").read_text())
    assert saved["reasons"] == {
        "duplicate_key": 1,
        "malformed_row": 1,
        "missing_in_archive": 1,
        "not_an_image": 1,
    }


def test_rerun_identical_and_interrupted_part_redone(tmp_path):
    section, _ = make_bioscan(tmp_path / "in")
    cfg = make_cfg(tmp_path, section)
    ingest_bioscan(cfg)
    before = snapshot(cfg.root)
    again = ingest_bioscan(cfg)
    assert (again.parts_written, again.parts_skipped) == (0, 3)
    assert snapshot(cfg.root) == before
    (cfg.root / "catalog/bioscan/part-00002.parquet").unlink()
    dead = subprocess.Popen(["true"])  # a writer that has exited: its temporary is swept
    dead.wait()
    (cfg.root / f"images/bioscan/.part-00002.tar.{dead.pid}.tmp").write_bytes(b"half")
    redo = ingest_bioscan(cfg)
    assert (redo.parts_written, redo.parts_skipped) == (1, 2)
    assert snapshot(cfg.root) == before


def test_missing_zip_and_missing_column_are_input_errors(tmp_path):
    section, _ = make_bioscan(tmp_path / "in")
    with pytest.raises(InputError, match="nope.zip"):
        ingest_bioscan(make_cfg(tmp_path, {**section, "zips": [str(tmp_path / "nope.zip")]}))
    bad = tmp_path / "in" / "bad.tsv"
    write_tsv(bad, ["sampleid", "processid"], [["a", "b"]])
    with pytest.raises(InputError, match="image_file"):
        ingest_bioscan(make_cfg(tmp_path, {**section, "metadata": str(bad)}))
