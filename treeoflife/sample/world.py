"""Facts of the sample world beyond its species (species.py): genus authorships, homonyms,
synonyms, the EOL pages.

Everything here is fixed data (no seed): the seed only changes pixels. Classifications follow
the GBIF backbone (kingdom..genus as GBIF fills them), authorships are the real ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from treeoflife.sample.species import EOL, SPECIES, SPECIES_BY_NAME, Species

GENUS_AUTHORSHIP = {
    "Apis": "Linnaeus, 1758",
    "Bombus": "Latreille, 1802",
    "Danaus": "Kluk, 1780",
    "Vanessa": "Fabricius, 1807",
    "Coccinella": "Linnaeus, 1758",
    "Musca": "Linnaeus, 1758",
    "Drosophila": "Fallén, 1823",
    "Megaselia": "Rondani, 1856",
    "Chironomus": "Meigen, 1803",
    "Erithacus": "Cuvier, 1800",
    "Turdus": "Linnaeus, 1758",
    "Cardinalis": "Bonaparte, 1838",
    "Strix": "Linnaeus, 1758",
    "Vulpes": "Frisch, 1775",
    "Sciurus": "Linnaeus, 1758",
    "Ailurus": "F.Cuvier, 1825",
    "Lumbricus": "Linnaeus, 1758",
    "Bufo": "Garsault, 1764",
    "Ambystoma": "Tschudi, 1838",
    "Cornu": "Born, 1778",
    "Helix": "Linnaeus, 1758",
    "Quercus": "L.",
    "Taraxacum": "F.H.Wigg.",
    "Helianthus": "L.",
    "Bellis": "L.",
    "Acer": "L.",
    "Pinus": "L.",
    "Amanita": "Pers.",
    "Boletus": "L.",
    "Cantharellus": "Adans. ex Fr.",
    "Pleurotus": "(Fr.) P.Kumm.",
    "Trametes": "Fr.",
    "Agaricus": "L.",
}
"""Genus authorships; the homonym genera are keyed by (genus, kingdom) in HOMONYM_AUTHORSHIP."""

HOMONYM_AUTHORSHIP = {
    ("Prunella", "Plantae"): "L.",
    ("Prunella", "Animalia"): "Vieillot, 1816",
    ("Morus", "Plantae"): "L.",
    ("Morus", "Animalia"): "Vieillot, 1816",
    ("Oenanthe", "Plantae"): "L.",
    ("Oenanthe", "Animalia"): "Vieillot, 1816",
}

EXTRA_HIGHER_TAXA: tuple[tuple[str, ...], ...] = (
    # BIOSCAN rows labelled to family only, and the accepted genus of the Helix aspersa basionym
    ("Animalia", "Arthropoda", "Insecta", "Diptera", "Cecidomyiidae"),
    ("Animalia", "Mollusca", "Gastropoda", "Stylommatophora", "Helicidae", "Helix"),
)


@dataclass(frozen=True)
class Synonym:
    """A backbone synonym row: `name authorship` points at the accepted species `accepted`."""

    genus: str
    epithet: str
    authorship: str
    accepted: str
    status: str  # "synonym" or "homotypic synonym" (GBIF dump spelling)


SYNONYMS: tuple[Synonym, ...] = (
    Synonym("Helix", "aspersa", "O.F.Müller, 1774", "Cornu aspersum", "homotypic synonym"),
    Synonym("Quercus", "pedunculata", "Ehrh.", "Quercus robur", "synonym"),
    Synonym("Agaricus", "muscarius", "L.", "Amanita muscaria", "homotypic synonym"),
    Synonym("Polyporus", "versicolor", "(L.) Fr.", "Trametes versicolor", "homotypic synonym"),
)


@dataclass(frozen=True)
class EOLPage:
    """An EOL page as `pages.csv` gives it, and what the pipeline should make of it."""

    page_id: int
    scientific_name: str  # verbatim, as EOL gives it
    ranks: tuple[str, ...]  # verbatim kingdom..genus ("" where EOL gives nothing)
    common_name: str
    images: int
    render_as: str | None  # species (or "Genus|Kingdom" for genus pages) whose look the images get
    expect: dict | None = None  # expected final outcome of every image of this page
    trouble: str = ""
    extra: dict = field(default_factory=dict)


def _full(s: Species) -> tuple[str, ...]:
    return s.ranks


def eol_pages() -> list[EOLPage]:
    """All EOL pages: one per EOL species plus the trouble-makers."""
    pages: list[EOLPage] = []
    page_id = 1_033_000
    special = {"Quercus robur", "Taraxacum officinale", "Cornu aspersum"}
    for i, s in enumerate(SPECIES):
        if EOL not in s.sources or s.name in special:
            continue
        page_id += 137
        # EOL gives the hierarchy for most pages, nothing but the kingdom for some.
        ranks = _full(s) if i % 3 else (s.kingdom, "", "", "", "", "")
        pages.append(EOLPage(page_id, s.name, ranks, s.common_name or "", 8, s.name))
    qr, to, ca = (
        SPECIES_BY_NAME[n] for n in ("Quercus robur", "Taraxacum officinale", "Cornu aspersum")
    )
    pages += [
        EOLPage(
            1_151_323,
            "Quercus robur L.",
            _full(qr),
            "English oak",
            8,
            qr.name,
            {"status": "kept", "match_type": "exact", "scientific_name": "Quercus robur"},
            "name_with_authorship",
        ),
        EOLPage(
            1_158_641,
            "Taraxacum oficinale",
            ("Plantae", "", "", "", "", ""),
            "common dandelion",
            8,
            to.name,
            {"status": "kept", "match_type": "fuzzy", "scientific_name": "Taraxacum officinale"},
            "misspelt_name",
        ),
        EOLPage(
            1_152_911,
            "Helix aspersa",
            ("Animalia", "Mollusca", "", "", "", ""),
            "brown garden snail",
            4,
            ca.name,
            {
                "status": "kept",
                "match_type": "synonym",
                "scientific_name": "Cornu aspersum",
                "genus": "Cornu",
            },
            "synonym",
        ),
        EOLPage(
            1_204_117,
            "Methanobacterium thermoflexum",
            ("Archaea", "", "", "", "", ""),
            "",
            3,
            "Methanothermobacter thermoflexus|Archaea",
            {
                "status": "kept",
                "match_type": "synonym",
                "scientific_name": "Methanothermobacter thermoflexus",
                "genus": "Methanothermobacter",
                "kingdom": "Archaea",
            },
            "synonym_archaea",
        ),
        EOLPage(
            2_866_501,
            "Prunella",
            ("Plantae", "", "", "", "", ""),
            "self-heal",
            3,
            "Prunella|Plantae",
            {
                "status": "kept",
                "kingdom": "Plantae",
                "family": "Lamiaceae",
                "genus": "Prunella",
                "species": None,
            },
            "homonym_genus",
        ),
        EOLPage(
            2_866_502,
            "Prunella",
            ("Animalia", "", "", "", "", ""),
            "accentors",
            3,
            "Prunella|Animalia",
            {
                "status": "kept",
                "kingdom": "Animalia",
                "family": "Prunellidae",
                "genus": "Prunella",
                "species": None,
            },
            "homonym_genus",
        ),
        EOLPage(
            2_866_503,
            "Morus",
            ("Animalia", "", "", "", "", ""),
            "gannets",
            3,
            "Morus|Animalia",
            {
                "status": "kept",
                "kingdom": "Animalia",
                "family": "Sulidae",
                "genus": "Morus",
                "species": None,
            },
            "homonym_genus",
        ),
        EOLPage(
            2_866_504,
            "Oenanthe",
            ("Plantae", "", "", "", "", ""),
            "water dropworts",
            3,
            "Oenanthe|Plantae",
            {
                "status": "kept",
                "kingdom": "Plantae",
                "family": "Apiaceae",
                "genus": "Oenanthe",
                "species": None,
            },
            "homonym_genus",
        ),
        EOLPage(
            4_999_001,
            "Zzyxqor blimptavia",
            ("", "", "", "", "", ""),
            "",
            2,
            None,
            {"status": "excluded", "reason": "taxon_unresolved"},
            "unresolvable_name",
        ),
    ]
    return pages


def genus_rank_path(genus: str, kingdom: str) -> tuple[str, ...]:
    """kingdom..genus of a genus in the world (homonyms told apart by kingdom)."""
    if genus == "Methanothermobacter":
        return (
            "Archaea",
            "Euryarchaeota",
            "Methanobacteria",
            "Methanobacteriales",
            "Methanobacteriaceae",
            "Methanothermobacter",
        )
    for s in SPECIES:
        if s.genus == genus and s.kingdom == kingdom:
            return s.ranks
    raise KeyError((genus, kingdom))
