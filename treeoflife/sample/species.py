"""The sample world's species: real names, their GBIF-style classification, and which sources
show them (fixed data; the seed only changes pixels). The rest of the world's facts (genus
authorships, synonyms, EOL pages) are in world.py.
"""

from __future__ import annotations

from dataclasses import dataclass

RANK_COLUMNS = ("kingdom", "phylum", "class", "order", "family", "genus")

SEEN = "seen"  # also in evalsets/seen_species (fresh renders)
RARE = "rare"  # held out: in evalsets/rare_species, every training image must be removed


@dataclass(frozen=True)
class Species:
    kingdom: str
    phylum: str
    cls: str
    order: str
    family: str
    genus: str
    epithet: str
    authorship: str
    common_name: str | None  # English; None: no vernacular name in the backbone
    sources: tuple[str, ...]  # subset of ("inat21", "bioscan", "eol")
    role: str = ""  # "", SEEN or RARE

    @property
    def name(self) -> str:
        return f"{self.genus} {self.epithet}"

    @property
    def ranks(self) -> tuple[str, str, str, str, str, str]:
        return (self.kingdom, self.phylum, self.cls, self.order, self.family, self.genus)


_ARTH = ("Animalia", "Arthropoda", "Insecta")
_AVES = ("Animalia", "Chordata", "Aves")
_MAMM = ("Animalia", "Chordata", "Mammalia")
_AMPH = ("Animalia", "Chordata", "Amphibia")
_DICOT = ("Plantae", "Tracheophyta", "Magnoliopsida")
_PINE = ("Plantae", "Tracheophyta", "Pinopsida")
_AGAR = ("Fungi", "Basidiomycota", "Agaricomycetes")

INAT, BIOSCAN, EOL = "inat21", "bioscan", "eol"


def _sp(higher, order, family, genus, epithet, auth, common, sources, role=""):
    return Species(*higher, order, family, genus, epithet, auth, common, sources, role)


SPECIES: tuple[Species, ...] = (
    # Insects (BIOSCAN is insects only)
    _sp(
        _ARTH,
        "Hymenoptera",
        "Apidae",
        "Apis",
        "mellifera",
        "Linnaeus, 1758",
        "Western Honey Bee",
        (INAT, BIOSCAN),
        SEEN,
    ),
    _sp(
        _ARTH,
        "Hymenoptera",
        "Apidae",
        "Bombus",
        "terrestris",
        "(Linnaeus, 1758)",
        "Buff-tailed Bumblebee",
        (BIOSCAN,),
    ),
    _sp(
        _ARTH,
        "Lepidoptera",
        "Nymphalidae",
        "Danaus",
        "plexippus",
        "(Linnaeus, 1758)",
        "Monarch",
        (INAT, EOL),
        SEEN,
    ),
    _sp(
        _ARTH,
        "Lepidoptera",
        "Nymphalidae",
        "Vanessa",
        "atalanta",
        "(Linnaeus, 1758)",
        "Red Admiral",
        (BIOSCAN,),
    ),
    _sp(
        _ARTH,
        "Coleoptera",
        "Coccinellidae",
        "Coccinella",
        "septempunctata",
        "Linnaeus, 1758",
        "Seven-spotted Lady Beetle",
        (INAT, BIOSCAN),
        SEEN,
    ),
    _sp(
        _ARTH,
        "Diptera",
        "Muscidae",
        "Musca",
        "domestica",
        "Linnaeus, 1758",
        "House Fly",
        (BIOSCAN,),
    ),
    _sp(
        _ARTH,
        "Diptera",
        "Drosophilidae",
        "Drosophila",
        "melanogaster",
        "Meigen, 1830",
        "Common Fruit Fly",
        (BIOSCAN,),
    ),
    _sp(_ARTH, "Diptera", "Phoridae", "Megaselia", "scalaris", "(Loew, 1866)", None, (BIOSCAN,)),
    _sp(
        _ARTH, "Diptera", "Chironomidae", "Chironomus", "riparius", "Meigen, 1804", None, (BIOSCAN,)
    ),
    # Birds: Prunella, Morus and Oenanthe are also plant genera (cross-kingdom homonyms)
    _sp(
        _AVES,
        "Passeriformes",
        "Prunellidae",
        "Prunella",
        "modularis",
        "(Linnaeus, 1758)",
        "Dunnock",
        (INAT,),
    ),
    _sp(
        _AVES,
        "Suliformes",
        "Sulidae",
        "Morus",
        "bassanus",
        "(Linnaeus, 1758)",
        "Northern Gannet",
        (EOL,),
    ),
    _sp(
        _AVES,
        "Passeriformes",
        "Muscicapidae",
        "Oenanthe",
        "oenanthe",
        "(Linnaeus, 1758)",
        "Northern Wheatear",
        (EOL,),
    ),
    _sp(
        _AVES,
        "Passeriformes",
        "Muscicapidae",
        "Erithacus",
        "rubecula",
        "(Linnaeus, 1758)",
        "European Robin",
        (INAT,),
        SEEN,
    ),
    _sp(
        _AVES,
        "Passeriformes",
        "Turdidae",
        "Turdus",
        "merula",
        "Linnaeus, 1758",
        "Eurasian Blackbird",
        (EOL,),
        SEEN,
    ),
    _sp(
        _AVES,
        "Passeriformes",
        "Cardinalidae",
        "Cardinalis",
        "cardinalis",
        "(Linnaeus, 1758)",
        "Northern Cardinal",
        (INAT,),
    ),
    # Other animals
    _sp(
        _MAMM,
        "Carnivora",
        "Canidae",
        "Vulpes",
        "vulpes",
        "(Linnaeus, 1758)",
        "Red Fox",
        (INAT,),
        SEEN,
    ),
    _sp(
        _MAMM,
        "Rodentia",
        "Sciuridae",
        "Sciurus",
        "vulgaris",
        "Linnaeus, 1758",
        "Eurasian Red Squirrel",
        (EOL,),
    ),
    _sp(_AMPH, "Anura", "Bufonidae", "Bufo", "bufo", "(Linnaeus, 1758)", "Common Toad", (INAT,)),
    _sp(
        ("Animalia", "Annelida", "Clitellata"),
        "Haplotaxida",
        "Lumbricidae",
        "Lumbricus",
        "terrestris",
        "Linnaeus, 1758",
        "Common Earthworm",
        (INAT,),
    ),
    _sp(
        ("Animalia", "Mollusca", "Gastropoda"),
        "Stylommatophora",
        "Helicidae",
        "Cornu",
        "aspersum",
        "(O.F.Müller, 1774)",
        "Garden Snail",
        (INAT, EOL),
    ),
    # Plants
    _sp(
        _DICOT,
        "Fagales",
        "Fagaceae",
        "Quercus",
        "robur",
        "L.",
        "Pedunculate Oak",
        (INAT, EOL),
        SEEN,
    ),
    _sp(_DICOT, "Fagales", "Fagaceae", "Quercus", "alba", "L.", "White Oak", (EOL,)),
    _sp(_DICOT, "Lamiales", "Lamiaceae", "Prunella", "vulgaris", "L.", "Common Self-heal", (INAT,)),
    _sp(_DICOT, "Rosales", "Moraceae", "Morus", "alba", "L.", "White Mulberry", (EOL,)),
    _sp(
        _DICOT, "Apiales", "Apiaceae", "Oenanthe", "crocata", "L.", "Hemlock Water-dropwort", (EOL,)
    ),
    _sp(
        _DICOT,
        "Asterales",
        "Asteraceae",
        "Taraxacum",
        "officinale",
        "F.H.Wigg.",
        "Common Dandelion",
        (EOL,),
    ),
    _sp(
        _DICOT, "Asterales", "Asteraceae", "Helianthus", "annuus", "L.", "Common Sunflower", (INAT,)
    ),
    _sp(_DICOT, "Asterales", "Asteraceae", "Bellis", "perennis", "L.", "Common Daisy", (EOL,)),
    _sp(
        _DICOT,
        "Sapindales",
        "Sapindaceae",
        "Acer",
        "pseudoplatanus",
        "L.",
        "Sycamore Maple",
        (EOL,),
        SEEN,
    ),
    _sp(_PINE, "Pinales", "Pinaceae", "Pinus", "sylvestris", "L.", "Scots Pine", (INAT,)),
    # Fungi
    _sp(
        _AGAR,
        "Agaricales",
        "Amanitaceae",
        "Amanita",
        "muscaria",
        "(L.) Lam.",
        "Fly Agaric",
        (INAT, EOL),
        SEEN,
    ),
    _sp(
        _AGAR,
        "Agaricales",
        "Amanitaceae",
        "Amanita",
        "phalloides",
        "(Vaill. ex Fr.) Link",
        "Death Cap",
        (EOL,),
    ),
    _sp(
        _AGAR, "Boletales", "Boletaceae", "Boletus", "edulis", "Bull.", "King Bolete", (INAT,), SEEN
    ),
    _sp(
        _AGAR,
        "Cantharellales",
        "Cantharellaceae",
        "Cantharellus",
        "cibarius",
        "Fr.",
        "Golden Chanterelle",
        (EOL,),
    ),
    _sp(
        _AGAR,
        "Agaricales",
        "Pleurotaceae",
        "Pleurotus",
        "ostreatus",
        "(Jacq.) P.Kumm.",
        "Oyster Mushroom",
        (EOL,),
    ),
    _sp(
        _AGAR,
        "Polyporales",
        "Polyporaceae",
        "Trametes",
        "versicolor",
        "(L.) Lloyd",
        "Turkey Tail",
        (INAT,),
    ),
    # Held-out rare species (IUCN-listed animals, like BioCLIP's Rare Species set)
    _sp(
        _MAMM,
        "Carnivora",
        "Ailuridae",
        "Ailurus",
        "fulgens",
        "F.Cuvier, 1825",
        "Red Panda",
        (INAT, EOL),
        RARE,
    ),
    _sp(
        _ARTH,
        "Hymenoptera",
        "Apidae",
        "Bombus",
        "affinis",
        "Cresson, 1863",
        "Rusty Patched Bumble Bee",
        (BIOSCAN, EOL),
        RARE,
    ),
    _sp(
        _AVES,
        "Strigiformes",
        "Strigidae",
        "Strix",
        "occidentalis",
        "(Xantus de Vesey, 1860)",
        "Spotted Owl",
        (INAT,),
        RARE,
    ),
    _sp(
        _AMPH,
        "Caudata",
        "Ambystomatidae",
        "Ambystoma",
        "mexicanum",
        "(Shaw & Nodder, 1798)",
        "Axolotl",
        (INAT,),
        RARE,
    ),
)

SPECIES_BY_NAME = {s.name: s for s in SPECIES}
