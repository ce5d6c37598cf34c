"""The plain-name shortcut parses exactly as the general parser does, or defers to it."""

from __future__ import annotations

import csv

import pytest

from treeoflife.taxonomy.names import _parse_name, _plain_name

from .conftest import REAL_ARCHAEA

TRICKY = [
    "Quercus robur",
    "Quercus robur L.",
    "Puma concolor (Linnaeus, 1771)",
    "Staphylothermus marinus Stetter & Fiala, 1986",
    "Carex spp",
    "Carex sp",
    "Carex cf nigra",
    "Mentha x piperita",
    "Canis lupus familiaris",
    "Quercus robur de Candolle",
    "Incertae sedis",
    "Unknown",
    "No data",
    "Homo sapiens Linnaeus, 1758",
    "Aster novae-angliae L.",
    "Aedes (Ochlerotatus) vexans",
    "Poa annua var. reptans Hausskn.",
    "Salix  alba",
    "Salix alba ",
    "Quercus robur L. 'Fastigiata'",
    "Felidae",
    "Prunella",
    "Rosa canina L. &amp; al.",
    "Vicia faba Müll.",
]


def _archaea_names() -> list[str]:
    with open(REAL_ARCHAEA / "Taxon.tsv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return sorted({r[c] for r in rows for c in ("scientificName", "canonicalName") if r[c]})


@pytest.mark.parametrize("name", TRICKY)
def test_shortcut_agrees_with_the_general_parser(name):
    plain = _plain_name(name)
    assert plain is None or plain == _parse_name(name)


def test_shortcut_agrees_on_every_real_backbone_name():
    names = _archaea_names()
    taken = [n for n in names if _plain_name(n) is not None]
    assert len(taken) > len(names) // 2  # the shortcut carries most real names
    for n in taken:
        assert _plain_name(n) == _parse_name(n), n


def test_shortcut_defers_on_what_it_cannot_read():
    for name in ("Carex spp", "Mentha x piperita", "Incertae sedis", "Canis lupus familiaris"):
        assert _plain_name(name) is None
