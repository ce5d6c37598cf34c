"""Resolve verbatim taxonomy queries against the local GBIF backbone, with per-rank provenance.

Order per query (first that succeeds wins):
1. exact canonical name (case-insensitive) among accepted/doubtful taxa;
2. synonym -> its accepted taxon;
3. fuzzy epithet within the exact genus (blocked: only species of that genus are compared);
4. the most specific verbatim rank (genus, family, ... kingdom) found in the backbone;
5. the source's own rank labels;
6. unresolved, with a reason.

Name lookups run in DuckDB over the distinct keys of a batch (hash joins against the whole
backbone, one pass per step); Python only picks among the few candidates of each query.
A candidate whose kingdom contradicts the query's kingdom is never taken, and a name that stays
ambiguous across kingdoms/phyla is left unresolved rather than guessed.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from treeoflife.progress import Progress, or_null
from treeoflife.schemas import RANKS, TAXA
from treeoflife.taxonomy.backbone import AUTHORITY, open_backbone
from treeoflife.taxonomy.kingdoms import canonical_kingdom, is_unknown_kingdom, kingdom_key
from treeoflife.taxonomy.merge import scientific_name
from treeoflife.taxonomy.names import (
    ParsedName,
    clean_text,
    match_key,
    normalize_name,
    normalize_rank_value,
)
from treeoflife.taxonomy.provenance import with_rank_match_types
from treeoflife.taxonomy.queries import QUERY_COLUMNS, prepare_queries
from treeoflife.taxonomy.unify import unify_species_labels
from treeoflife.vocabulary import Reason

log = logging.getLogger(__name__)

HIGHER_RANKS = RANKS[:-1]  # kingdom..genus: the classification columns of the backbone
FLAG_UNKNOWN_KINGDOM = "unknown_kingdom"
_ENGLISH = ("en", "eng", "english")

CONFIDENCE_EXACT = 1.0
CONFIDENCE_INFRASPECIFIC_DROPPED = 0.95
CONFIDENCE_SOURCE = 0.5
CONFIDENCE_HIGHER_RANK = {
    "genus": 0.7,
    "family": 0.6,
    "order": 0.5,
    "class": 0.4,
    "phylum": 0.3,
    "kingdom": 0.2,
}
BATCH_SIZE = 200_000  # one DuckDB pass per batch: fewer, larger batches scan the table fewer times


def fuzzy_confidence(distance: int) -> float:
    return round(0.9 - 0.1 * (distance - 1), 2)


def allowed_distance(epithet: str, fuzzy_max_distance: int) -> int:
    """Edit distance allowed for an epithet: short epithets get less (alba/alpa/arba...)."""
    return min(fuzzy_max_distance, max(1, len(epithet) // 4))


@functools.lru_cache(maxsize=1 << 16)
def _rank_key(rank: str, value: str | None) -> str | None:
    if rank == "kingdom":
        return kingdom_key(value)
    return match_key(value)


@dataclass(frozen=True)
class Candidate:
    """A backbone taxon a query may resolve to (a synonym already replaced by its accepted)."""

    taxon_id: str
    status: str | None
    rank: str | None
    canonical: str | None
    generic_name: str | None
    epithet: str | None
    classification: tuple[str | None, ...]  # kingdom..genus
    via_synonym: bool
    distance: int = 0

    def value(self, rank: str) -> str | None:
        return self.classification[HIGHER_RANKS.index(rank)]

    @property
    def sort_key(self) -> tuple:
        return (len(self.taxon_id), self.taxon_id)  # numeric ids in numeric order


@dataclass
class _Query:
    query_id: str
    source: str
    raw: dict
    ranks: dict[str, str | None]  # cleaned verbatim kingdom..genus
    name: ParsedName
    common_name: str | None
    flags: frozenset[str] = frozenset()  # about the query itself (unknown_kingdom)

    @property
    def name_keys(self) -> list[tuple[str, bool]]:
        """(lookup key, infraspecific part dropped?) in the order tried. A third word without
        rank marker that the backbone does not hold as a trinomial was an author ("Anax
        junius linnaeus"): the binomial is then the name itself, nothing dropped."""
        keys = []
        if self.name.canonical:
            keys.append((match_key(self.name.canonical), False))
            if self.name.infraspecific and self.name.binomial:
                keys.append((match_key(self.name.binomial), self.name.infra_marked))
        return keys

    @property
    def fallback_ranks(self) -> list[tuple[str, str]]:
        """(rank, value) from the most specific verbatim rank up to the kingdom."""
        out = []
        genera = [self.ranks["genus"], self.name.genus]
        for g in dict.fromkeys(g for g in genera if g):
            out.append(("genus", g))
        for rank in ("family", "order", "class", "phylum", "kingdom"):
            if self.ranks[rank]:
                out.append((rank, self.ranks[rank]))
        return out


@dataclass(frozen=True)
class _Match:
    """A query's chosen backbone taxon and how it was reached."""

    taxon: Candidate
    match_type: str
    confidence: float
    flags: set[str]
    max_rank: str | None = None  # ranks below come from the source or stay null (higher rank)
    name_contradicted: bool = False  # the query's own name exists only elsewhere in the tree


@dataclass
class _Choice:
    taxon: Candidate | None = None
    flags: set[str] = field(default_factory=set)
    ambiguous: bool = False
    agreeing: dict[str, str] = field(default_factory=dict)  # ranks all ambiguous candidates share


def _contradicts_kingdom(c: Candidate, q: _Query) -> bool:
    qk, ck = _rank_key("kingdom", q.ranks["kingdom"]), _rank_key("kingdom", c.classification[0])
    return qk is not None and ck is not None and qk != ck


def _same_taxon_labels(cands: list[Candidate]) -> bool:
    return len({(c.classification, c.epithet) for c in cands}) == 1


def _choose(cands: list[Candidate], q: _Query, rank_hint: str | None = None) -> _Choice:
    """Pick one candidate using the query's context; None (maybe ambiguous) when unsure."""
    choice = _Choice()
    if not cands:
        return choice
    if len(cands) == 1:  # the common case: one name, one taxon
        if _contradicts_kingdom(cands[0], q):
            choice.flags.add("homonym_guarded")
        else:
            choice.taxon = cands[0]
        return choice
    best: dict[str, Candidate] = {}
    for c in sorted(cands, key=lambda c: (c.distance, c.via_synonym, c.sort_key)):
        best.setdefault(c.taxon_id, c)
    pool = list(best.values())
    if not pool:
        return choice
    kept = [c for c in pool if not _contradicts_kingdom(c, q)]
    if len(kept) < len(pool):
        choice.flags.add("homonym_guarded")
    pool = kept
    # Narrow by every context rank the query gives, keeping agreeing candidates if any agree.
    for rank in HIGHER_RANKS[:-1]:
        qv = _rank_key(rank, q.ranks[rank])
        if qv is None or len(pool) < 2:
            continue
        agree = [c for c in pool if _rank_key(rank, c.value(rank)) == qv]
        if agree and len(agree) < len(pool):
            pool = agree
            choice.flags.add("homonym_guarded")
    if not pool:
        return choice
    if _spans_homonyms(pool):  # nothing in the query tells these apart: do not guess
        return _ambiguous(choice, pool)
    nearest = min(c.distance for c in pool)
    for prefer in (
        lambda c: c.distance == nearest,
        lambda c: not c.via_synonym,
        lambda c: (c.status or "").lower() == "accepted",
        lambda c: rank_hint is not None and c.rank == rank_hint,
    ):
        narrowed = [c for c in pool if prefer(c)]
        if narrowed:
            pool = narrowed
    if len(pool) == 1 or _same_taxon_labels(pool):
        choice.taxon = min(pool, key=lambda c: c.sort_key)
        return choice
    return _ambiguous(choice, pool)


def _spans_homonyms(pool: list[Candidate]) -> bool:
    """True when candidates sit in several kingdoms or phyla (homonyms, not duplicates)."""
    kingdoms = {kingdom_key(c.value("kingdom")) for c in pool} - {None}
    phyla = {match_key(c.value("phylum")) for c in pool} - {None}
    return len(kingdoms) > 1 or len(phyla) > 1


def _ambiguous(choice: _Choice, pool: list[Candidate]) -> _Choice:
    choice.ambiguous = True
    choice.flags.add("ambiguous_homonym")
    for rank in HIGHER_RANKS:
        values = {c.value(rank) for c in pool}
        if len(values) != 1 or None in values:
            break
        choice.agreeing[rank] = values.pop()
    return choice


# --- DuckDB lookups -------------------------------------------------------------------------

_CANDIDATE_SELECT = """
    t.is_synonym AS via_synonym,
    a.taxonID, a.taxonomicStatus, a.rank, a.canonicalName, a.genericName, a.specificEpithet,
    a.kingdom, a.phylum, a.class, a."order", a.family, a.genus
"""
_ACCEPTED_JOIN = """
    JOIN taxon a ON a.taxonID = CASE WHEN t.is_synonym THEN t.acceptedNameUsageID ELSE t.taxonID END
"""
_USABLE = "(lower(t.taxonomicStatus) IN ('accepted', 'doubtful') OR t.is_synonym)"


def _candidate(row: dict, distance: int = 0) -> Candidate:
    return Candidate(
        taxon_id=row["taxonID"],
        status=row["taxonomicStatus"],
        rank=row["rank"],
        canonical=row["canonicalName"],
        generic_name=row["genericName"],
        epithet=row["specificEpithet"],
        classification=tuple(row[r] for r in HIGHER_RANKS),
        via_synonym=bool(row["via_synonym"]),
        distance=distance,
    )


def _lookup_names(con, keys: list[tuple[str, str | None]]) -> dict[tuple, list[Candidate]]:
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
    for row in rows.to_pylist():
        out.setdefault((row["key"], row["rank_filter"]), []).append(_candidate(row))
    return out


def _lookup_fuzzy(con, pairs: list[tuple[str, str, int]]) -> dict[tuple, list[Candidate]]:
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
    for row in rows.to_pylist():
        key = (row["q_genus"], row["q_epithet"])
        out.setdefault(key, []).append(_candidate(row, distance=row["distance"]))
    return out


def _lookup_vernaculars(con, taxon_ids: list[str]) -> dict[str, str]:
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


# --- rows -----------------------------------------------------------------------------------


_EMPTY_ROW = {
    **{r: None for r in RANKS},
    **{f"{r}_provenance": None for r in RANKS},
    "scientific_name": None,
    "common_name": None,
    "taxon_id": None,
    "authority": None,
    "match_type": "none",
    "confidence": 0.0,
    "reason": None,
}


def _empty_row(q: _Query) -> dict:
    row = {"query_id": q.query_id}
    raw = q.raw
    for col in QUERY_COLUMNS[2:-1]:
        row[col] = raw.get(col)
    row.update(_EMPTY_ROW)
    row["flags"] = []
    return row


def _name_flags(q: _Query) -> set[str]:
    if not q.name.flags:
        return set(q.flags)
    return (set(q.name.flags) - {"empty", "placeholder", "unparsed"}) | q.flags


def _taxon_row(
    q: _Query,
    c: Candidate,
    match_type: str,
    confidence: float,
    flags: set[str],
    vernaculars: dict[str, str],
    max_rank: str | None = None,
    source_below: bool = True,
    species_ok: bool = True,
) -> dict:
    """A row from a backbone taxon; ranks below `max_rank` (if given) come from the source
    when it confirms the match (`_fill_below_match`), else stay null."""
    row = _empty_row(q)
    values = dict(zip(HIGHER_RANKS, c.classification, strict=True))
    epithet = c.epithet
    if epithet is None and c.rank == "species" and c.canonical and " " in c.canonical:
        epithet = c.canonical.split()[1]
    if c.rank in HIGHER_RANKS:
        epithet = None
    if epithet and not values["genus"]:
        values["genus"] = c.generic_name
    values["species"] = epithet
    if max_rank is not None:
        for r in RANKS[RANKS.index(max_rank) + 1 :]:
            values[r] = None
    for r in RANKS:
        if values[r]:
            row[r], row[f"{r}_provenance"] = values[r], AUTHORITY
    # Missing higher ranks come from the source's own labels (provenance says so).
    deepest = -1
    for i, r in enumerate(RANKS):
        if row[r]:
            deepest = i
    for r in RANKS[:deepest]:
        if row[r] is None and r in q.ranks and q.ranks[r]:
            row[r], row[f"{r}_provenance"] = q.ranks[r], q.source
    if max_rank is not None and source_below and _fill_below_match(row, q, c, max_rank, species_ok):
        flags = flags | {"source_below_match"}
    if _overrules_source(row, q):
        flags = flags | {"conflict"}
    row["scientific_name"] = scientific_name(row, c.canonical)
    row.update(
        common_name=vernaculars.get(c.taxon_id) or q.common_name,
        taxon_id=c.taxon_id,
        authority=AUTHORITY,
        match_type=match_type,
        confidence=confidence,
        flags=sorted(flags | _name_flags(q)),
    )
    return row


def _overrules_source(row: dict, q: _Query) -> bool:
    """True when a rank the source labelled holds another value from the authority (the
    authority wins; the taxonomy report lists each such conflict with its rule)."""
    for r in HIGHER_RANKS:
        overruled = q.ranks[r] and row[r] and row[f"{r}_provenance"] != q.source
        if overruled and _rank_key(r, q.ranks[r]) != _rank_key(r, row[r]):
            return True
    return False


def _verbatim_genus(q: _Query) -> str | None:
    """The source's genus: its genus column, else the genus of its name; None if they differ."""
    given, named = q.ranks["genus"], q.name.genus
    if given and named and match_key(given) != match_key(named):
        return None
    return given or named


def _fill_below_match(row: dict, q: _Query, c: Candidate, max_rank: str, species_ok: bool) -> bool:
    """Fill the ranks below a higher-rank match from the source's own labels (as BioCLIP kept
    iNat21 and BIOSCAN labels), but only when the source confirms the match: it gives at least
    one rank at or above the matched rank that equals the backbone's, and none that differs.
    The species epithet is taken only under the source's own genus, and not when the query's
    full name exists in the backbone elsewhere (a homonym the guard rejected). Returns whether
    anything was filled; filled ranks carry the source as provenance.
    """
    top = RANKS.index(max_rank)
    confirmed = False
    for r in HIGHER_RANKS[: top + 1]:
        qv, bv = _rank_key(r, q.ranks[r]), _rank_key(r, c.value(r))
        if qv is None or bv is None:
            continue
        if qv != bv:
            return False
        confirmed = True
    if not confirmed:
        return False
    filled = False
    for r in HIGHER_RANKS[top + 1 :]:
        value = _verbatim_genus(q) if r == "genus" else q.ranks[r]
        if value and row[r] is None:
            row[r], row[f"{r}_provenance"] = value, q.source
            filled = True
    genus = row["genus"]
    if (
        species_ok
        and row["species"] is None
        and q.name.epithet
        and genus
        and q.name.genus
        and match_key(q.name.genus) == match_key(genus)
    ):
        row["species"], row["species_provenance"] = q.name.epithet, q.source
        filled = True
    return filled


def _source_row(q: _Query, flags: set[str]) -> dict | None:
    """The source's own labels, as given, when it gives at least one rank."""
    if not any(q.ranks.values()):
        return None
    row = _empty_row(q)
    for r in HIGHER_RANKS:
        if q.ranks[r]:
            row[r], row[f"{r}_provenance"] = q.ranks[r], q.source
    if row["genus"] is None and q.name.genus:
        row["genus"], row["genus_provenance"] = q.name.genus, q.source
    if (
        q.name.epithet
        and row["genus"]
        and q.name.genus
        and match_key(q.name.genus) == match_key(row["genus"])
    ):
        row["species"], row["species_provenance"] = q.name.epithet, q.source
    row["scientific_name"] = scientific_name(row)
    row.update(
        common_name=q.common_name,
        authority=q.source,
        match_type="source",
        confidence=CONFIDENCE_SOURCE,
        flags=sorted(flags | _name_flags(q)),
    )
    return row


def _unresolved_row(q: _Query, flags: set[str], agreeing: dict[str, str]) -> dict:
    row = _empty_row(q)
    if "ambiguous_homonym" in flags:
        reason = Reason.AMBIGUOUS_HOMONYM
    elif q.name.canonical is None and not any(q.ranks.values()):
        reason = Reason.UNPARSED_NAME if "unparsed" in q.name.flags else Reason.EMPTY_NAME
    else:
        reason = Reason.NO_MATCH
    if agreeing:  # keep the higher ranks every ambiguous candidate agrees on
        for r, v in agreeing.items():
            row[r], row[f"{r}_provenance"] = v, AUTHORITY
        deepest = [r for r in HIGHER_RANKS if r in agreeing][-1]
        row.update(
            scientific_name=agreeing[deepest],
            authority=AUTHORITY,
            match_type="higherrank",
            confidence=CONFIDENCE_HIGHER_RANK[deepest] / 2,
        )
        flags = flags | {"higher_rank_only"}
    row["common_name"] = q.common_name
    row["flags"] = sorted(flags | _name_flags(q))
    row["reason"] = reason
    return row


# --- driver ---------------------------------------------------------------------------------


def _parse_queries(rows: list[dict]) -> list[_Query]:
    out = []
    for raw in rows:
        ranks = {r: normalize_rank_value(raw.get(f"verbatim_{r}")) for r in HIGHER_RANKS}
        # The kingdom as GBIF spells it ("animals" -> Animalia); a value that names no kingdom
        # is never compared nor kept as a label, and the row says so.
        flags = frozenset({FLAG_UNKNOWN_KINGDOM} if is_unknown_kingdom(ranks["kingdom"]) else ())
        ranks["kingdom"] = canonical_kingdom(ranks["kingdom"])
        out.append(
            _Query(
                query_id=raw["query_id"],
                source=raw.get("source") or "unknown",
                raw=raw,
                ranks=ranks,
                name=normalize_name(raw.get("verbatim_scientific_name")),
                common_name=clean_text(raw.get("verbatim_common_name")),
                flags=flags,
            )
        )
    return out


def _resolve_batch(
    con, queries: list[_Query], fuzzy_max_distance: int, source_below_match: bool = True
) -> list[dict]:
    keys = {(k, None) for q in queries for k, _ in q.name_keys}
    keys |= {(_rank_key(r, v), r) for q in queries for r, v in q.fallback_ranks}
    found = _lookup_names(
        con, sorted((k for k in keys if k[0] is not None), key=lambda k: (k[0], k[1] or ""))
    )

    rows: dict[str, _Match] = {}
    pending: dict[str, _Choice] = {}
    fuzzy_pairs: set[tuple[str, str, int]] = set()
    contradicted: set[str] = set()  # queries whose own name the backbone holds only elsewhere
    for q in queries:
        flags: set[str] = set()
        for key, dropped in q.name_keys:
            cands = found.get((key, None), [])
            choice = _choose(cands, q, q.name.rank_hint)
            flags |= choice.flags
            if cands and choice.taxon is None and not choice.ambiguous:
                contradicted.add(q.query_id)
            if choice.taxon is not None:
                c = choice.taxon
                match_type = "synonym" if c.via_synonym else "exact"
                extra = {"synonym"} if c.via_synonym else set()
                if dropped:
                    extra.add("infraspecific_dropped")
                conf = CONFIDENCE_INFRASPECIFIC_DROPPED if dropped else CONFIDENCE_EXACT
                rows[q.query_id] = _Match(c, match_type, conf, flags | extra)
                break
            if choice.ambiguous:
                pending[q.query_id] = _Choice(flags=flags, ambiguous=True, agreeing=choice.agreeing)
                break
        if q.query_id in rows or q.query_id in pending:
            continue
        pending[q.query_id] = _Choice(flags=flags)
        if q.name.genus and q.name.epithet and fuzzy_max_distance > 0:
            d = allowed_distance(q.name.epithet, fuzzy_max_distance)
            fuzzy_pairs.add((match_key(q.name.genus), match_key(q.name.epithet), d))

    fuzzy = _lookup_fuzzy(con, sorted(fuzzy_pairs))
    for q in queries:
        if q.query_id in rows:
            continue
        prior = pending[q.query_id]
        if q.name.genus and q.name.epithet and not prior.ambiguous:
            key = (match_key(q.name.genus), match_key(q.name.epithet))
            choice = _choose(fuzzy.get(key, []), q, "species")
            if choice.taxon is not None:
                c = choice.taxon
                flags = prior.flags | choice.flags | {"fuzzy"}
                if c.via_synonym:
                    flags.add("synonym")
                rows[q.query_id] = _Match(c, "fuzzy", fuzzy_confidence(c.distance), flags)
                continue
        flags = set(prior.flags)
        for rank, value in q.fallback_ranks:
            choice = _choose(found.get((_rank_key(rank, value), rank), []), q, rank)
            flags |= choice.flags
            if choice.taxon is not None:
                c = choice.taxon
                flags |= {"higher_rank_only"}
                if c.via_synonym:
                    flags.add("synonym")
                conf = CONFIDENCE_HIGHER_RANK[rank]
                rows[q.query_id] = _Match(
                    c, "higherrank", conf, flags, rank, q.query_id in contradicted
                )
                break
            if choice.ambiguous and not prior.agreeing:
                prior.agreeing = choice.agreeing
        else:
            pending[q.query_id] = _Choice(flags=flags, agreeing=prior.agreeing)

    vernaculars = _lookup_vernaculars(con, [m.taxon.taxon_id for m in rows.values()])
    out = []
    for q in queries:
        if q.query_id in rows:
            m = rows[q.query_id]
            out.append(
                _taxon_row(
                    q,
                    m.taxon,
                    m.match_type,
                    m.confidence,
                    m.flags,
                    vernaculars,
                    m.max_rank,
                    source_below=source_below_match,
                    species_ok=not m.name_contradicted,
                )
            )
            continue
        prior = pending[q.query_id]
        source = _source_row(q, prior.flags)
        if source is not None:
            out.append(source)
        else:
            out.append(_unresolved_row(q, prior.flags, prior.agreeing))
    return out


def resolve_taxa(
    queries: pa.Table,
    db_path: Path,
    fuzzy_max_distance: int = 2,
    progress: Progress | None = None,
    source_below_match: bool = True,
) -> pa.Table:
    """Resolve every query against the backbone in `db_path`; one TAXA row per query_id.

    Rows come sorted by query_id. Duplicate query_ids are resolved once (logged).
    `source_below_match`: below a higher-rank match, keep the source's own lower ranks when
    its higher ranks confirm the match (flag `source_below_match`, provenance = the source).
    """
    progress = or_null(progress)
    table = prepare_queries(queries)
    progress.start("taxonomy.resolve", table.num_rows)
    out: list[dict] = []
    with open_backbone(Path(db_path)) as con:
        for start in range(0, table.num_rows, BATCH_SIZE):
            batch = table.slice(start, BATCH_SIZE).to_pylist()
            out.extend(
                _resolve_batch(con, _parse_queries(batch), fuzzy_max_distance, source_below_match)
            )
            progress.advance(len(batch))
    progress.finish()
    unified = unify_species_labels(out)
    if unified:
        log.info("taxonomy: %d queries took the label of the same species from another", unified)
    result = with_rank_match_types(pa.Table.from_pylist(out, schema=TAXA))
    counts = pc.value_counts(result.column("match_type")).to_pylist() if out else []
    log.info(
        "taxonomy: %d queries resolved: %s",
        result.num_rows,
        ", ".join(
            f"{c['values']}={c['counts']}" for c in sorted(counts, key=lambda c: c["values"])
        ),
    )
    return result
