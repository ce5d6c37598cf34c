"""ITIS JSON web service: exact name -> TSN, TSN -> seven ranks, TSN -> English common name.

Facts this relies on (seen in recorded answers): `searchByScientificName` matches substrings,
so only `combinedName` equal to the query counts; `getFullHierarchyFromTSN` lists root..taxon
and then the taxon's direct children, so the list is cut at the queried TSN; plants have rank
`Division` where animals have `Phylum`; `getCommonNamesFromTSN` lists a taxon's names in
ITIS's own order, the first English one being ITIS's choice. Requests go through the cached
client (`api_client`), so no request is sent twice across runs.

The build asks it (`taxonomy.itis_api_url`) last, only for the rows that the backbone, the ITIS
database and the GBIF API left short of a species; its answers are merged rank by rank
(`merge.apply_answer`) and checked against the source's kingdom, like GBIF's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa

from treeoflife.progress import Progress
from treeoflife.schemas import RANKS, TAXA
from treeoflife.taxonomy.api_client import ApiSettings, fetch_json
from treeoflife.taxonomy.itis_db import ENGLISH, ITIS_RANKS
from treeoflife.taxonomy.kingdoms import canonical_kingdom, kingdom_key
from treeoflife.taxonomy.merge import take_answer
from treeoflife.taxonomy.names import match_key, normalize_name
from treeoflife.vocabulary import Reason

log = logging.getLogger(__name__)

AUTHORITY = "itis-api"
SERVICE = "/ITISWebService/jsonservice"


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
        rank = ITIS_RANKS.get((rec.get("rankName") or "").strip().lower())
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
    """ITIS's own first-listed English common name (the answer's order is ITIS's), else None."""
    if not isinstance(body, dict):
        return None
    for c in body.get("commonNames") or []:
        name = (c or {}).get("commonName") or ""
        if name.strip() and ((c.get("language") or "").lower() in ENGLISH):
            return name.strip()
    return None


def itis_lookup(
    names: list[str],
    settings: ApiSettings,
    cache_path: Path,
    progress: Progress | None = None,
    kingdoms: list[str | None] | None = None,
) -> list[dict]:
    """For each name: {tsn, ranks, common_name, reason}. Each exact hit's hierarchy is asked;
    hits in another kingdom than the name's (`kingdoms`, any spelling) are dropped. A name with
    no exact hit, or still several (homonyms ITIS cannot tell apart), gets a reason instead."""
    kingdoms = kingdoms or [None] * len(names)
    search = fetch_json(
        [(f"{SERVICE}/searchByScientificName", {"srchKey": n}) for n in names],
        settings,
        cache_path,
        progress,
    )
    hits: dict[int, list[str]] = {}
    out: list[dict] = []
    for i, (name, answer) in enumerate(zip(names, search, strict=True)):
        row = {"name": name, "tsn": None, "ranks": dict.fromkeys(RANKS), "common_name": None}
        tsns = exact_tsns(answer.body, name) if answer.error is None else []
        if answer.error is not None:
            row["reason"] = Reason.API_ERROR
        elif not tsns:
            row["reason"] = Reason.NO_MATCH
        else:
            row["reason"] = None
            hits[i] = tsns
        out.append(row)
    wanted = sorted({t for tsns in hits.values() for t in tsns}, key=lambda t: (len(t), t))
    hier = fetch_json(
        [(f"{SERVICE}/getFullHierarchyFromTSN", {"tsn": t}) for t in wanted], settings, cache_path
    )
    ranks_of = {t: hierarchy_ranks(h.body, t) for t, h in zip(wanted, hier, strict=True)}
    chosen: dict[int, str] = {}
    for i, tsns in hits.items():
        usable = [t for t in tsns if ranks_of[t]["kingdom"]]
        want = kingdom_key(kingdoms[i])
        kept = [t for t in usable if want is None or kingdom_key(ranks_of[t]["kingdom"]) == want]
        if not usable:
            out[i]["reason"] = Reason.API_ERROR
            out[i]["tsn"] = tsns[0] if len(tsns) == 1 else None
        elif not kept:
            out[i]["reason"] = Reason.KINGDOM_CONTRADICTS_SOURCE
        elif len(kept) > 1:
            out[i]["reason"] = Reason.AMBIGUOUS_HOMONYM
        else:
            chosen[i] = kept[0]
    names_wanted = sorted(set(chosen.values()), key=lambda t: (len(t), t))
    common = fetch_json(
        [(f"{SERVICE}/getCommonNamesFromTSN", {"tsn": t}) for t in names_wanted],
        settings,
        cache_path,
    )
    english = {t: english_common_name(c.body) for t, c in zip(names_wanted, common, strict=True)}
    for i, tsn in chosen.items():
        out[i].update(tsn=tsn, ranks=ranks_of[tsn], common_name=english[tsn])
    return out


def refine_with_itis_api(
    taxa: pa.Table,
    settings: ApiSettings,
    cache_path: Path,
    progress: Progress | None = None,
) -> tuple[pa.Table, dict]:
    """Ask ITIS for the rows still short of a species (unresolved, source-only, higher-rank)
    whose verbatim name parses, with the source's kingdom as context; merge each usable answer
    rank by rank (`merge.apply_answer`, ITIS's English name first). Same rows, same order."""
    rows = taxa.to_pylist()
    todo = []
    for i, r in enumerate(rows):
        if (
            r["match_type"] not in ("none", "source", "higherrank")
            or r["reason"] == Reason.EMPTY_NAME
        ):
            continue
        canonical = normalize_name(r["verbatim_scientific_name"]).canonical
        if canonical:
            todo.append((i, canonical, canonical_kingdom(r["verbatim_kingdom"])))
    found = itis_lookup(
        [n for _, n, _ in todo], settings, cache_path, progress, [k for _, _, k in todo]
    )
    counts: dict[str, int] = {"asked": len(todo), "improved": 0}
    for (i, _, _), hit in zip(todo, found, strict=True):
        if hit["reason"] is not None:
            counts[hit["reason"]] = counts.get(hit["reason"], 0) + 1
            continue
        answer = {
            "ranks": hit["ranks"],
            "taxon_id": hit["tsn"],
            "scientific_name": hit["name"],
            "match_type": "exact",
            "confidence": 1.0,
            "flags": [],
            "common_name": hit["common_name"],
        }
        take_answer(rows, i, answer, AUTHORITY, counts, answer_common_name_first=True)
    log.info("itis api: %s", counts)
    return pa.Table.from_pylist(rows, schema=TAXA), counts
