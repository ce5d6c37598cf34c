"""Name look-ups against the DuckDB backbone: each runs once per batch over the batch's
distinct keys (hash joins against the whole backbone) and returns candidates per key."""

from __future__ import annotations

import pyarrow as pa

from treeoflife.taxonomy.candidates import HIGHER_RANKS, Candidate

_ENGLISH = ("en", "eng", "english")


def allowed_distance(epithet: str, fuzzy_max_distance: int) -> int:
    """Edit distance allowed for an epithet: short epithets get less (alba/alpa/arba...)."""
    return min(fuzzy_max_distance, max(1, len(epithet) // 4))


_CANDIDATE_SELECT = """
    t.is_synonym AS via_synonym,
    a.taxonID, a.taxonomicStatus, a.rank, a.canonicalName, a.genericName, a.specificEpithet,
    a.kingdom, a.phylum, a.class, a."order", a.family, a.genus
"""
_ACCEPTED_JOIN = """
    JOIN taxon a ON a.taxonID = CASE WHEN t.is_synonym THEN t.acceptedNameUsageID ELSE t.taxonID END
"""
_USABLE = "(lower(t.taxonomicStatus) IN ('accepted', 'doubtful') OR t.is_synonym)"


_CANDIDATE_COLUMNS = (
    "taxonID",
    "taxonomicStatus",
    "rank",
    "canonicalName",
    "genericName",
    "specificEpithet",
)


def _candidates(rows: pa.Table, distances: list | None = None) -> list[Candidate]:
    """The candidates of a look-up's result, column by column (no dict per row: a batch of
    200k names brings ~900k candidate rows)."""
    ids, status, rank, canonical, generic, epithet = (
        rows.column(c).to_pylist() for c in _CANDIDATE_COLUMNS
    )
    classification = zip(*(rows.column(r).to_pylist() for r in HIGHER_RANKS), strict=True)
    via = rows.column("via_synonym").to_pylist()
    dist = distances if distances is not None else [0] * rows.num_rows
    return [
        Candidate(t, s, r, c, g, e, cl, bool(v), d)
        for t, s, r, c, g, e, cl, v, d in zip(
            ids, status, rank, canonical, generic, epithet, classification, via, dist, strict=True
        )
    ]


def lookup_names(con, keys: list[tuple[str, str | None]]) -> dict[tuple, list[Candidate]]:
    """(name key, rank or None) -> candidates: exact names and synonyms' accepted taxa."""
    if not keys:
        return {}
    wanted = pa.table(
        {"key": [k for k, _ in keys], "rank_filter": [r for _, r in keys]},
        schema=pa.schema([("key", pa.string()), ("rank_filter", pa.string())]),
    )
    con.register("wanted_names", wanted)
    try:
        rows = con.sql(
            f"""
            WITH w AS (SELECT DISTINCT key, rank_filter FROM wanted_names)
            SELECT w.key, w.rank_filter, {_CANDIDATE_SELECT}
            FROM w JOIN taxon t ON t.name_key = w.key
                AND (w.rank_filter IS NULL OR t.rank = w.rank_filter)
            {_ACCEPTED_JOIN}
            WHERE {_USABLE}
            ORDER BY w.key, w.rank_filter, a.taxonID, via_synonym
            """
        ).to_arrow_table()
    finally:
        con.unregister("wanted_names")
    out: dict[tuple, list[Candidate]] = {}
    keys = zip(rows.column("key").to_pylist(), rows.column("rank_filter").to_pylist(), strict=True)
    for key, cand in zip(keys, _candidates(rows), strict=True):
        out.setdefault(key, []).append(cand)
    return out


def lookup_fuzzy(con, pairs: list[tuple[str, str, int]]) -> dict[tuple, list[Candidate]]:
    """(genus key, epithet key) -> species of exactly that genus within the allowed distance."""
    if not pairs:
        return {}
    wanted = pa.table(
        {
            "genus_key": [g for g, _, _ in pairs],
            "epithet_key": [e for _, e, _ in pairs],
            "max_distance": [d for _, _, d in pairs],
        }
    )
    con.register("wanted_fuzzy", wanted)
    try:
        rows = con.sql(
            f"""
            WITH w AS (SELECT DISTINCT genus_key, epithet_key, max_distance FROM wanted_fuzzy),
            near AS (
                SELECT w.genus_key AS q_genus, w.epithet_key AS q_epithet,
                       levenshtein(w.epithet_key, t.epithet_key) AS distance, t.*
                FROM w JOIN taxon t ON t.genus_key = w.genus_key
                WHERE t.rank = 'species' AND t.epithet_key IS NOT NULL
                  AND t.epithet_key <> w.epithet_key
                  AND levenshtein(w.epithet_key, t.epithet_key) <= w.max_distance
            )
            SELECT t.q_genus, t.q_epithet, t.distance, {_CANDIDATE_SELECT}
            FROM near t {_ACCEPTED_JOIN}
            WHERE {_USABLE}
            ORDER BY t.q_genus, t.q_epithet, t.distance, a.taxonID, via_synonym
            """
        ).to_arrow_table()
    finally:
        con.unregister("wanted_fuzzy")
    out: dict[tuple, list[Candidate]] = {}
    keys = zip(
        rows.column("q_genus").to_pylist(), rows.column("q_epithet").to_pylist(), strict=True
    )
    for key, cand in zip(keys, _candidates(rows, rows.column("distance").to_pylist()), strict=True):
        out.setdefault(key, []).append(cand)
    return out


def lookup_vernaculars(con, taxon_ids: list[str]) -> dict[str, str]:
    """taxonID -> its English vernacular name (the first in sorted order)."""
    if not taxon_ids:
        return {}
    con.register("wanted_ids", pa.table({"taxonID": sorted(set(taxon_ids))}))
    try:
        langs = ", ".join(f"'{x}'" for x in _ENGLISH)
        rows = con.sql(
            f"""
            SELECT v.taxonID, min(trim(v.vernacularName)) AS name
            FROM vernacular v JOIN wanted_ids w ON v.taxonID = w.taxonID
            WHERE lower(v.language) IN ({langs}) AND trim(v.vernacularName) <> ''
            GROUP BY v.taxonID
            """
        ).fetchall()
    finally:
        con.unregister("wanted_ids")
    return dict(rows)
