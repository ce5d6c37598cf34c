"""GBIF species-match client: real recorded answers replayed over loopback, cache, retries,
bounded concurrency, rate limit, the kingdom guard, v2 string keys, and refining local results."""

from __future__ import annotations

import time

import pytest

from tests.conftest import REAL_FIXTURES
from tests.support.api_replay import ApiReplayServer, FailFirst
from treeoflife.schemas import RANKS
from treeoflife.taxonomy import resolve_taxa
from treeoflife.taxonomy.api_client import ApiSettings, ResponseCache, fetch_json
from treeoflife.taxonomy.gbif_api import match_names, match_request, refine_with_gbif_api

from .conftest import make_queries

GBIF_CASSETTES = REAL_FIXTURES / "gbif-api"
MATCH_CASSETTES = [
    GBIF_CASSETTES / "pygbif-test_name_backbone.yaml",
    GBIF_CASSETTES / "pygbif-test_name_backbone_multiple_matches.yaml",
]
UA = "treeoflife-test/1 (+mailto:test@example.org)"


def _settings(url: str, **kw) -> ApiSettings:
    kw.setdefault("rate_per_s", 0)
    kw.setdefault("backoff_s", 0.01)
    return ApiSettings(base_url=url, user_agent=UA, **kw)


def test_recorded_exact_and_none_answers_are_interpreted(tmp_path):
    cache = tmp_path / "cache.duckdb"
    queries = [
        {"verbatim_scientific_name": "Helianthus annuus"},
        {"verbatim_scientific_name": "Aso"},
    ]
    with ApiReplayServer(cassettes=MATCH_CASSETTES) as server:
        sunflower, aso = match_names(queries, _settings(server.url), cache)
    assert server.user_agents == {UA}
    assert sunflower["match_type"] == "exact" and sunflower["taxon_id"] == "9206251"
    assert [sunflower["ranks"][r] for r in RANKS] == [
        "Plantae",
        "Tracheophyta",
        "Magnoliopsida",
        "Asterales",
        "Asteraceae",
        "Helianthus",
        "annuus",
    ]
    assert sunflower["scientific_name"] == "Helianthus annuus"
    assert sunflower["confidence"] == 0.99 and sunflower["reason"] is None
    assert aso["match_type"] == "none" and aso["reason"] == "no_match"


def test_no_name_is_asked_twice_across_runs(tmp_path):
    cache = tmp_path / "cache.duckdb"
    queries = [{"verbatim_scientific_name": "Helianthus annuus"}] * 3
    with ApiReplayServer(cassettes=MATCH_CASSETTES) as server:
        first = match_names(queries, _settings(server.url), cache)
        assert sum(server.hits.values()) == 1  # duplicates in one run: one request
        second = match_names(queries[:1], _settings(server.url), cache)
        assert sum(server.hits.values()) == 1  # the next run: from the cache
    assert first[0] == second[0]
    with ResponseCache(cache) as c:
        assert len(c) == 1


def test_transient_failures_are_retried_and_permanent_ones_not_cached(tmp_path):
    cache = tmp_path / "cache.duckdb"
    path = "/v1/species/match"
    q = [{"verbatim_scientific_name": "Helianthus annuus"}]
    faults = {path: FailFirst(503, 2, retry_after="0")}
    with ApiReplayServer(cassettes=MATCH_CASSETTES, fail_first=faults) as server:
        (m,) = match_names(q, _settings(server.url, retries=3), cache)
        assert server.hits[path] == 3 and m["match_type"] == "exact"
    faults = {path: FailFirst(429, 100)}
    other = tmp_path / "other.duckdb"
    with ApiReplayServer(cassettes=MATCH_CASSETTES, fail_first=faults) as server:
        (m,) = match_names(q, _settings(server.url, retries=2), other)
        assert server.hits[path] == 3
    assert m["match_type"] == "none" and m["reason"] == "api_error"
    with ResponseCache(other) as c:
        assert len(c) == 0  # a failure is asked again next run


def test_concurrency_is_bounded_and_starts_are_rate_limited(tmp_path):
    def answer(path, params):
        return 200, {"matchType": "NONE", "confidence": 100}

    reqs = [("/v1/species/match", {"name": f"Name{i} alba"}) for i in range(12)]
    with ApiReplayServer(handler=answer, latency_s=0.05) as server:
        answers = fetch_json(reqs, _settings(server.url, concurrency=3), tmp_path / "a.duckdb")
        assert server.peak_in_flight <= 3 and len(server.requests) == 12
    assert all(a.ok for a in answers)
    with ApiReplayServer(handler=answer) as server:
        t0 = time.monotonic()
        fetch_json(reqs[:6], _settings(server.url, rate_per_s=20), tmp_path / "b.duckdb")
        assert time.monotonic() - t0 >= 5 / 20 * 0.9  # six starts need five intervals


def test_answer_in_another_kingdom_is_rejected(tmp_path):
    # Shaped like GBIF's real answer: the damselfly asked with kingdom Plantae comes back as a
    # plant genus at HIGHERRANK. The source says Plantae, but so does the answer; asked with
    # kingdom Animalia, the same plant answer contradicts the source and is refused.
    plant = {
        "usageKey": 3001,
        "scientificName": "Calopteryx Plantgenus",
        "canonicalName": "Calopteryx",
        "rank": "GENUS",
        "status": "ACCEPTED",
        "confidence": 94,
        "matchType": "HIGHERRANK",
        "kingdom": "Plantae",
        "phylum": "Tracheophyta",
        "genus": "Calopteryx",
        "synonym": False,
    }
    with ApiReplayServer(handler=lambda p, q: (200, plant)) as server:
        (animal,) = match_names(
            [{"verbatim_kingdom": "Metazoa", "verbatim_scientific_name": "Calopteryx splendens"}],
            _settings(server.url),
            tmp_path / "c.duckdb",
        )
        assert "kingdom=Animalia" in server.requests[0]  # the source's kingdom is always sent
    assert animal["match_type"] == "none" and animal["reason"] == "kingdom_contradicts_source"
    assert animal["ranks"]["kingdom"] is None and "homonym_guarded" in animal["flags"]


def test_v2_match_keeps_string_keys_and_sends_the_checklist(tmp_path):
    body = {
        "usage": {
            "key": "4CGXP",
            "name": "Panthera leo (Linnaeus, 1758)",
            "rank": "SPECIES",
            "canonicalName": "Panthera leo",
        },
        "classification": [
            {"key": "N", "name": "Animalia", "rank": "KINGDOM"},
            {"key": "CH2", "name": "Chordata", "rank": "PHYLUM"},
            {"key": "6224G", "name": "Mammalia", "rank": "CLASS"},
            {"key": "VS", "name": "Carnivora", "rank": "ORDER"},
            {"key": "3DG", "name": "Felidae", "rank": "FAMILY"},
            {"key": "6DBT", "name": "Panthera", "rank": "GENUS"},
            {"key": "4CGXP", "name": "Panthera leo", "rank": "SPECIES"},
        ],
        "diagnostics": {"matchType": "EXACT", "confidence": 99},
        "synonym": False,
    }
    path, params = match_request(
        {"verbatim_scientific_name": "Panthera leo"}, version="v2", checklist_key="7ddf754f"
    )
    assert path == "/v2/species/match" and params["checklistKey"] == "7ddf754f"
    with ApiReplayServer(handler=lambda p, q: (200, body)) as server:
        (m,) = match_names(
            [{"verbatim_scientific_name": "Panthera leo"}],
            _settings(server.url),
            tmp_path / "v2.duckdb",
            version="v2",
            checklist_key="7ddf754f",
        )
        assert "checklistKey=7ddf754f" in server.requests[0]
    assert m["taxon_id"] == "4CGXP" and m["ranks"]["species"] == "leo"
    assert m["ranks"]["family"] == "Felidae" and m["match_type"] == "exact"


@pytest.mark.parametrize("version", ["v1"])
def test_refine_asks_only_for_what_the_backbone_missed(homonym_db, tmp_path, version):
    queries = make_queries(
        {"verbatim_scientific_name": "Helianthus annuus"},  # not in the local backbone
        {"verbatim_scientific_name": "Prunella vulgaris"},  # resolved locally: never asked
        {"verbatim_scientific_name": None},  # empty: never asked
    )
    taxa = resolve_taxa(queries, homonym_db)
    sources = dict(
        zip(
            queries.column("query_id").to_pylist(),
            queries.column("source").to_pylist(),
            strict=True,
        )
    )
    with ApiReplayServer(cassettes=MATCH_CASSETTES) as server:
        refined, counts = refine_with_gbif_api(
            taxa, sources, _settings(server.url), tmp_path / "r.duckdb", version=version
        )
        assert len(server.requests) == 1 and "Helianthus" in server.requests[0]
    assert counts == {
        "asked": 1,
        "improved": 1,
        "guarded": 0,
        "errors": 0,
        "contradicts_local": 0,
    }
    by_name = {r["verbatim_scientific_name"]: r for r in refined.to_pylist()}
    sun = by_name["Helianthus annuus"]
    assert sun["match_type"] == "exact" and sun["authority"] == "gbif-api"
    assert sun["species"] == "annuus" and sun["species_provenance"] == "gbif-api"
    assert "api" in sun["flags"] and sun["reason"] is None
    assert by_name["Prunella vulgaris"]["authority"] == "gbif-backbone"
    assert refined.column("query_id").to_pylist() == taxa.column("query_id").to_pylist()
