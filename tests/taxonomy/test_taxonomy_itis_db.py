"""ITIS SQLite loader and resolver, on a small database made here in ITIS's real schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow as pa
import pytest

from treeoflife.errors import InputError
from treeoflife.schemas import RANKS, TAXA
from treeoflife.taxonomy.itis_db import load_itis_sqlite, resolve_with_itis
from treeoflife.taxonomy.queries import QUERY_COLUMNS

# Column lists as in ITIS's SQLite download (PRAGMA table_info of each table).
SCHEMA = """
CREATE TABLE taxonomic_units (tsn INTEGER PRIMARY KEY, unit_ind1 CHAR(1), unit_name1 CHAR(35)
 NOT NULL, unit_ind2 CHAR(1), unit_name2 VARCHAR(35), unit_ind3 VARCHAR(7),
 unit_name3 VARCHAR(35), unit_ind4 VARCHAR(7), unit_name4 VARCHAR(35),
 unnamed_taxon_ind CHAR(1), name_usage VARCHAR(12) NOT NULL, unaccept_reason VARCHAR(50),
 credibility_rtng VARCHAR(40) NOT NULL, completeness_rtng CHAR(10), currency_rating CHAR(7),
 phylo_sort_seq SMALLINT, initial_time_stamp DATETIME NOT NULL, parent_tsn INTEGER,
 taxon_author_id INTEGER, hybrid_author_id INTEGER, kingdom_id SMALLINT NOT NULL,
 rank_id SMALLINT NOT NULL, update_date DATE NOT NULL, uncertain_prnt_ind CHAR(3),
 n_usage TEXT, complete_name TEXT);
CREATE TABLE synonym_links (tsn INTEGER NOT NULL, tsn_accepted INTEGER NOT NULL,
 update_date DATE NOT NULL);
CREATE TABLE vernaculars (tsn INTEGER NOT NULL, vernacular_name VARCHAR(80) NOT NULL,
 language VARCHAR(15) NOT NULL, approved_ind CHAR(1), update_date DATE NOT NULL,
 vern_id INTEGER NOT NULL);
CREATE TABLE taxon_unit_types (kingdom_id INTEGER NOT NULL, rank_id SMALLINT NOT NULL,
 rank_name CHAR(15) NOT NULL, dir_parent_rank_id SMALLINT NOT NULL,
 req_parent_rank_id SMALLINT NOT NULL, update_date DATE NOT NULL);
CREATE TABLE hierarchy (hierarchy_string VARCHAR(128) NOT NULL PRIMARY KEY, TSN INTEGER NOT NULL,
 Parent_TSN INTEGER, level INTEGER NOT NULL, ChildrenCount INTEGER NOT NULL);
"""

RANK_NAMES = {
    3: {10: "Kingdom", 20: "Subkingdom", 30: "Division", 60: "Class", 100: "Order",
        140: "Family", 180: "Genus", 220: "Species"},
    5: {10: "Kingdom", 20: "Subkingdom", 30: "Phylum", 40: "Subphylum", 60: "Class",
        100: "Order", 140: "Family", 180: "Genus", 220: "Species"},
}  # fmt: skip

# tsn, name1, name2, usage, parent, kingdom_id, rank_id
TAXA_ROWS = [
    (202422, "Plantae", None, "valid", None, 3, 10),
    (954898, "Viridiplantae", None, "valid", 202422, 3, 20),
    (846494, "Tracheophyta", None, "accepted", 954898, 3, 30),
    (18063, "Magnoliopsida", None, "accepted", 846494, 3, 60),
    (19273, "Fagales", None, "accepted", 18063, 3, 100),
    (19275, "Fagaceae", None, "accepted", 19273, 3, 140),
    (19276, "Quercus", None, "accepted", 19275, 3, 180),
    (19290, "Quercus", "alba", "accepted", 19276, 3, 220),
    (202423, "Animalia", None, "valid", None, 5, 10),
    (914154, "Bilateria", None, "valid", 202423, 5, 20),
    (158852, "Chordata", None, "valid", 914154, 5, 30),
    (331030, "Vertebrata", None, "valid", 158852, 5, 40),
    (179913, "Mammalia", None, "valid", 331030, 5, 60),
    (180539, "Carnivora", None, "valid", 179913, 5, 100),
    (180540, "Felidae", None, "valid", 180539, 5, 140),
    (552475, "Puma", None, "valid", 180540, 5, 180),
    (180587, "Puma", "concolor", "valid", 552475, 5, 220),
    (183797, "Felis", None, "valid", 180540, 5, 180),
    (552479, "Felis", "concolor", "invalid", 183797, 5, 220),
]
VERNACULARS = [
    (180587, "cougar", "English"),
    (180587, "puma", "Spanish"),
    (180587, "mountain lion", "English"),
    (19290, "white oak", "English"),
]


def _lineage(tsn: int, parents: dict[int, int | None]) -> list[int]:
    path = [tsn]
    while parents[path[0]] is not None:
        path.insert(0, parents[path[0]])
    return path


def make_itis_sqlite(path: Path, extra_rows: tuple = ()) -> Path:
    """ITIS's five tables holding TAXA_ROWS (+ `extra_rows`, same shape), with their hierarchy."""
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    for kingdom, ranks in RANK_NAMES.items():
        for rank_id, name in ranks.items():
            con.execute(
                "INSERT INTO taxon_unit_types VALUES (?, ?, ?, 0, 0, '2024-01-01')",
                (kingdom, rank_id, name),
            )
    parents = {}
    for tsn, n1, n2, usage, parent, kingdom, rank in [*TAXA_ROWS, *extra_rows]:
        complete = f"{n1} {n2}" if n2 else n1
        con.execute(
            "INSERT INTO taxonomic_units (tsn, unit_name1, unit_name2, name_usage,"
            " credibility_rtng, initial_time_stamp, parent_tsn, kingdom_id, rank_id,"
            " update_date, n_usage, complete_name)"
            " VALUES (?, ?, ?, ?, 'TWG standards met', '1996-06-13 14:51:08', ?, ?, ?,"
            " '2024-01-01', ?, ?)",
            (tsn, n1, n2, usage, parent, kingdom, rank, usage, complete),
        )
        parents[tsn] = parent
    con.execute("INSERT INTO synonym_links VALUES (552479, 180587, '2024-01-01')")
    for i, (tsn, name, lang) in enumerate(VERNACULARS):
        con.execute(
            "INSERT INTO vernaculars VALUES (?, ?, ?, 'N', '2024-01-01', ?)", (tsn, name, lang, i)
        )
    for tsn, *_ in [*TAXA_ROWS, *extra_rows]:
        if tsn == 552479:  # ITIS's hierarchy holds accepted names only
            continue
        lineage = _lineage(tsn, parents)
        children = sum(1 for p in parents.values() if p == tsn)
        con.execute(
            "INSERT INTO hierarchy VALUES (?, ?, ?, ?, ?)",
            ("-".join(map(str, lineage)), tsn, parents[tsn], len(lineage) - 1, children),
        )
    con.commit()
    con.close()
    return path


def _queries(rows: list[dict]) -> pa.Table:
    full = [{c: r.get(c) for c in QUERY_COLUMNS} for r in rows]
    return pa.Table.from_pylist(full, schema=pa.schema([(c, pa.string()) for c in QUERY_COLUMNS]))


@pytest.fixture(scope="module")
def itis_db(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("itis")
    db = tmp / "taxonomy.duckdb"
    loaded = load_itis_sqlite(make_itis_sqlite(tmp / "ITIS.sqlite"), db)
    assert loaded["itis_taxa"] == len(TAXA_ROWS)
    assert loaded["itis_synonyms"] == 1
    assert loaded["itis_vernaculars"] == len(VERNACULARS)
    assert loaded["skipped"] is False
    return db


@pytest.fixture(scope="module")
def resolved(itis_db) -> dict[str, dict]:
    queries = _queries(
        [
            {"query_id": "q1", "source": "inat21", "verbatim_scientific_name": "Puma concolor"},
            {"query_id": "q2", "source": "eol", "verbatim_scientific_name": "Felis concolor L."},
            {"query_id": "q3", "source": "eol", "verbatim_scientific_name": "Quercus alba"},
            {"query_id": "q4", "source": "eol", "verbatim_scientific_name": "Nonexistus fictus"},
            {
                "query_id": "q5",
                "source": "bioscan",
                "verbatim_kingdom": "Plantae",
                "verbatim_scientific_name": "Puma concolor",
            },
            {"query_id": "q6", "source": "eol", "verbatim_scientific_name": "not_classified"},
            {
                "query_id": "q7",
                "source": "eol",
                "verbatim_kingdom": "Metazoa",
                "verbatim_scientific_name": "  puma   concolor ",
            },
        ]
    )
    table = resolve_with_itis(queries, itis_db)
    assert table.schema.equals(TAXA, check_metadata=False)
    return {r["query_id"]: r for r in table.to_pylist()}


def test_accepted_name_gets_seven_ranks_and_english_common_name(resolved):
    row = resolved["q1"]
    assert [row[r] for r in RANKS] == [
        "Animalia", "Chordata", "Mammalia", "Carnivora", "Felidae", "Puma", "concolor",
    ]  # fmt: skip
    assert all(row[f"{r}_provenance"] == "itis" for r in RANKS)
    assert row["authority"] == "itis"
    assert row["match_type"] == "exact"
    assert row["taxon_id"] == "180587"
    assert row["scientific_name"] == "Puma concolor"
    assert row["common_name"] == "cougar"  # English only, smallest first: never "puma" (Spanish)
    assert row["flags"] == []


def test_synonym_goes_to_accepted_taxon(resolved):
    row = resolved["q2"]
    assert row["match_type"] == "synonym"
    assert "synonym" in row["flags"]
    assert row["taxon_id"] == "180587"
    assert row["scientific_name"] == "Puma concolor"
    assert (row["genus"], row["species"]) == ("Puma", "concolor")
    assert row["verbatim_scientific_name"] == "Felis concolor L."


def test_plant_division_counts_as_phylum(resolved):
    row = resolved["q3"]
    assert [row[r] for r in RANKS] == [
        "Plantae", "Tracheophyta", "Magnoliopsida", "Fagales", "Fagaceae", "Quercus", "alba",
    ]  # fmt: skip
    assert row["common_name"] == "white oak"


def test_absent_placeholder_and_contradicting_kingdom_are_left_to_the_caller(resolved):
    assert "q4" not in resolved  # absent from ITIS
    assert "q6" not in resolved  # placeholder, no name
    assert "q5" not in resolved  # Puma concolor is no plant: never taken
    assert resolved["q7"]["taxon_id"] == "180587"  # Metazoa = Animalia; case/space normalised


def test_reload_of_the_same_file_is_skipped(itis_db, tmp_path):
    sqlite_path = itis_db.parent / "ITIS.sqlite"
    again = load_itis_sqlite(sqlite_path, itis_db)
    assert again["skipped"] is True
    assert again["itis_taxa"] == len(TAXA_ROWS)


def test_not_an_itis_database_is_a_clear_error_and_leaves_no_tables(tmp_path):
    bad = tmp_path / "other.sqlite"
    con = sqlite3.connect(bad)
    con.execute("CREATE TABLE taxonomic_units (tsn INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(InputError, match="not an ITIS database"):
        load_itis_sqlite(bad, tmp_path / "t.duckdb")
    with pytest.raises(InputError, match="not found"):
        load_itis_sqlite(tmp_path / "missing.sqlite", tmp_path / "t.duckdb")


def _taxa_row(qid: str, name: str, **ranks) -> dict:
    row = {f: None for f in TAXA.names}
    row.update(query_id=qid, verbatim_scientific_name=name, match_type="none", flags=[])
    for r, v in ranks.items():
        row[r], row[f"{r}_provenance"] = v, "gbif-backbone"
    return row


def test_refine_fills_only_rows_the_backbone_left_short(itis_db):
    from treeoflife.taxonomy.itis_db import refine_with_itis

    rows = [
        _taxa_row("a", "Quercus alba"),  # unresolved by the backbone: ITIS answers
        {**_taxa_row("b", "Puma concolor", kingdom="Animalia", genus="Puma", species="x"),
         "match_type": "exact", "authority": "gbif-backbone"},  # resolved: untouched
        {**_taxa_row("c", "Felis concolor", kingdom="Animalia", family="Felidae"),
         "match_type": "higherrank", "common_name": "katt"},  # higher-rank: ITIS goes deeper
        _taxa_row("d", "Nonexistus fictus"),  # ITIS does not know it either
    ]  # fmt: skip
    taxa = pa.Table.from_pylist(rows, schema=TAXA)
    sources = {"a": "eol", "b": "eol", "c": "eol", "d": "eol"}
    out, counts = refine_with_itis(taxa, sources, itis_db)
    got = out.to_pylist()
    assert [r["query_id"] for r in got] == ["a", "b", "c", "d"]
    assert counts == {"asked": 3, "improved": 2}
    assert got[0]["authority"] == "itis" and got[0]["species"] == "alba"
    assert got[1] == taxa.to_pylist()[1]
    assert got[2]["match_type"] == "synonym" and got[2]["genus"] == "Puma"
    assert got[2]["common_name"] == "cougar"
    assert got[3]["match_type"] == "none" and got[3]["authority"] is None
