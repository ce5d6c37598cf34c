"""TAXA rows from a resolution outcome: a backbone taxon (with the source filling what the
backbone leaves empty), the source's own labels, or unresolved with a reason."""

from __future__ import annotations

from treeoflife.schemas import RANKS
from treeoflife.taxonomy.backbone import AUTHORITY
from treeoflife.taxonomy.candidates import (
    CONFIDENCE_HIGHER_RANK,
    CONFIDENCE_SOURCE,
    HIGHER_RANKS,
    Candidate,
    Query,
    rank_key,
)
from treeoflife.taxonomy.merge import scientific_name
from treeoflife.taxonomy.names import match_key
from treeoflife.taxonomy.queries import QUERY_COLUMNS
from treeoflife.vocabulary import Reason

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


def _empty_row(q: Query) -> dict:
    row = {"query_id": q.query_id}
    raw = q.raw
    for col in QUERY_COLUMNS[2:-1]:
        row[col] = raw.get(col)
    row.update(_EMPTY_ROW)
    row["flags"] = []
    return row


def _name_flags(q: Query) -> set[str]:
    if not q.name.flags:
        return set(q.flags)
    return (set(q.name.flags) - {"empty", "placeholder", "unparsed"}) | q.flags


def taxon_row(
    q: Query,
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


def _overrules_source(row: dict, q: Query) -> bool:
    """True when a rank the source labelled holds another value from the authority (the
    authority wins; the taxonomy report lists each such conflict with its rule)."""
    for r in HIGHER_RANKS:
        overruled = q.ranks[r] and row[r] and row[f"{r}_provenance"] != q.source
        if overruled and rank_key(r, q.ranks[r]) != rank_key(r, row[r]):
            return True
    return False


def _verbatim_genus(q: Query) -> str | None:
    """The source's genus: its genus column, else the genus of its name; None if they differ."""
    given, named = q.ranks["genus"], q.name.genus
    if given and named and match_key(given) != match_key(named):
        return None
    return given or named


def _fill_below_match(row: dict, q: Query, c: Candidate, max_rank: str, species_ok: bool) -> bool:
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
        qv, bv = rank_key(r, q.ranks[r]), rank_key(r, c.value(r))
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


def source_row(q: Query, flags: set[str]) -> dict | None:
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


def unresolved_row(q: Query, flags: set[str], agreeing: dict[str, str]) -> dict:
    """A row with no taxon and its reason; keeps the higher ranks ambiguous candidates share."""
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
