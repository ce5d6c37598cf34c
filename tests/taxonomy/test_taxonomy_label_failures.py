"""The label failures real names showed (issue 16, items 1-6, 8, 9), one test each: kingdom
spellings, the API step keeping what the source knew, punctuation, author words, the scientific
name beside the ranks, quotes in common names, ITIS in the build, ITIS's own English name."""

from __future__ import annotations

import dataclasses

import pyarrow.parquet as pq

from tests.conftest import REPO
from tests.support.api_replay import ApiReplayServer
from tests.support.itis_service import ItisService, ItisTaxon
from treeoflife import pipeline, schemas
from treeoflife.config import load_config
from treeoflife.layout import Layout
from treeoflife.schemas import RANKS
from treeoflife.taxonomy import resolve_taxa
from treeoflife.taxonomy.api_client import ApiSettings
from treeoflife.taxonomy.gbif_api import interpret_match, match_request, refine_with_gbif_api
from treeoflife.taxonomy.names import clean_text, normalize_name
from treeoflife.taxonomy.report import taxonomy_report

from .conftest import BIRD, make_queries

ARCHAEA = ("Archaea", "Euryarchaeota", "Methanobacteria", "Methanobacteriales")


def _settings(url: str) -> ApiSettings:
    return ApiSettings(base_url=url, rate_per_s=0, backoff_s=0.01, user_agent="treeoflife-test")


def _resolve_one(db, **query) -> dict:
    (row,) = resolve_taxa(make_queries(query), db).to_pylist()
    return row


def _sources(queries) -> dict[str, str]:
    ids, srcs = queries.column("query_id").to_pylist(), queries.column("source").to_pylist()
    return dict(zip(ids, srcs, strict=True))


# --- 1. kingdom spellings ------------------------------------------------------------------


def test_a_vernacular_kingdom_does_not_refuse_a_right_gbif_answer():
    answer = {
        "usageKey": 2435099,
        "canonicalName": "Puma concolor",
        "rank": "SPECIES",
        "status": "ACCEPTED",
        "confidence": 99,
        "matchType": "EXACT",
        "kingdom": "Animalia",
        "phylum": "Chordata",
        "class": "Mammalia",
        "order": "Carnivora",
        "family": "Felidae",
        "genus": "Puma",
        "species": "Puma concolor",
        "synonym": False,
    }
    for spelling in ("animals", "Animals", "Metazoa", "animal"):
        query = {"verbatim_scientific_name": "Puma concolor", "verbatim_kingdom": spelling}
        m = interpret_match(answer, query)
        assert m["reason"] is None and m["match_type"] == "exact", spelling
        assert match_request(query)[1]["kingdom"] == "Animalia"  # GBIF's own spelling is sent


def test_a_vernacular_kingdom_resolves_locally_and_is_kept_as_gbif_spells_it(homonym_db):
    row = _resolve_one(
        homonym_db, verbatim_kingdom="Animals", verbatim_scientific_name="Prunella modularis"
    )
    assert row["match_type"] == "exact" and row["taxon_id"] == "21"  # the bird, not guarded
    assert [row[r] for r in RANKS] == [*BIRD, "Prunella", "modularis"]
    # Only the source's ranks (no Fungi in this backbone): its kingdom label is GBIF's
    # spelling, its provenance the source.
    src = _resolve_one(
        homonym_db,
        source="inat21",
        verbatim_kingdom="fungus",
        verbatim_family="Nofamilyaceae",
        verbatim_scientific_name="Nogenus nospecies",
    )
    assert (src["kingdom"], src["kingdom_provenance"]) == ("Fungi", "inat21")


def test_an_unknown_kingdom_is_flagged_reported_and_never_a_label(homonym_db):
    queries = make_queries(
        {
            "source": "eol",
            "verbatim_kingdom": "Johnlia",
            "verbatim_family": "Nofamilyaceae",
            "verbatim_scientific_name": "Fake species",
        }
    )
    (row,) = resolve_taxa(queries, homonym_db).to_pylist()
    assert row["kingdom"] is None and "unknown_kingdom" in row["flags"]
    assert row["family"] == "Nofamilyaceae"  # the rest of the source's labels stay
    report = taxonomy_report(resolve_taxa(queries, homonym_db), _sources(queries))
    assert report["kingdoms"]["eol"]["Johnlia"] == {"read_as": "unknown", "images": 1}
    assert "kingdom" not in match_request(row)[1]  # a typo is not sent to GBIF either


# --- 2. the API step keeps what the source knew -------------------------------------------


def test_a_genus_answer_keeps_the_species_the_source_gave_below_the_match(archaea_db, tmp_path):
    queries = make_queries(
        {
            "source": "bioscan",
            "verbatim_kingdom": "Archaea",
            "verbatim_family": "Methanobacteriaceae",
            "verbatim_genus": "Notagenus",
            "verbatim_scientific_name": "Notagenus novus",
        }
    )
    local = resolve_taxa(queries, archaea_db)
    assert "source_below_match" in local.column("flags").to_pylist()[0]
    genus_answer = {
        "usageKey": 777,
        "scientificName": "Notagenus Smith, 2001",
        "canonicalName": "Notagenus",
        "rank": "GENUS",
        "status": "ACCEPTED",
        "confidence": 94,
        "matchType": "HIGHERRANK",
        **dict(zip(("kingdom", "phylum", "class", "order"), ARCHAEA, strict=True)),
        "family": "Methanobacteriaceae",
        "genus": "Notagenus",
        "synonym": False,
    }
    with ApiReplayServer(handler=lambda p, q: (200, genus_answer)) as server:
        refined, counts = refine_with_gbif_api(
            local, _sources(queries), _settings(server.url), tmp_path / "api.duckdb"
        )
    assert counts["improved"] == 1
    (row,) = refined.to_pylist()
    assert [row[r] for r in RANKS] == [*ARCHAEA, "Methanobacteriaceae", "Notagenus", "novus"]
    provenance = [row[f"{r}_provenance"] for r in RANKS]
    assert provenance == ["gbif-api"] * 6 + ["bioscan"]  # which side each rank came from
    assert row["scientific_name"] == "Notagenus novus"
    assert {"api", "source_below_match"} <= set(row["flags"])


# --- 3. trailing punctuation ---------------------------------------------------------------


def test_trailing_punctuation_keeps_the_epithet(homonym_db):
    for raw in ("Prunella vulgaris.", "Prunella vulgaris,", "Prunella vulgaris;"):
        assert normalize_name(raw).canonical == "Prunella vulgaris", raw
        row = _resolve_one(homonym_db, verbatim_kingdom="Plantae", verbatim_scientific_name=raw)
        assert (row["species"], row["match_type"], row["taxon_id"]) == ("vulgaris", "exact", "11")


# --- 4. lower-case author words and diacritics --------------------------------------------


def test_lower_case_author_words_are_authors_unless_the_trinomial_exists(homonym_db):
    for raw in (
        "Prunella modularis linnaeus",
        "Prunella modularis girard",
        "Prunella modularis seaton ex",
    ):
        row = _resolve_one(homonym_db, verbatim_kingdom="Animalia", verbatim_scientific_name=raw)
        assert (row["species"], row["match_type"], row["confidence"]) == ("modularis", "exact", 1.0)
        assert "infraspecific_dropped" not in row["flags"], raw
    # A marked infraspecific name that the backbone lacks is still a dropped part.
    row = _resolve_one(homonym_db, verbatim_scientific_name="Prunella vulgaris subsp. lanceolata")
    assert "infraspecific_dropped" in row["flags"] and row["confidence"] < 1.0


def test_an_author_with_a_diacritic_is_not_an_epithet():
    parsed = normalize_name("Zygaena hübner")
    assert (parsed.canonical, parsed.epithet) == ("Zygaena", None)
    parsed = normalize_name("Zygaena filipendulae hübner")
    assert (parsed.canonical, parsed.infraspecific) == ("Zygaena filipendulae", None)


# --- 5. scientific_name agrees with the ranks --------------------------------------------


def test_gbif_scientific_name_agrees_with_the_ranks_beside_it():
    # v1 answer for a genus-level synonym: no `species`, the accepted genus in `genus`.
    synonym = {
        "usageKey": 5,
        "acceptedUsageKey": 6,
        "scientificName": "Calopteryx A.C.Sm.",
        "canonicalName": "Calopteryx",
        "rank": "GENUS",
        "status": "SYNONYM",
        "confidence": 96,
        "matchType": "EXACT",
        "kingdom": "Plantae",
        "phylum": "Tracheophyta",
        "class": "Magnoliopsida",
        "order": "Ericales",
        "family": "Ericaceae",
        "genus": "Thibaudia",
        "synonym": True,
    }
    m = interpret_match(synonym, {"verbatim_scientific_name": "Calopteryx"})
    assert (m["scientific_name"], m["ranks"]["genus"]) == ("Thibaudia", "Thibaudia")
    # A doubtful name placed in another genus: the name printed is the genus it sits in.
    doubtful = {
        **synonym,
        "usageKey": 7,
        "canonicalName": "Aus bus",
        "rank": "SPECIES",
        "status": "DOUBTFUL",
        "genus": "Cus",
        "species": "Aus bus",
        "synonym": False,
    }
    m = interpret_match(doubtful, {"verbatim_scientific_name": "Aus bus"})
    assert m["ranks"]["genus"] == "Cus" and m["ranks"]["species"] is None
    assert m["scientific_name"] == "Cus" and "name_outside_genus" in m["flags"]


# --- 6. common names keep their punctuation -----------------------------------------------


def test_common_names_keep_inner_quotes():
    assert clean_text("'Oma'o") == "'Oma'o"
    assert clean_text("Persicaria 'São Paulo'") == "Persicaria 'São Paulo'"
    assert clean_text('"Oma\'o"') == "Oma'o"  # a pair around the whole text is not the name
    assert clean_text("'Apapane'") == "Apapane"


# --- 8. the ITIS web service in the build -------------------------------------------------


def test_stage_taxonomy_asks_the_itis_web_service_last_and_caches_it(tmp_path):
    cfg = load_config(REPO / "configs" / "sample.yaml", data_root=str(tmp_path / "root"))
    pipeline.run("sample", cfg)
    for source in schemas.SOURCES:
        pipeline.run(f"ingest-{source}", cfg)
    pipeline.run("taxonomy", cfg)
    layout = Layout(cfg.root)
    before = {r["query_id"]: r for r in pq.read_table(layout.taxa).to_pylist()}
    missed = sorted(
        (
            r
            for r in before.values()
            if r["match_type"] == "none"
            and normalize_name(r["verbatim_scientific_name"]).binomial
            and r["verbatim_kingdom"] in (None, "Animalia")
        ),
        key=lambda r: r["query_id"],
    )
    assert missed, "the sample has no unresolved animal binomial to try"
    target = missed[0]
    genus, epithet = normalize_name(target["verbatim_scientific_name"]).binomial.split()
    service = ItisService(
        [
            ItisTaxon("202423", "Animalia", "Kingdom"),
            ItisTaxon("158852", "Chordata", "Phylum", "202423"),
            ItisTaxon("179913", "Mammalia", "Class", "158852"),
            ItisTaxon("180539", "Carnivora", "Order", "179913"),
            ItisTaxon("180540", "Felidae", "Family", "180539"),
            ItisTaxon("990001", genus, "Genus", "180540"),
            ItisTaxon(
                "990002",
                f"{genus} {epithet}",
                "Species",
                "990001",
                (("Zebra name", "English"), ("Apple name", "English"), ("Nom", "French")),
            ),
        ]
    )
    with ApiReplayServer(handler=service) as server:
        cfg2 = dataclasses.replace(
            cfg, taxonomy=dataclasses.replace(cfg.taxonomy, itis_api_url=server.url)
        )
        result = pipeline.run("taxonomy", cfg2).summary
        asked = len(server.requests)
        assert result["itis_api"]["improved"] >= 1
        after = {r["query_id"]: r for r in pq.read_table(layout.taxa).to_pylist()}
        row = after[target["query_id"]]
        assert (row["authority"], row["taxon_id"]) == ("itis-api", "990002")
        assert [row[r] for r in RANKS] == [
            "Animalia",
            "Chordata",
            "Mammalia",
            "Carnivora",
            "Felidae",
            genus,
            epithet,
        ]
        assert row["common_name"] == "Zebra name"  # ITIS's first-listed English name
        # Rows the backbone resolved were never asked.
        resolved = sum(1 for r in before.values() if r["match_type"] in ("exact", "synonym"))
        searches = [q for q in server.requests if "searchByScientificName" in q]
        assert len(searches) <= len(before) - resolved
        # A forced rerun asks nothing new: every answer is in the cache.
        pipeline.run(
            "taxonomy",
            dataclasses.replace(cfg2, taxonomy=dataclasses.replace(cfg2.taxonomy, api_retries=3)),
        )
        assert len(server.requests) == asked
