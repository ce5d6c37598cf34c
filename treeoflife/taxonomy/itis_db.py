"""ITIS from its downloadable SQLite database: lookup tables in our DuckDB store, and names
resolved to seven ranks through them.

Read with Python's sqlite3 (DuckDB's sqlite scanner is an extension that may not install
offline) and streamed into DuckDB as Arrow chunks. Facts relied on: `name_usage` is
valid/accepted for current names and invalid/not accepted for the rest, which
`synonym_links` points at their accepted TSN; rank names come from `taxon_unit_types`
keyed by (kingdom_id, rank_id), and plants say `Division` where animals say `Phylum`;
`hierarchy.hierarchy_string` lists the TSNs from the root down to the taxon.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import duckdb
import pyarrow as pa

from treeoflife.errors import InputError
from treeoflife.io import duckdb_writable
from treeoflife.progress import Progress, or_null
from treeoflife.records import TAXONOMY_QUERY_COLUMNS as QUERY_COLUMNS
from treeoflife.schemas import RANKS, TAXA
from treeoflife.taxonomy.kingdoms import kingdom_key
from treeoflife.taxonomy.merge import take_answer
from treeoflife.taxonomy.names import match_key, normalize_name

log = logging.getLogger(__name__)

AUTHORITY = "itis"
CHUNK_ROWS = 100_000
ACCEPTED_USAGES = ("valid", "accepted")
ITIS_RANKS = {r: r for r in RANKS} | {"division": "phylum"}
"""ITIS rank names -> ours (ITIS calls the botanical phylum a division)."""
ENGLISH = ("english", "en", "eng")
"""How ITIS spells English in its vernacular names' language."""

# DuckDB table -> (SQLite query, Arrow schema of its columns)
_TABLES: dict[str, tuple[str, pa.Schema]] = {
    "itis_taxa": (
        "SELECT tsn, complete_name, unit_name1, unit_name2, name_usage, parent_tsn,"
        " kingdom_id, rank_id FROM taxonomic_units",
        pa.schema(
            [
                ("tsn", pa.int64()),
                ("complete_name", pa.string()),
                ("unit_name1", pa.string()),
                ("unit_name2", pa.string()),
                ("name_usage", pa.string()),
                ("parent_tsn", pa.int64()),
                ("kingdom_id", pa.int64()),
                ("rank_id", pa.int64()),
            ]
        ),
    ),
    "itis_synonyms": (
        "SELECT tsn, tsn_accepted FROM synonym_links",
        pa.schema([("tsn", pa.int64()), ("tsn_accepted", pa.int64())]),
    ),
    "itis_vernaculars": (
        "SELECT tsn, vernacular_name, language FROM vernaculars",
        pa.schema(
            [("tsn", pa.int64()), ("vernacular_name", pa.string()), ("language", pa.string())]
        ),
    ),
    "itis_rank_names": (
        "SELECT kingdom_id, rank_id, rank_name FROM taxon_unit_types",
        pa.schema(
            [("kingdom_id", pa.int64()), ("rank_id", pa.int64()), ("rank_name", pa.string())]
        ),
    ),
    "itis_hierarchy": (
        "SELECT TSN, hierarchy_string FROM hierarchy",
        pa.schema([("tsn", pa.int64()), ("hierarchy_string", pa.string())]),
    ),
}


def _fingerprint(sqlite_path: Path) -> str:
    st = sqlite_path.stat()
    return f"{sqlite_path.name}:{st.st_size}:{st.st_mtime_ns}"


def _stored_fingerprint(con: duckdb.DuckDBPyConnection) -> str | None:
    try:
        row = con.execute("SELECT value FROM itis_meta WHERE key = 'fingerprint'").fetchone()
    except duckdb.CatalogException:
        return None
    return row[0] if row else None


def _copy_table(src: sqlite3.Connection, con, name: str, query: str, schema: pa.Schema) -> int:
    cols = ", ".join(f'"{f.name}" {_duck_type(f.type)}' for f in schema)
    con.execute(f"CREATE OR REPLACE TABLE {name} ({cols})")
    cur = src.execute(query)
    total = 0
    while rows := cur.fetchmany(CHUNK_ROWS):
        columns = list(zip(*rows, strict=True))
        chunk = pa.table(
            [_column(values, f.type) for values, f in zip(columns, schema, strict=True)],
            schema=schema,
        )
        con.register("itis_chunk", chunk)
        con.execute(f"INSERT INTO {name} SELECT * FROM itis_chunk")
        con.unregister("itis_chunk")
        total += len(rows)
    return total


def _duck_type(t: pa.DataType) -> str:
    return "BIGINT" if pa.types.is_integer(t) else "VARCHAR"


def _column(values: tuple, t: pa.DataType) -> pa.Array:
    if pa.types.is_integer(t):
        return pa.array([None if v in (None, "") else int(v) for v in values], t)
    return pa.array([None if v is None else str(v).strip() for v in values], t)


def load_itis_sqlite(sqlite_path: Path, db_path: Path, progress: Progress | None = None) -> dict:
    """Copy ITIS's lookup tables from its SQLite database into the DuckDB store `db_path`.

    Skipped when the store already holds this file (same name, size and mtime). The copy runs
    in one transaction, so a crash leaves the previous tables (or none), never a partial set.
    Returns the row count per table and whether the load was skipped.
    """
    sqlite_path, db_path = Path(sqlite_path), Path(db_path)
    if not sqlite_path.is_file():
        raise InputError(f"ITIS SQLite database not found: {sqlite_path}")
    progress = or_null(progress)
    fp = _fingerprint(sqlite_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    # a `?` in the data root: a scratch copy (duckdb_writable), closed before it is copied back
    with duckdb_writable(db_path) as writable, duckdb.connect(writable) as con:
        if _stored_fingerprint(con) == fp:
            counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in _TABLES}
            return {**counts, "skipped": True}
        src = sqlite3.connect(f"file:{os.fspath(sqlite_path)}?mode=ro", uri=True)
        try:
            progress.start("taxonomy.itis_load", len(_TABLES))
            counts = {}
            con.execute("BEGIN TRANSACTION")
            try:
                for name, (query, schema) in _TABLES.items():
                    try:
                        counts[name] = _copy_table(src, con, name, query, schema)
                    except sqlite3.Error as e:
                        raise InputError(f"{sqlite_path}: not an ITIS database ({e})") from e
                    progress.advance(1)
                con.execute("CREATE INDEX itis_taxa_tsn ON itis_taxa (tsn)")
                con.execute(
                    "CREATE OR REPLACE TABLE itis_names AS SELECT lower(complete_name) AS name_key,"
                    " tsn FROM itis_taxa WHERE complete_name IS NOT NULL"
                )
                con.execute("CREATE OR REPLACE TABLE itis_meta (key VARCHAR, value VARCHAR)")
                con.execute("INSERT INTO itis_meta VALUES ('fingerprint', ?)", [fp])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            progress.finish()
        finally:
            src.close()
    log.info("itis: loaded %s from %s", counts, sqlite_path)
    return {**counts, "skipped": False}


def _lookup(con, sql: str, keys: list, key_type: pa.DataType) -> list[tuple]:
    con.register("itis_keys", pa.table({"k": pa.array(keys, key_type)}))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.unregister("itis_keys")


def _accepted(con, keys: list[str]) -> dict[str, list[tuple[int, bool]]]:
    """name key -> sorted [(accepted tsn, via_synonym)] for every taxon with that name."""
    rows = _lookup(
        con,
        "SELECT n.name_key, t.tsn, t.name_usage, s.tsn_accepted FROM itis_keys k"
        " JOIN itis_names n ON n.name_key = k.k JOIN itis_taxa t ON t.tsn = n.tsn"
        " LEFT JOIN itis_synonyms s ON s.tsn = t.tsn",
        keys,
        pa.string(),
    )
    out: dict[str, set[tuple[int, bool]]] = {}
    for key, tsn, usage, accepted in rows:
        if (usage or "").strip().lower() in ACCEPTED_USAGES:
            out.setdefault(key, set()).add((tsn, False))
        elif accepted is not None:
            out.setdefault(key, set()).add((accepted, True))
    return {k: sorted(v) for k, v in out.items()}


def _classifications(con, tsns: list[int]) -> dict[int, dict]:
    """tsn -> {rank: name} for the seven ranks, the accepted name, and the English name."""
    paths = dict(
        _lookup(
            con,
            "SELECT h.tsn, h.hierarchy_string FROM itis_keys k"
            " JOIN itis_hierarchy h ON h.tsn = k.k",
            tsns,
            pa.int64(),
        )
    )
    lineage = {t: [int(p) for p in paths[t].split("-") if p.strip()] for t in tsns if t in paths}
    nodes = sorted({n for path in lineage.values() for n in path} | set(tsns))
    info = {
        tsn: (name, unit1, unit2, (rank or "").strip().lower())
        for tsn, name, unit1, unit2, rank in _lookup(
            con,
            "SELECT t.tsn, t.complete_name, t.unit_name1, t.unit_name2, r.rank_name"
            " FROM itis_keys k JOIN itis_taxa t ON t.tsn = k.k LEFT JOIN itis_rank_names r"
            " ON r.kingdom_id = t.kingdom_id AND r.rank_id = t.rank_id",
            nodes,
            pa.int64(),
        )
    }
    english: dict[int, str] = {}
    for tsn, name in _lookup(
        con,
        "SELECT v.tsn, min(v.vernacular_name) FROM itis_keys k JOIN itis_vernaculars v"
        f" ON v.tsn = k.k WHERE lower(trim(v.language)) IN {ENGLISH} GROUP BY v.tsn",
        tsns,
        pa.int64(),
    ):
        english[tsn] = name
    out: dict[int, dict] = {}
    for tsn in tsns:
        if tsn not in info:
            continue
        path = lineage.get(tsn) or [tsn]
        if path[-1] != tsn:
            path = [*path, tsn]
        ranks: dict[str, str | None] = dict.fromkeys(RANKS)
        for node in path:
            if node not in info:
                continue
            name, unit1, unit2, rank_name = info[node]
            rank = ITIS_RANKS.get(rank_name)
            if rank == "species":
                ranks["genus"] = ranks["genus"] or unit1
                ranks["species"] = unit2
            elif rank == "genus":
                ranks["genus"] = unit1 or name
            elif rank:
                ranks[rank] = unit1 or name
        out[tsn] = {"ranks": ranks, "name": info[tsn][0], "common": english.get(tsn)}
    return out


def resolve_with_itis(queries: pa.Table, db_path: Path) -> pa.Table:
    """TAXA rows (authority "itis") for the queries whose name ITIS knows without doubt.

    A name exact in ITIS (case-insensitive canonical form) gives its accepted taxon; an
    invalid/not accepted name goes to its accepted one through synonym_links (flag synonym).
    A candidate whose kingdom contradicts the query's is dropped; a name left with several
    accepted taxa is not resolved here. Queries not in the result stay with the caller.
    """
    missing = [c for c in ("query_id", "source") if c not in queries.column_names]
    if missing:
        raise InputError(f"taxonomy queries lack column(s) {missing}")
    rows = queries.to_pylist()
    keyed: list[tuple[dict, str]] = []
    for q in rows:
        key = match_key(normalize_name(q.get("verbatim_scientific_name")).canonical)
        if key:
            keyed.append((q, key))
    with duckdb.connect(str(db_path), read_only=True) as con:
        candidates = _accepted(con, sorted({k for _, k in keyed}))
        tsns = sorted({t for cands in candidates.values() for t, _ in cands})
        taxa = _classifications(con, tsns)
    out: list[dict] = []
    counts = {"asked": len(rows), "resolved": 0, "absent": 0, "guarded": 0, "ambiguous": 0}
    for q, key in keyed:
        cands = [(t, syn) for t, syn in candidates.get(key, []) if t in taxa]
        if not cands:
            counts["absent"] += 1
            continue
        want = kingdom_key(q.get("verbatim_kingdom"))
        kept = [
            (t, syn)
            for t, syn in cands
            if want is None or kingdom_key(taxa[t]["ranks"]["kingdom"]) in (None, want)
        ]
        if not kept:
            counts["guarded"] += 1
            continue
        if len({t for t, _ in kept}) > 1:
            counts["ambiguous"] += 1
            continue
        tsn, via_synonym = kept[0]
        taxon = taxa[tsn]
        row = {c: q.get(c) for c in QUERY_COLUMNS if c != "source" and c in TAXA.names}
        for r in RANKS:
            row[r] = taxon["ranks"][r]
            row[f"{r}_provenance"] = AUTHORITY if taxon["ranks"][r] else None
        flags = {"synonym"} if via_synonym else set()
        if len(kept) < len(cands):
            flags.add("homonym_guarded")
        row.update(
            scientific_name=taxon["name"],
            common_name=taxon["common"] or q.get("verbatim_common_name"),
            taxon_id=str(tsn),
            authority=AUTHORITY,
            match_type="synonym" if via_synonym else "exact",
            confidence=1.0,
            flags=sorted(flags),
            reason=None,
        )
        out.append(row)
        counts["resolved"] += 1
    counts["no_name"] = len(rows) - len(keyed)
    log.info("itis: %s", counts)
    out.sort(key=lambda r: r["query_id"])
    return pa.Table.from_pylist(out, schema=TAXA)


def refine_with_itis(
    taxa: pa.Table, sources: dict[str, str], db_path: Path
) -> tuple[pa.Table, dict]:
    """Put ITIS's answer on rows the backbone left short of a species (unresolved, source-only
    or higher-rank), merged rank by rank (`merge.apply_answer`); ITIS's English name replaces
    the source's. `sources` maps query_id -> source. Same rows, same order; returns the counts.
    """
    rows = taxa.to_pylist()
    todo = {
        r["query_id"]: i
        for i, r in enumerate(rows)
        if r["match_type"] in ("none", "source", "higherrank") and r["verbatim_scientific_name"]
    }
    queries = pa.Table.from_pylist(
        [
            {**{c: rows[i].get(c) for c in QUERY_COLUMNS}, "source": sources.get(q)}
            for q, i in todo.items()
        ],
        schema=pa.schema([(c, pa.string()) for c in QUERY_COLUMNS]),
    )
    counts = {"asked": len(todo), "improved": 0}
    for found in resolve_with_itis(queries, db_path).to_pylist():
        i = todo[found["query_id"]]
        answer = {**found, "ranks": {r: found[r] for r in RANKS}}
        take_answer(rows, i, answer, AUTHORITY, counts, answer_common_name_first=True)
    log.info("itis refine: %s", counts)
    return pa.Table.from_pylist(rows, schema=TAXA), counts
