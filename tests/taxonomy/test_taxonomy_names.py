"""Name normalisation, table-driven: what sources write -> the backbone's canonical form."""

from __future__ import annotations

import pytest

from treeoflife.taxonomy.names import match_key, normalize_name, normalize_rank_value

# raw, canonical, genus, epithet, infraspecific, rank_hint, authorship, flags
CASES = [
    ("Quercus robur L.", "Quercus robur", "Quercus", "robur", None, "species", "L.", ()),
    (
        "Puma concolor (Linnaeus, 1771)",
        "Puma concolor",
        "Puma",
        "concolor",
        None,
        "species",
        "(Linnaeus, 1771)",
        (),
    ),
    (
        "Methanosarcina mazei (Barker, 1936) Mah & Kuhn, 1984",
        "Methanosarcina mazei",
        "Methanosarcina",
        "mazei",
        None,
        "species",
        "(Barker, 1936) Mah & Kuhn, 1984",
        (),
    ),
    ("QUERCUS ROBUR", "Quercus robur", "Quercus", "robur", None, "species", None, ()),
    ("quercus robur", "Quercus robur", "Quercus", "robur", None, "species", None, ()),
    (
        "Quercus robur subsp. pedunculiflora (K.Koch) Menitsky",
        "Quercus robur pedunculiflora",
        "Quercus",
        "robur",
        "pedunculiflora",
        "subspecies",
        "(K.Koch) Menitsky",
        (),
    ),
    (
        "Poa annua var. aquatica Asch.",
        "Poa annua aquatica",
        "Poa",
        "annua",
        "aquatica",
        "variety",
        "Asch.",
        (),
    ),
    (
        "Crataegus monogyna f. pteridifolia",
        "Crataegus monogyna pteridifolia",
        "Crataegus",
        "monogyna",
        "pteridifolia",
        "form",
        None,
        (),
    ),
    (
        "Canis lupus familiaris",
        "Canis lupus familiaris",
        "Canis",
        "lupus",
        "familiaris",
        "subspecies",
        None,
        (),
    ),
    (
        "Mentha × piperita L.",
        "Mentha piperita",
        "Mentha",
        "piperita",
        None,
        "species",
        "L.",
        ("hybrid",),
    ),
    (
        "Mentha x piperita",
        "Mentha piperita",
        "Mentha",
        "piperita",
        None,
        "species",
        None,
        ("hybrid",),
    ),
    (
        "Mentha ×piperita",
        "Mentha piperita",
        "Mentha",
        "piperita",
        None,
        "species",
        None,
        ("hybrid",),
    ),
    ("× Triticosecale", "Triticosecale", None, None, None, None, None, ("hybrid",)),
    (
        "<i>Mentha &times; piperita</i>",
        "Mentha piperita",
        "Mentha",
        "piperita",
        None,
        "species",
        None,
        ("hybrid",),
    ),
    (
        "Quercus robur x Quercus petraea",
        "Quercus",
        "Quercus",
        None,
        None,
        "genus",
        None,
        ("hybrid_formula",),
    ),
    ("Quercus sp.", "Quercus", "Quercus", None, None, "genus", None, ("sp",)),
    ("Quercus spp", "Quercus", "Quercus", None, None, "genus", None, ("spp",)),
    ("Quercus cf. robur", "Quercus robur", "Quercus", "robur", None, "species", None, ("cf",)),
    ("Quercus aff. robur L.", "Quercus robur", "Quercus", "robur", None, "species", "L.", ("aff",)),
    (
        "Aedes (Ochlerotatus) vexans (Meigen, 1830)",
        "Aedes vexans",
        "Aedes",
        "vexans",
        None,
        "species",
        "(Meigen, 1830)",
        ("subgenus",),
    ),
    (
        "Lamium_galeobdolon",
        "Lamium galeobdolon",
        "Lamium",
        "galeobdolon",
        None,
        "species",
        None,
        (),
    ),
    (
        "Symphyotrichum novae-angliae",
        "Symphyotrichum novae-angliae",
        "Symphyotrichum",
        "novae-angliae",
        None,
        "species",
        None,
        (),
    ),
    ("Archaea", "Archaea", None, None, None, None, None, ()),
    ("Lumbricidae", "Lumbricidae", None, None, None, "family", None, ()),
    (
        "Methanobacteriaceae Barker 1956",
        "Methanobacteriaceae",
        None,
        None,
        None,
        "family",
        "Barker 1956",
        (),
    ),
    ("Passeriformes", "Passeriformes", None, None, None, "order", None, ()),
    (
        "Quercus robur de Candolle",
        "Quercus robur",
        "Quercus",
        "robur",
        None,
        "species",
        "de Candolle",
        (),
    ),
]


@pytest.mark.parametrize(
    ("raw", "canonical", "genus", "epithet", "infra", "rank_hint", "authorship", "flags"), CASES
)
def test_normalize_name(raw, canonical, genus, epithet, infra, rank_hint, authorship, flags):
    parsed = normalize_name(raw)
    assert parsed.canonical == canonical
    assert parsed.genus == genus
    assert parsed.epithet == epithet
    assert parsed.infraspecific == infra
    assert parsed.rank_hint == rank_hint
    assert parsed.authorship == authorship
    assert parsed.flags == tuple(sorted(flags))


@pytest.mark.parametrize(
    ("raw", "flag"),
    [
        (None, "empty"),
        ("", "empty"),
        ("   ", "empty"),
        ("not_classified", "placeholder"),
        ("Not Classified", "placeholder"),
        ("unknown", "placeholder"),
        ("N/A", "placeholder"),
        ("&nbsp;", "placeholder"),
        ("1234", "unparsed"),
        ("? robur", "unparsed"),
    ],
)
def test_names_without_a_name(raw, flag):
    parsed = normalize_name(raw)
    assert parsed.canonical is None
    assert flag in parsed.flags


def test_case_and_spacing_give_the_same_match_key():
    variants = ["Quercus robur", "  quercus   robur ", "QUERCUS ROBUR", "Quercus robur L."]
    keys = {match_key(normalize_name(v).canonical) for v in variants}
    assert keys == {"quercus robur"}


def test_capitalised_second_word_is_authorship_not_epithet():
    parsed = normalize_name("Quercus Linnaeus")
    assert parsed.canonical == "Quercus"
    assert parsed.epithet is None
    assert parsed.authorship == "Linnaeus"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Animalia", "Animalia"),
        ("  ANIMALIA ", "Animalia"),
        ("arthropoda", "Arthropoda"),
        ("not_classified", None),
        ("", None),
        (None, None),
        ("Incertae sedis", None),
    ],
)
def test_normalize_rank_value(raw, expected):
    assert normalize_rank_value(raw) == expected
