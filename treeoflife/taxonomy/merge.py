"""Putting a second authority's answer (GBIF API, ITIS database, ITIS web service) on a row the
local stage resolved, rank by rank, and the scientific name that goes with the ranks.

The merge rule. Each rank value has a support: an authority (gbif-backbone, itis, gbif-api,
itis-api) above the source's own label, above nothing. For an answer to be taken at all:
- it must not contradict a rank the row holds from an authority (a second authority does not
  overrule the first: such answers are refused and counted as `contradicts_local`), and
- it must reach deeper than the deepest authority-backed rank of the row (else it adds
  nothing).
Then, kingdom to species:
- a rank the answer gives takes the answer's value (provenance: the answer's authority); it
  may replace a source label (the report lists such conflicts);
- a rank the answer leaves empty keeps the row's value and provenance, unless the answer
  replaced a source label above it with another value (the source's epithet under a genus the
  authority says is wrong belongs to nothing): then the rank is dropped, and so are the ones
  below it. A dropped rank is recorded in `lost_ranks` and flagged `rank_dropped`.
So an answer at genus level never loses the species the local stage kept under that genus
(`source_below_match`), and the holdout still sees it.
"""

from __future__ import annotations

from treeoflife.schemas import RANKS
from treeoflife.taxonomy.kingdoms import kingdom_key
from treeoflife.taxonomy.names import match_key

AUTHORITIES = frozenset({"gbif-backbone", "itis", "gbif-api", "itis-api"})
HIGHER_RANKS = RANKS[:-1]
FLAG_DROPPED = "rank_dropped"


def rank_key(rank: str, value: str | None) -> str | None:
    """A rank value for comparison (kingdoms by their GBIF spelling, the rest lower-case)."""
    return kingdom_key(value) if rank == "kingdom" else match_key(value)


def scientific_name(row: dict, canonical: str | None = None) -> str | None:
    """The name printed beside the ranks: genus + epithet when there is a species (a given
    `canonical` trinomial of that binomial is kept), else the deepest rank's name."""
    genus, species = row.get("genus"), row.get("species")
    if genus and species:
        binomial = f"{genus} {species}"
        key = match_key(canonical) or ""
        if key.startswith(match_key(binomial) + " "):
            return canonical
        return binomial
    return next((row[r] for r in reversed(HIGHER_RANKS) if row.get(r)), None)


def authority_depth(row: dict) -> int:
    """Index of the deepest rank an authority vouches for (-1: none)."""
    return max(
        (
            i
            for i, r in enumerate(RANKS)
            if row.get(r) and row.get(f"{r}_provenance") in AUTHORITIES
        ),
        default=-1,
    )


def contradicts(row: dict, ranks: dict[str, str | None]) -> str | None:
    """The first rank where the answer differs from an authority-backed value of the row."""
    for r in RANKS:
        mine, theirs = row.get(r), ranks.get(r)
        backed = row.get(f"{r}_provenance") in AUTHORITIES
        if mine and theirs and backed and rank_key(r, mine) != rank_key(r, theirs):
            return r
    return None


def merge_ranks(row: dict, ranks: dict[str, str | None], authority: str) -> tuple[dict, list]:
    """The row's seven ranks and provenances with the answer's `ranks` put on them by the rule
    above; returns (the new rank/provenance values, ranks lost)."""
    out: dict = {}
    lost: list[str] = []
    broken = False  # the answer replaced a source label with another value above here
    for r in RANKS:
        mine, prov = row.get(r), row.get(f"{r}_provenance")
        theirs = ranks.get(r)
        if theirs:
            if mine and rank_key(r, mine) != rank_key(r, theirs):
                broken = True
            out[r], out[f"{r}_provenance"] = theirs, authority
        elif mine and not broken:
            out[r], out[f"{r}_provenance"] = mine, prov
        else:
            out[r], out[f"{r}_provenance"] = None, None
            if mine:
                lost.append(r)
    return out, lost


def lost_ranks(before: dict, after: dict) -> list[str]:
    """Ranks `before` had that `after` lacks."""
    return [r for r in RANKS if before.get(r) and not after.get(r)]


# Flags that describe how the local match was made; an answer taken from elsewhere replaces them.
MATCH_FLAGS = frozenset(
    {
        "ambiguous_homonym",
        "fuzzy",
        "higher_rank_only",
        "infraspecific_dropped",
        "source_below_match",
        "synonym",
    }
)
REFUSED_CONTRADICTS = "contradicts_local"
REFUSED_NO_GAIN = "no_gain"


def apply_answer(
    row: dict,
    answer: dict,
    authority: str,
    marker: str | None = None,
    answer_common_name_first: bool = False,
):
    """The row with an authority's `answer` ({ranks, taxon_id, scientific_name, match_type,
    confidence, flags, common_name?}) merged in by the rule above.

    Returns (new row, None, lost ranks) when taken, else (None, why refused, []). The row's
    common name stays unless it had none (or `answer_common_name_first`); flags: the row's own
    (cf., hybrid, unknown_kingdom ...) plus the answer's, `marker` (e.g. `api`),
    `source_below_match` when a source label below the answer's depth was kept, and
    `rank_dropped` when one was lost.
    """
    ranks = answer["ranks"]
    if contradicts(row, ranks) is not None:
        return None, REFUSED_CONTRADICTS, []
    merged, lost = merge_ranks(row, ranks, authority)
    if authority_depth(merged) <= authority_depth(row):
        return None, REFUSED_NO_GAIN, []
    new = {**row, **merged}
    depth = max((i for i, r in enumerate(RANKS) if ranks.get(r)), default=-1)
    kept_below = any(
        new[r] and new[f"{r}_provenance"] not in AUTHORITIES for r in RANKS[depth + 1 :]
    )
    flags = (set(row.get("flags") or []) - MATCH_FLAGS) | set(answer.get("flags") or [])
    flags |= {marker} if marker else set()
    flags |= {"source_below_match"} if kept_below else set()
    flags |= {FLAG_DROPPED} if lost else set()
    new.update(
        scientific_name=scientific_name(new, answer.get("scientific_name")),
        common_name=(
            (answer.get("common_name") or row.get("common_name"))
            if answer_common_name_first
            else (row.get("common_name") or answer.get("common_name"))
        ),
        taxon_id=answer["taxon_id"],
        authority=authority,
        match_type=answer["match_type"],
        confidence=answer["confidence"],
        flags=sorted(flags),
        reason=None,
    )
    return new, None, lost


def take_answer(rows: list[dict], i: int, answer: dict, authority: str, counts: dict, **kw):
    """Merge `answer` into `rows[i]` (`apply_answer`, `kw` passed on) and count the outcome:
    `improved`, or the reason it was refused."""
    new, refused, _ = apply_answer(rows[i], answer, authority, **kw)
    if new is None:
        counts[refused] = counts.get(refused, 0) + 1
    else:
        rows[i] = new
        counts["improved"] += 1
