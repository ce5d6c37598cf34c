"""ITIS JSON web service: real recorded answers replayed over a loopback server."""

from __future__ import annotations

from tests.conftest import REAL_FIXTURES
from tests.support.api_replay import ApiReplayServer
from treeoflife.taxonomy.api_client import ApiSettings, fetch_json
from treeoflife.taxonomy.itis_api import (
    SERVICE,
    english_common_name,
    exact_tsns,
    hierarchy_ranks,
    itis_lookup,
)

ITIS = REAL_FIXTURES / "itis-api"
CASSETTES = sorted(ITIS.glob("*.yml"))


def _settings(url):
    return ApiSettings(base_url=url, rate_per_s=0, backoff_s=0.01, user_agent="treeoflife-test")


def test_substring_search_keeps_only_the_exact_name(tmp_path):
    with ApiReplayServer(cassettes=CASSETTES) as server:
        (answer,) = fetch_json(
            [(f"{SERVICE}/searchByScientificName", {"srchKey": "Tardigrada"})],
            _settings(server.url),
            tmp_path / "c.duckdb",
        )
    hits = answer.body["scientificNames"]
    assert len(hits) > 1  # "Rotaria tardigrada", "Heterotardigrada", ... all come back
    assert exact_tsns(answer.body, "Tardigrada") == ["155166"]
    assert exact_tsns(answer.body, "tardigrada") == ["155166"]
    assert exact_tsns(answer.body, "Tardigrad") == []


def test_hierarchy_is_cut_at_the_taxon_and_division_is_the_phylum(tmp_path):
    with ApiReplayServer(cassettes=CASSETTES) as server:
        (answer,) = fetch_json(
            [(f"{SERVICE}/getFullHierarchyFromTSN", {"tsn": "37906"})],
            _settings(server.url),
            tmp_path / "c.duckdb",
        )
    ranks = hierarchy_ranks(answer.body, "37906")
    assert ranks == {
        "kingdom": "Plantae",
        "phylum": "Tracheophyta",  # ITIS "Division"
        "class": "Magnoliopsida",
        "order": "Asterales",
        "family": "Asteraceae",
        "genus": "Liatris",
        "species": None,  # the children (Liatris acidota ...) listed after it are not it
    }
    # A species TSN listed among the children: its hierarchy ends at it.
    assert hierarchy_ranks(answer.body, "37907")["species"] == "acidota"
    assert hierarchy_ranks(answer.body, "999")["kingdom"] is None


def test_english_common_name_is_itis_own_first_listed(tmp_path):
    # Issue 16 item 9: ITIS lists "African hunting dog" first; sorting picked "African Wild Dog".
    with ApiReplayServer(cassettes=CASSETTES) as server:
        (answer,) = fetch_json(
            [(f"{SERVICE}/getCommonNamesFromTSN", {"tsn": "183833"})],
            _settings(server.url),
            tmp_path / "c.duckdb",
        )
    assert english_common_name(answer.body) == "African hunting dog"
    assert english_common_name({"commonNames": [{"commonName": "x", "language": "French"}]}) is None


def test_lookup_reports_a_reason_for_every_name(tmp_path):
    with ApiReplayServer(cassettes=CASSETTES) as server:
        rows = itis_lookup(["Tardigrada", "Nothing here"], _settings(server.url), tmp_path / "c.db")
        assert server.user_agents == {"treeoflife-test"}
    tardigrada, nothing = rows
    assert tardigrada["tsn"] == "155166"
    # Its hierarchy was not recorded (the replay server says 404): no ranks, a reason.
    assert tardigrada["reason"] == "api_error" and tardigrada["ranks"]["kingdom"] is None
    assert nothing["tsn"] is None and nothing["reason"] == "no_match"
