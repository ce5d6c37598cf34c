"""Loading the GBIF backbone into DuckDB: real excerpt, idempotence, zip == folder, atomicity."""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import zipfile
from pathlib import Path

import duckdb
import pytest

from treeoflife.errors import InputError
from treeoflife.taxonomy import load_backbone

from .conftest import HOMONYM_TAXA, REAL_ARCHAEA, write_dwca


def _tsv_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dump(db: Path) -> tuple[list, list]:
    with duckdb.connect(str(db), read_only=True) as con:
        taxa = con.execute("SELECT * FROM taxon ORDER BY taxonID").fetchall()
        vern = con.execute("SELECT * FROM vernacular ORDER BY ALL").fetchall()
    return taxa, vern


def test_real_archaea_excerpt_loads_every_row_as_text(tmp_path):
    rows = _tsv_rows(REAL_ARCHAEA / "Taxon.tsv")
    db = tmp_path / "bb.duckdb"
    counts = load_backbone(REAL_ARCHAEA, db)
    assert counts["skipped"] is False
    assert counts["taxa"] == len(rows)
    assert counts["synonyms"] == sum("synonym" in r["taxonomicStatus"] for r in rows)
    assert counts["vernaculars"] == len(_tsv_rows(REAL_ARCHAEA / "VernacularName.tsv"))
    assert counts["rejected_lines"] == 0
    with duckdb.connect(str(db), read_only=True) as con:
        types = dict(
            con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'taxon'"
            ).fetchall()
        )
        assert types["taxonID"] == "VARCHAR" and types["acceptedNameUsageID"] == "VARCHAR"
        # The synonym keeps its accepted id, its own name and the accepted classification.
        row = con.execute(
            "SELECT acceptedNameUsageID, name_key, genus_key, genus, is_synonym FROM taxon "
            "WHERE taxonID = '1000132'"
        ).fetchone()
    src = next(r for r in rows if r["taxonID"] == "1000132")
    assert row == (
        src["acceptedNameUsageID"],
        src["canonicalName"].lower(),
        src["genericName"].lower(),
        src["genus"],
        True,
    )


def test_second_load_is_skipped_and_leaves_the_file_untouched(tmp_path):
    folder = tmp_path / "dwca"
    shutil.copytree(REAL_ARCHAEA, folder)
    db = tmp_path / "bb.duckdb"
    first = load_backbone(folder, db)
    digest, mtime = _digest(db), db.stat().st_mtime_ns
    second = load_backbone(folder, db)
    assert second["skipped"] is True
    assert {k: v for k, v in second.items() if k != "skipped"} == {
        k: v for k, v in first.items() if k != "skipped"
    }
    assert _digest(db) == digest and db.stat().st_mtime_ns == mtime
    # A changed input is a different backbone: it reloads.
    taxon = folder / "Taxon.tsv"
    os.chmod(taxon, 0o644)
    with open(taxon, "a", encoding="utf-8") as fh:
        fh.write(
            "\t".join(
                [
                    "99999999",
                    "",
                    "",
                    "",
                    "",
                    "Newus name",
                    "",
                    "Newus name",
                    "Newus",
                    "name",
                    "",
                    "species",
                    "",
                    "",
                    "accepted",
                    "",
                    "",
                    "Archaea",
                    "",
                    "",
                    "",
                    "",
                    "Newus",
                ]
            )
            + "\n"
        )
    third = load_backbone(folder, db)
    assert third["skipped"] is False
    assert third["taxa"] == first["taxa"] + 1


def test_zip_archive_loads_the_same_as_the_folder(tmp_path):
    archive = tmp_path / "backbone.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in ("meta.xml", "Taxon.tsv", "VernacularName.tsv", "eml.xml"):
            zf.write(REAL_ARCHAEA / name, name)
    from_folder, from_zip = tmp_path / "folder.duckdb", tmp_path / "zip.duckdb"
    a = load_backbone(REAL_ARCHAEA, from_folder)
    b = load_backbone(archive, from_zip)
    assert {k: a[k] for k in ("taxa", "synonyms", "vernaculars")} == {
        k: b[k] for k in ("taxa", "synonyms", "vernaculars")
    }
    assert _dump(from_folder) == _dump(from_zip)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["backbone.zip", "folder.duckdb", "zip.duckdb"]
    ), "the zip's scratch extraction must be cleaned up"


def test_archive_without_meta_xml_uses_the_header(tmp_path):
    folder = write_dwca(tmp_path / "dwca", HOMONYM_TAXA)
    counts = load_backbone(folder, tmp_path / "bb.duckdb")
    assert counts["taxa"] == len(HOMONYM_TAXA)
    assert counts["synonyms"] == sum(row[7] == "synonym" for row in HOMONYM_TAXA)
    assert counts["vernaculars"] == 0


def test_malformed_lines_are_counted_not_fatal(tmp_path):
    bad = (
        "77",
        "",
        "Too many",
        "Too many",
        "",
        "",
        "genus",
        "accepted",
        "Plantae",
        "",
        "",
        "",
        "",
        "",
        "EXTRA",
        "COLUMNS",
    )
    folder = write_dwca(tmp_path / "dwca", [*HOMONYM_TAXA, bad])
    counts = load_backbone(folder, tmp_path / "bb.duckdb")
    assert counts["taxa"] == len(HOMONYM_TAXA)
    assert counts["rejected_lines"] == 1


def test_failed_load_leaves_no_database_and_keeps_a_previous_one(tmp_path):
    db = tmp_path / "bb.duckdb"
    with pytest.raises(InputError):
        load_backbone(tmp_path / "missing", db)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError):
        load_backbone(empty, db)
    assert not db.exists()
    folder = tmp_path / "dwca"
    shutil.copytree(REAL_ARCHAEA, folder)
    load_backbone(folder, db)
    digest = _digest(db)
    os.chmod(folder / "meta.xml", 0o644)
    (folder / "meta.xml").write_text("<archive><core", encoding="utf-8")  # truncated XML
    with pytest.raises(InputError):
        load_backbone(folder, db)
    assert _digest(db) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bb.duckdb", "dwca", "empty"]
