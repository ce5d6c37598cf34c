"""The candidate model of name resolution: a backbone taxon a query may resolve to, the query
as parsed, and the rules that pick one candidate or call the name ambiguous.

Kept apart from the DuckDB lookups so the choice rules read (and test) as plain Python over a
query's few candidates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from treeoflife.schemas import RANKS
from treeoflife.taxonomy.kingdoms import kingdom_key
from treeoflife.taxonomy.names import ParsedName, match_key

HIGHER_RANKS = RANKS[:-1]  # kingdom..genus: the classification columns of the backbone

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


def fuzzy_confidence(distance: int) -> float:
    """A fuzzy match's confidence: below an exact one, lower with every edit."""
    return round(0.9 - 0.1 * (distance - 1), 2)


@functools.lru_cache(maxsize=1 << 16)
def rank_key(rank: str, value: str | None) -> str | None:
    """The comparison key of a rank value (kingdoms by their GBIF spelling); cached because
    every candidate of every query compares the same few values."""
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
class Query:
    """One verbatim query as parsed: cleaned rank labels and name, the context `choose` uses."""

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
class Match:
    """A query's chosen backbone taxon and how it was reached."""

    taxon: Candidate
    match_type: str
    confidence: float
    flags: set[str]
    max_rank: str | None = None  # ranks below come from the source or stay null (higher rank)
    name_contradicted: bool = False  # the query's own name exists only elsewhere in the tree


@dataclass
class Choice:
    """What `choose` made of a query's candidates: a taxon, or none (and why, in flags)."""

    taxon: Candidate | None = None
    flags: set[str] = field(default_factory=set)
    ambiguous: bool = False
    agreeing: dict[str, str] = field(default_factory=dict)  # ranks all ambiguous candidates share


def _contradicts_kingdom(c: Candidate, q: Query) -> bool:
    qk, ck = rank_key("kingdom", q.ranks["kingdom"]), rank_key("kingdom", c.classification[0])
    return qk is not None and ck is not None and qk != ck


def _same_taxon_labels(cands: list[Candidate]) -> bool:
    return len({(c.classification, c.epithet) for c in cands}) == 1


def choose(cands: list[Candidate], q: Query, rank_hint: str | None = None) -> Choice:
    """Pick one candidate using the query's context; None (maybe ambiguous) when unsure."""
    choice = Choice()
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
        qv = rank_key(rank, q.ranks[rank])
        if qv is None or len(pool) < 2:
            continue
        agree = [c for c in pool if rank_key(rank, c.value(rank)) == qv]
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


def _ambiguous(choice: Choice, pool: list[Candidate]) -> Choice:
    choice.ambiguous = True
    choice.flags.add("ambiguous_homonym")
    for rank in HIGHER_RANKS:
        values = {c.value(rank) for c in pool}
        if len(values) != 1 or None in values:
            break
        choice.agreeing[rank] = values.pop()
    return choice
