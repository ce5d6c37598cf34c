"""GBIF species match API (v1 `/v1/species/match`, v2 `/v2/species/match`) for what the local
backbone misses, through the cached client in `api_client`.

The query always carries the source's higher ranks (GBIF uses them to pick among homonyms), and
an answer whose kingdom contradicts the source's is never accepted: GBIF answers
"Calopteryx splendens" + kingdom Plantae with a plant genus at HIGHERRANK, which we reject.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa

from treeoflife.progress import Progress
from treeoflife.schemas import RANKS, TAXA
from treeoflife.taxonomy.api_client import ApiSettings, fetch_json
from treeoflife.taxonomy.candidates import HIGHER_RANKS
from treeoflife.taxonomy.kingdoms import canonical_kingdom, kingdom_key
from treeoflife.taxonomy.merge import REFUSED_CONTRADICTS, apply_answer, scientific_name
from treeoflife.taxonomy.names import normalize_name, normalize_rank_value
from treeoflife.vocabulary import Reason

log = logging.getLogger(__name__)

AUTHORITY = "gbif-api"
_MATCH_TYPES = {"EXACT": "exact", "FUZZY": "fuzzy", "HIGHERRANK": "higherrank", "NONE": "none"}


def match_request(
    query: dict, version: str = "v1", checklist_key: str | None = None
) -> tuple[str, dict]:
    """(path, params) of a species-match request for a query row (verbatim_* columns)."""
    name = query.get("verbatim_scientific_name")
    parsed = normalize_name(name)
    ranks = {r: normalize_rank_value(query.get(f"verbatim_{r}")) for r in HIGHER_RANKS}
    if parsed.canonical is None:  # a query with ranks only: ask for its most specific rank
        name = next((ranks[r] for r in reversed(HIGHER_RANKS) if ranks[r]), None)
    # GBIF's own spelling (Metazoa, animals -> Animalia); an unknown kingdom is not sent.
    ranks["kingdom"] = canonical_kingdom(ranks["kingdom"])
    params: dict = {r: v for r, v in ranks.items() if v}
    if version == "v1":
        params.update(name=name, strict="false", verbose="false")
        return "/v1/species/match", params
    if version != "v2":
        raise ValueError(f"GBIF species match: unknown API version {version!r}")
    params.update(scientificName=name, strict="false", verbose="false")
    if checklist_key:
        params["checklistKey"] = checklist_key
    return "/v2/species/match", params


def _epithet(species: str | None, genus: str | None) -> str | None:
    if not species:
        return None
    parts = species.split()
    if len(parts) >= 2 and (genus is None or parts[0] == genus):
        return parts[1]
    return None


def _v1_fields(body: dict) -> dict:
    ranks = {r: body.get(r) for r in HIGHER_RANKS}
    ranks["species"] = _epithet(body.get("species"), body.get("genus"))
    synonym = bool(body.get("synonym"))
    key = body.get("acceptedUsageKey") if synonym else body.get("usageKey")
    return {
        "ranks": ranks,
        "taxon_id": None if key is None else str(key),
        "match_type": body.get("matchType", "NONE"),
        "confidence": body.get("confidence"),
        "synonym": synonym,
        "rank": (body.get("rank") or "").lower() or None,
        "canonical": body.get("species") if synonym else body.get("canonicalName"),
    }


def _v2_fields(body: dict) -> dict:
    diag = body.get("diagnostics") or {}
    usage = body.get("acceptedUsage") or body.get("usage") or {}
    by_rank = {(c.get("rank") or "").lower(): c.get("name") for c in body.get("classification", [])}
    ranks = {r: by_rank.get(r) for r in HIGHER_RANKS}
    ranks["species"] = _epithet(by_rank.get("species"), ranks["genus"])
    key = usage.get("key")
    return {
        "ranks": ranks,
        "taxon_id": None if key is None else str(key),  # Catalogue of Life keys are strings
        "match_type": diag.get("matchType", "NONE"),
        "confidence": diag.get("confidence"),
        "synonym": bool(body.get("synonym")),
        "rank": (usage.get("rank") or "").lower() or None,
        "canonical": usage.get("canonicalName") or usage.get("name"),
    }


def interpret_match(body: object, query: dict, version: str = "v1") -> dict:
    """A species-match answer as {ranks, taxon_id, scientific_name, match_type, confidence,
    flags, reason}; match_type "none" (with a reason) when nothing usable came back."""
    out = {
        "ranks": dict.fromkeys(RANKS),
        "taxon_id": None,
        "scientific_name": None,
        "match_type": "none",
        "confidence": 0.0,
        "flags": [],
        "reason": Reason.NO_MATCH,
    }
    if not isinstance(body, dict):
        out["reason"] = Reason.API_ERROR
        return out
    f = _v1_fields(body) if version == "v1" else _v2_fields(body)
    match_type = _MATCH_TYPES.get(str(f["match_type"]).upper(), "none")
    if match_type == "none" or f["taxon_id"] is None:
        return out
    qk = kingdom_key(normalize_rank_value(query.get("verbatim_kingdom")))
    ak = kingdom_key(f["ranks"]["kingdom"])
    if qk is not None and ak is not None and qk != ak:
        out.update(reason=Reason.KINGDOM_CONTRADICTS_SOURCE, flags=["homonym_guarded"])
        return out
    flags = []
    if f["synonym"]:
        flags.append("synonym")
        if match_type == "exact":
            match_type = "synonym"
    if match_type == "fuzzy":
        flags.append("fuzzy")
    if match_type == "higherrank":
        flags.append("higher_rank_only")
    ranks = dict(f["ranks"])
    ranks["kingdom"] = canonical_kingdom(ranks["kingdom"]) or ranks["kingdom"]
    if f["rank"] in HIGHER_RANKS:  # a genus (or higher) answer names no species
        ranks["species"] = None
    elif f["rank"] == "species" and not ranks["species"] and f["canonical"]:
        flags.append("name_outside_genus")  # e.g. a doubtful name placed in another genus
    # Agrees with the ranks whatever the answer's own name fields hold (a genus-level synonym
    # has no `species`; a doubtful name may sit in another genus than its own).
    sci = scientific_name(ranks, f["canonical"])
    confidence = f["confidence"]
    out.update(
        ranks=ranks,
        taxon_id=f["taxon_id"],
        scientific_name=sci,
        match_type=match_type,
        confidence=round(float(confidence) / 100.0, 2) if confidence is not None else 0.5,
        flags=sorted(flags),
        reason=None,
    )
    return out


def match_names(
    queries: list[dict],
    settings: ApiSettings,
    cache_path: Path,
    version: str = "v1",
    checklist_key: str | None = None,
    progress: Progress | None = None,
) -> list[dict]:
    """Interpreted species-match answers for query rows, in order (each name asked once ever)."""
    requests = [match_request(q, version, checklist_key) for q in queries]
    answers = fetch_json(requests, settings, cache_path, progress)
    out = []
    for q, a in zip(queries, answers, strict=True):
        if a.error is not None:
            m = interpret_match(None, q, version)
            m["reason"] = Reason.API_ERROR
        else:
            m = interpret_match(a.body, q, version)
        out.append(m)
    return out


def refine_with_gbif_api(
    taxa: pa.Table,
    sources: dict[str, str],
    settings: ApiSettings,
    cache_path: Path,
    version: str = "v1",
    checklist_key: str | None = None,
    progress: Progress | None = None,
) -> tuple[pa.Table, dict]:
    """Ask the API only for rows the local backbone left short of a species (unresolved,
    source-only or higher-rank); merge each answer rank by rank (`merge.apply_answer`: never
    over another authority, only when it reaches deeper, keeping the source's lower ranks
    under the same genus). `sources` maps query_id -> source name (kept for the callers'
    symmetry with the other refiners). Returns the new taxa table (same rows, same order) and
    counts.
    """
    rows = taxa.to_pylist()
    todo = [
        i
        for i, r in enumerate(rows)
        if r["match_type"] in ("none", "source", "higherrank")
        and r["reason"] != Reason.EMPTY_NAME
        and (r["verbatim_scientific_name"] or r["verbatim_genus"])
    ]
    matches = match_names(
        [rows[i] for i in todo], settings, cache_path, version, checklist_key, progress
    )
    counts = {
        "asked": len(todo),
        "improved": 0,
        "guarded": 0,
        "errors": 0,
        REFUSED_CONTRADICTS: 0,
    }
    for i, m in zip(todo, matches, strict=True):
        row = rows[i]
        if m["reason"] == Reason.KINGDOM_CONTRADICTS_SOURCE:
            counts["guarded"] += 1
            continue
        if m["reason"] == Reason.API_ERROR:
            counts["errors"] += 1
            continue
        if m["match_type"] == "none":
            continue
        new, refused, _ = apply_answer(row, m, AUTHORITY, marker="api")
        if refused == REFUSED_CONTRADICTS:
            counts[REFUSED_CONTRADICTS] += 1
        if new is None:
            continue
        rows[i] = new
        counts["improved"] += 1
    log.info("gbif api: %s", counts)
    return pa.Table.from_pylist(rows, schema=TAXA), counts
