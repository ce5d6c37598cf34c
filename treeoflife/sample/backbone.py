"""The sample's GBIF backbone folder: the bundled real Archaea excerpt plus the taxa,
synonyms and vernacular names of the sample species."""

from __future__ import annotations

from pathlib import Path

from treeoflife.sample import species, world
from treeoflife.sample.builder import World
from treeoflife.sample.file_formats import tsv_bytes
from treeoflife.sample.species import SPECIES, SPECIES_BY_NAME

REAL_BACKBONE = Path(__file__).parent / "data" / "gbif-backbone-archaea"
"""The real GBIF backbone excerpt (kingdom Archaea, see its SOURCE.md), copied verbatim into the
sample backbone; bundled so the sample needs nothing outside the package."""

TAXON_COLUMNS = (
    "taxonID",
    "datasetID",
    "parentNameUsageID",
    "acceptedNameUsageID",
    "originalNameUsageID",
    "scientificName",
    "scientificNameAuthorship",
    "canonicalName",
    "genericName",
    "specificEpithet",
    "infraspecificEpithet",
    "taxonRank",
    "nameAccordingTo",
    "namePublishedIn",
    "taxonomicStatus",
    "nomenclaturalStatus",
    "taxonRemarks",
    "kingdom",
    "phylum",
    "class",
    "order",
    "family",
    "genus",
)
VERNACULAR_COLUMNS = (
    "taxonID",
    "vernacularName",
    "language",
    "country",
    "countryCode",
    "sex",
    "lifeStage",
    "source",
)
COL_DATASET = "7ddf754f-d193-4cc9-b351-99906754a03b"  # Catalogue of Life, as in the real dump
KINGDOM_KEYS = {"Animalia": 1, "Archaea": 2, "Fungi": 5, "Plantae": 6}  # real GBIF keys


def _backbone_rows() -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Taxon.tsv and VernacularName.tsv rows written for the sample taxa (not the real excerpt)."""
    paths: set[tuple[str, ...]] = set()
    for s in SPECIES:
        for i in range(1, 7):
            paths.add(s.ranks[:i])
    for extra in world.EXTRA_HIGHER_TAXA:
        for i in range(1, len(extra) + 1):
            paths.add(extra[:i])
    paths = {p for p in paths if p[0] != "Archaea"}
    ids: dict[tuple[str, ...], int] = {}
    next_id = 100_000_001
    for p in sorted(paths, key=lambda p: (len(p), p)):
        if len(p) == 1:
            ids[p] = KINGDOM_KEYS[p[0]]
        else:
            ids[p] = next_id
            next_id += 1
    rows = []
    for p in sorted(paths, key=lambda p: ids[p]):
        name, rank = p[-1], species.RANK_COLUMNS[len(p) - 1]
        auth = ""
        if rank == "genus":
            auth = world.HOMONYM_AUTHORSHIP.get((name, p[0]), world.GENUS_AUTHORSHIP.get(name, ""))
        rows.append(
            _taxon_row(
                ids[p],
                ids.get(p[:-1]),
                None,
                f"{name} {auth}".strip(),
                auth,
                name,
                name,
                "",
                rank,
                "accepted",
                p,
            )
        )
    species_ids = {}
    for s in sorted(SPECIES, key=lambda s: s.name):
        species_ids[s.name] = next_id
        rows.append(
            _taxon_row(
                next_id,
                ids[s.ranks],
                None,
                f"{s.name} {s.authorship}",
                s.authorship,
                s.name,
                s.genus,
                s.epithet,
                "species",
                "accepted",
                s.ranks,
            )
        )
        next_id += 1
    for syn in world.SYNONYMS:
        acc = SPECIES_BY_NAME[syn.accepted]
        rows.append(
            _taxon_row(
                next_id,
                ids[acc.ranks],
                species_ids[acc.name],
                f"{syn.genus} {syn.epithet} {syn.authorship}",
                syn.authorship,
                f"{syn.genus} {syn.epithet}",
                syn.genus,
                syn.epithet,
                "species",
                syn.status,
                acc.ranks,
            )
        )
        next_id += 1
    vernacular = [
        (str(species_ids[s.name]), s.common_name, "en", "", "", "", "", "Catalogue of Life")
        for s in sorted(SPECIES, key=lambda s: species_ids[s.name])
        if s.common_name
    ]
    return rows, vernacular


def _taxon_row(
    tid, parent, accepted, sci, auth, canonical, generic, epithet, rank, status, ranks
) -> tuple[str, ...]:
    cols = list(ranks) + [""] * (6 - len(ranks))
    return (
        str(tid),
        COL_DATASET,
        "" if parent is None else str(parent),
        "" if accepted is None else str(accepted),
        "",
        sci,
        auth,
        canonical,
        generic,
        epithet,
        "",
        rank,
        "",
        "",
        status,
        "",
        "",
        *cols,
    )


def build_backbone(w: World, real: Path) -> None:
    """Taxon.tsv and VernacularName.tsv: the real excerpt in `real`, then the sample taxa."""
    rows, vernacular = _backbone_rows()
    taxon = (real / "Taxon.tsv").read_bytes()
    if not taxon.endswith(b"\n"):
        taxon += b"\n"
    header, _, body = taxon.partition(b"\n")
    if header.decode().split("\t") != list(TAXON_COLUMNS):
        raise ValueError(f"{real}/Taxon.tsv: unexpected header")
    w.files["backbone/Taxon.tsv"] = header + b"\n" + body + tsv_bytes(None, rows)
    vern = (real / "VernacularName.tsv").read_bytes()
    if not vern.endswith(b"\n"):
        vern += b"\n"
    w.files["backbone/VernacularName.tsv"] = vern + tsv_bytes(None, vernacular)
    for name in ("meta.xml", "eml.xml"):
        w.files[f"backbone/{name}"] = (real / name).read_bytes()
    w.counts["backbone_rows"] = len(rows) + body.count(b"\n")
