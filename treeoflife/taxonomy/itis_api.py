"""ITIS JSON web service: exact name -> TSN, TSN -> seven ranks, TSN -> English common name.

Facts this relies on (seen in recorded answers): `searchByScientificName` matches substrings,
so only `combinedName` equal to the query counts; `getFullHierarchyFromTSN` lists root..taxon
and then the taxon's direct children, so the list is cut at the queried TSN; plants have rank
`Division` where animals have `Phylum`. Requests go through the cached client (`api_client`).
"""

from __future__ import annotations

from pathlib import Path

from treeoflife.progress import Progress
from treeoflife.schemas import RANKS
from treeoflife.taxonomy.api_client import ApiSettings, fetch_json
from treeoflife.taxonomy.names import match_key

AUTHORITY = "itis-api"
SERVICE = "/ITISWebService/jsonservice"
_ITIS_RANKS = {
    "kingdom": "kingdom",
    "phylum": "phylum",
    "division": "phylum",
    "class": "class",
    "order": "order",
    "family": "family",
    "genus": "genus",
    "species": "species",
}
_ENGLISH = {"english", "en", "eng"}


def exact_tsns(body: object, name: str) -> list[str]:
    """TSNs whose combinedName equals `name` (case-insensitive), from a search answer."""
    if not isinstance(body, dict):
        return []
    want = match_key(name)
    hits = body.get("scientificNames") or []
    return sorted(
        {h["tsn"] for h in hits if h and match_key(h.get("combinedName")) == want},
        key=lambda t: (len(t), t),
    )


def hierarchy_ranks(body: object, tsn: str) -> dict[str, str | None]:
    """The seven ranks of `tsn` from a full-hierarchy answer (children after it are cut)."""
    ranks: dict[str, str | None] = dict.fromkeys(RANKS)
    if not isinstance(body, dict):
        return ranks
    for rec in body.get("hierarchyList") or []:
        if not rec:
            continue
        rank = _ITIS_RANKS.get((rec.get("rankName") or "").strip().lower())
        name = rec.get("taxonName")
        if rank == "species" and name:
            parts = name.split()
            ranks["species"] = parts[-1] if len(parts) >= 2 else None
        elif rank:
            ranks[rank] = name
        if str(rec.get("tsn")) == str(tsn):
            break
    else:
        return dict.fromkeys(RANKS)  # the TSN is not in its own hierarchy: answer unusable
    return ranks


def english_common_name(body: object) -> str | None:
    """The first English common name in sorted order (deterministic), else None."""
    if not isinstance(body, dict):
        return None
    names = sorted(
        c["commonName"].strip()
        for c in body.get("commonNames") or []
        if c and c.get("commonName") and (c.get("language") or "").lower() in _ENGLISH
    )
    return names[0] if names else None


def itis_lookup(
    names: list[str],
    settings: ApiSettings,
    cache_path: Path,
    progress: Progress | None = None,
) -> list[dict]:
    """For each name: {tsn, ranks, common_name, reason}. A name with no exact hit, or with
    several (homonyms: ITIS cannot tell them apart without context), gets a reason instead."""
    search = fetch_json(
        [(f"{SERVICE}/searchByScientificName", {"srchKey": n}) for n in names],
        settings,
        cache_path,
        progress,
    )
    tsn_of: dict[int, str] = {}
    out: list[dict] = []
    for i, (name, answer) in enumerate(zip(names, search, strict=True)):
        row = {"name": name, "tsn": None, "ranks": dict.fromkeys(RANKS), "common_name": None}
        tsns = exact_tsns(answer.body, name) if answer.error is None else []
        if answer.error is not None:
            row["reason"] = "api_error"
        elif not tsns:
            row["reason"] = "no_match"
        elif len(tsns) > 1:
            row["reason"] = "ambiguous_homonym"
        else:
            row["reason"] = None
            tsn_of[i] = tsns[0]
        out.append(row)
    wanted = sorted(set(tsn_of.values()))
    hier = fetch_json(
        [(f"{SERVICE}/getFullHierarchyFromTSN", {"tsn": t}) for t in wanted], settings, cache_path
    )
    common = fetch_json(
        [(f"{SERVICE}/getCommonNamesFromTSN", {"tsn": t}) for t in wanted], settings, cache_path
    )
    by_tsn = {
        t: (hierarchy_ranks(h.body, t), english_common_name(c.body))
        for t, h, c in zip(wanted, hier, common, strict=True)
    }
    for i, tsn in tsn_of.items():
        ranks, name = by_tsn[tsn]
        out[i].update(tsn=tsn, ranks=ranks, common_name=name)
        if ranks["kingdom"] is None:
            out[i]["reason"] = "api_error"
    return out
