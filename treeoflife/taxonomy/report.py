"""The taxonomy report: how well each source's images are labelled, and what went wrong.

Per source, weighted by images (a query stands for every catalog row that shares it): the share
with all seven ranks, with a species, with a common name; images and queries per match type;
flags. Then the conflicts between a source's own labels and the resolved ranks (and the rule
that settled each), the unresolved names, most frequent first, the kingdom values each source
wrote and what each was read as (a GBIF kingdom, `unplaced` or `unknown`), and the names that
lost a rank in a step after the local resolution (which step, which ranks).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pyarrow as pa

from treeoflife.schemas import RANKS
from treeoflife.taxonomy.candidates import HIGHER_RANKS
from treeoflife.taxonomy.kingdoms import KINGDOMS, kingdom_key, kingdom_mapping
from treeoflife.taxonomy.names import match_key, normalize_rank_value

RULE_KINGDOM_SYNONYM = "kingdom_synonym"  # Metazoa, animals -> Animalia (taxonomy.kingdoms)
RULE_AUTHORITY = "authority_over_source"  # the backbone's classification wins
RULE_KNOWN = "known_rank_conflict"  # a documented disagreement between classifications

_COLLEMBOLA = "Collembola: a class of Hexapoda in GBIF, an order of Insecta in other sources"
KNOWN_RANK_CONFLICTS = {
    # (rank, source value, resolved value or None for any): why the two disagree.
    ("class", "insecta", "collembola"): _COLLEMBOLA,
    ("order", "collembola", None): _COLLEMBOLA,
    ("phylum", "magnoliophyta", "tracheophyta"): "GBIF places flowering plants in Tracheophyta",
}
"""Disagreements that come from differing classifications, not from errors; the authority's
ranks are kept and the conflict is recorded with this note."""


def known_conflict(rank: str, source_value: str, resolved: str | None) -> str | None:
    """The note of a known classification disagreement, else None."""
    s, r = source_value.lower(), (resolved or "").lower()
    return KNOWN_RANK_CONFLICTS.get((rank, s, r)) or KNOWN_RANK_CONFLICTS.get((rank, s, None))


MAX_LISTED = 1000  # conflicts and unresolved names listed in the report (counts cover all)


def _rank_key(rank: str, value: str | None) -> str | None:
    return kingdom_key(value) if rank == "kingdom" else match_key(value)


def _conflicts(row: dict) -> list[tuple[str, str, str | None, str]]:
    """(rank, source value, resolved value, rule) where the source's label was overruled."""
    out = []
    for r in HIGHER_RANKS:
        given = normalize_rank_value(row.get(f"verbatim_{r}"))
        if given is None or row.get(r) is None:
            continue
        if row.get(f"{r}_provenance") == row.get("_source"):
            continue  # the source's own label was kept
        resolved = row[r]
        if _rank_key(r, given) == _rank_key(r, resolved):
            if r == "kingdom" and given not in KINGDOMS:
                out.append((r, given, resolved, RULE_KINGDOM_SYNONYM))
            continue
        known = known_conflict(r, given, resolved) is not None
        out.append((r, given, resolved, RULE_KNOWN if known else RULE_AUTHORITY))
    return out


def _kingdoms_seen(seen: dict[str, Counter]) -> dict:
    """source -> verbatim kingdom value -> {read_as, images}."""
    return {
        src: {
            value: {"read_as": kingdom_mapping(value), "images": n}
            for value, n in sorted(values.items())
        }
        for src, values in sorted(seen.items())
    }


def taxonomy_report(
    taxa: pa.Table,
    sources: dict[str, str],
    images: dict[str, int] | None = None,
    lost: list[dict] | None = None,
) -> dict:
    """The report as a JSON-ready dict. `sources` and `images` map query_id -> source name and
    -> number of catalog rows (1 per query when not given); `lost` lists
    {query_id, step, ranks} for every rank a step after the local resolution took away."""
    images = images or {}
    kingdoms_seen: dict[str, Counter] = defaultdict(Counter)
    per_source: dict[str, Counter] = defaultdict(Counter)
    match_images: dict[str, Counter] = defaultdict(Counter)
    match_queries: dict[str, Counter] = defaultdict(Counter)
    flags: dict[str, Counter] = defaultdict(Counter)
    conflicts: Counter = Counter()
    conflict_images: Counter = Counter()
    unresolved: Counter = Counter()
    unresolved_queries: Counter = Counter()
    for row in taxa.to_pylist():
        src = sources.get(row["query_id"], "unknown")
        n = images.get(row["query_id"], 1)
        c = per_source[src]
        c["queries"] += 1
        c["images"] += n
        if all(row[r] for r in RANKS):
            c["all_seven_ranks"] += n
        if row["species"]:
            c["with_species"] += n
        if row["common_name"]:
            c["with_common_name"] += n
        if row["kingdom"] is None:
            c["unresolved"] += n
            name = row["verbatim_scientific_name"] or row["verbatim_genus"] or ""
            unresolved[(src, name, row["reason"] or "")] += n
            unresolved_queries[(src, name, row["reason"] or "")] += 1
        verbatim_kingdom = normalize_rank_value(row.get("verbatim_kingdom"))
        if verbatim_kingdom is not None:
            kingdoms_seen[src][verbatim_kingdom] += n
        match_images[src][row["match_type"] or "none"] += n
        match_queries[src][row["match_type"] or "none"] += 1
        for f in row["flags"] or []:
            flags[src][f] += n
        for conflict in _conflicts({**row, "_source": src}):
            conflicts[(src, *conflict)] += 1
            conflict_images[(src, *conflict)] += n
    by_source = {}
    for src in sorted(per_source):
        c = per_source[src]
        total = c["images"] or 1
        by_source[src] = {
            "images": c["images"],
            "queries": c["queries"],
            "share_all_seven_ranks": round(c["all_seven_ranks"] / total, 4),
            "share_with_species": round(c["with_species"] / total, 4),
            "share_with_common_name": round(c["with_common_name"] / total, 4),
            "unresolved_images": c["unresolved"],
            "match_types_images": dict(sorted(match_images[src].items())),
            "match_types_queries": dict(sorted(match_queries[src].items())),
            "flags_images": dict(sorted(flags[src].items())),
        }
    conflict_list = [
        {
            "source": k[0],
            "rank": k[1],
            "source_value": k[2],
            "resolved_value": k[3],
            "rule": k[4],
            "note": known_conflict(k[1], k[2], k[3]),
            "queries": conflicts[k],
            "images": conflict_images[k],
        }
        for k in sorted(conflict_images, key=lambda k: (-conflict_images[k], k))
    ]
    unresolved_list = [
        {
            "source": k[0],
            "name": k[1],
            "reason": k[2],
            "queries": unresolved_queries[k],
            "images": unresolved[k],
        }
        for k in sorted(unresolved, key=lambda k: (-unresolved[k], k))
    ]
    totals: Counter = Counter()
    for src_counts in match_images.values():
        totals.update(src_counts)
    names = {
        r["query_id"]: r
        for r in taxa.select(["query_id", "verbatim_scientific_name", "verbatim_genus"]).to_pylist()
    }
    lost_list = [
        {
            "source": sources.get(x["query_id"], "unknown"),
            "name": names.get(x["query_id"], {}).get("verbatim_scientific_name")
            or names.get(x["query_id"], {}).get("verbatim_genus"),
            "step": x["step"],
            "ranks": list(x["ranks"]),
            "images": images.get(x["query_id"], 1),
        }
        for x in sorted(lost or [], key=lambda x: (x["step"], x["query_id"]))
    ]
    return {
        "kingdoms": _kingdoms_seen(kingdoms_seen),
        "lost_ranks": {"names": len(lost_list), "listed": lost_list[:MAX_LISTED]},
        "by_source": by_source,
        "match_types": dict(sorted(totals.items())),
        "conflicts": {
            "total": len(conflict_list),
            "by_rule": dict(sorted(Counter(c["rule"] for c in conflict_list).items())),
            "listed": conflict_list[:MAX_LISTED],
        },
        "unresolved": {
            "names": len(unresolved_list),
            "images": sum(unresolved.values()),
            "listed": unresolved_list[:MAX_LISTED],
        },
    }
