"""The real-name regression corpus (tests/taxonomy/real_corpus.py): names and answers from GBIF's
backbone, GBIF's species-match API as rgbif and pygbif recorded it (served over loopback through
our client), and GBIF name-parser's own tests. Asserts the seven ranks, flags and provenance."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tests.conftest import REAL_FIXTURES
from tests.support.api_replay import ApiReplayServer
from treeoflife.records import TAXONOMY_QUERY_COLUMNS, query_id
from treeoflife.schemas import RANKS
from treeoflife.taxonomy import resolve_taxa
from treeoflife.taxonomy.api_client import ApiSettings
from treeoflife.taxonomy.gbif_api import refine_with_gbif_api
from treeoflife.taxonomy.names import normalize_name

from .real_corpus import COL_CHECKLIST, GBIF_CASES, backbone_cases, parser_cases

GBIF_CASSETTES = [
    REAL_FIXTURES / "gbif-match" / "rgbif-species-match.yml",
    REAL_FIXTURES / "gbif-api" / "pygbif-test_name_backbone.yaml",
    REAL_FIXTURES / "gbif-api" / "pygbif-test_name_backbone_multiple_matches.yaml",
]


def _queries(rows: list[dict]) -> pa.Table:
    out = []
    for r in rows:
        row = {c: r.get(c) for c in TAXONOMY_QUERY_COLUMNS}
        row["query_id"] = query_id(row["source"], row)
        out.append(row)
    return pa.Table.from_pylist(
        out, schema=pa.schema([(c, pa.string()) for c in TAXONOMY_QUERY_COLUMNS])
    )


def test_backbone_names_with_authorship_and_kingdom_spellings_get_their_seven_ranks(archaea_db):
    cases = backbone_cases()
    assert len(cases) >= 700  # the corpus is the whole excerpt, not a sample of it
    assert sum(c.synonym for c in cases) >= 60
    queries = _queries(
        [
            {"source": "eol", "verbatim_scientific_name": c.name, "verbatim_kingdom": c.kingdom}
            for c in cases
        ]
    )
    rows = resolve_taxa(queries, archaea_db).to_pylist()
    ids = queries.column("query_id").to_pylist()
    by_id = dict(zip(ids, cases, strict=True))
    wrong = []
    for row in rows:
        case = by_id[row["query_id"]]
        got = tuple(row[r] for r in RANKS)
        provenance = {row[f"{r}_provenance"] for r in RANKS if row[r]}
        expected_match = "synonym" if case.synonym else "exact"
        if (
            got != case.ranks
            or provenance != {"gbif-backbone"}
            or row["match_type"] != expected_match
            or row["taxon_id"] != case.taxon_id
            or ("synonym" in row["flags"]) != case.synonym
            or {"homonym_guarded", "infraspecific_dropped", "unknown_kingdom"} & set(row["flags"])
        ):
            wrong.append((case.name, case.kingdom, got, row["match_type"], row["flags"]))
    assert wrong == []


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_recorded_gbif_answers_through_our_client_and_the_merge(archaea_db, tmp_path, version):
    cases = [c for c in GBIF_CASES if c[0] == version]
    queries = _queries(
        [
            {"source": "inat21", "verbatim_scientific_name": name, "verbatim_kingdom": kingdom}
            for _, name, kingdom, *_ in cases
        ]
    )
    local = resolve_taxa(queries, archaea_db)  # none of these are Archaea: nothing resolves
    assert set(local.column("match_type").to_pylist()) <= {"none", "source"}
    sources = dict.fromkeys(queries.column("query_id").to_pylist(), "inat21")
    settings = ApiSettings(base_url="", rate_per_s=0, backoff_s=0.01, user_agent="t", retries=0)
    with ApiReplayServer(cassettes=GBIF_CASSETTES) as server:
        settings = ApiSettings(**{**settings.__dict__, "base_url": server.url})
        refined, counts = refine_with_gbif_api(
            local,
            sources,
            settings,
            tmp_path / "api.duckdb",
            version=version,
            checklist_key=COL_CHECKLIST if version == "v2" else None,
        )
    assert counts["errors"] == 0  # every request was one GBIF answered: the corpus is complete
    by_id = {r["query_id"]: r for r in refined.to_pylist()}
    for qid, (_, name, kingdom, ranks, match_type, flags) in zip(
        queries.column("query_id").to_pylist(), cases, strict=True
    ):
        row = by_id[qid]
        if ranks is None:  # GBIF has no answer: the source's own labels or nothing
            assert row["authority"] != "gbif-api", name
            continue
        assert tuple(row[r] for r in RANKS) == ranks, (name, kingdom)
        assert row["match_type"] == match_type, (name, kingdom)
        assert {"api", *flags} <= set(row["flags"]), (name, kingdom, row["flags"])
        kept = "source_below_match" in flags  # the species is the source's, the rest GBIF's
        provenance = [row[f"{r}_provenance"] for r in RANKS if row[r]]
        assert provenance == ["gbif-api"] * (len(provenance) - kept) + ["inat21"] * kept
        genus, species = ranks[5], ranks[6]
        assert row["scientific_name"] == (f"{genus} {species}" if species else genus)
        assert "unknown_kingdom" not in row["flags"]


def test_an_unknown_kingdom_with_a_recorded_answer_is_flagged_and_not_sent(archaea_db, tmp_path):
    queries = _queries(
        [
            {
                "source": "eol",
                "verbatim_scientific_name": "Fake species (John Waller 2021)",
                "verbatim_kingdom": "Johnlia",
            }
        ]
    )
    local = resolve_taxa(queries, archaea_db)
    with ApiReplayServer(cassettes=GBIF_CASSETTES) as server:
        settings = ApiSettings(base_url=server.url, rate_per_s=0, user_agent="t")
        refined, _ = refine_with_gbif_api(local, {}, settings, tmp_path / "api.duckdb")
        assert all("kingdom=" not in q for q in server.requests)
    (row,) = refined.to_pylist()
    assert row["kingdom"] is None and "unknown_kingdom" in row["flags"]


# GBIF name-parser's expectations our adopted parser still reads otherwise (bench/name_parsers.py
# prints the figures): numeral epithets (not Latin letters, so not epithets here), a capitalised
# epithet, and an epithet with an apostrophe.
KNOWN_PARSER_DIFFERENCES = {
    "Coccinella 12 guttata Poda, 1761",
    "Coccinella 11-punctata Linnaeus, 1758",
    "Coccinella 2-pustulata",
    "Ovis Aries Linnæus, 1758",
    "Angiopteris d'urvilleana de Vriese",
}


def test_names_from_gbif_name_parser_tests_parse_to_their_parts():
    cases = parser_cases()
    assert len(cases) >= 100
    differ = set()
    for name, (genus, epithet, infra) in cases:
        p = normalize_name(name)
        got = (
            (p.genus or p.canonical or "", "", "")
            if p.epithet is None
            else (p.genus, p.epithet, p.infraspecific or "")
        )
        if tuple(x.lower() for x in got) != (genus.lower(), epithet.lower(), infra.lower()):
            differ.add(name)
    assert differ == KNOWN_PARSER_DIFFERENCES
