"""The BIOSCAN-1M look-alike: the metadata TSV and two image zips, with family-only and
genus-only labels and a row whose image is in no zip."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from treeoflife.io import stable_hash64
from treeoflife.sample import species
from treeoflife.sample.builder import RARE_PER_SOURCE, World, genus_look, species_look
from treeoflife.sample.file_formats import tsv_bytes, zip_bytes
from treeoflife.sample.render import Signature, signature
from treeoflife.sample.species import RARE, SPECIES

BIOSCAN_PER_SPECIES = 9

BIOSCAN_COLUMNS = (
    "sampleid",
    "processid",
    "uri",
    "name",
    "phylum",
    "class",
    "order",
    "family",
    "subfamily",
    "tribe",
    "genus",
    "species",
    "subspecies",
    "nucraw",
    "image_file",
    "large_diptera_family",
    "medium_diptera_family",
    "small_diptera_family",
    "large_insect_order",
    "medium_insect_order",
    "small_insect_order",
    "chunk_number",
    "copyright_license",
    "copyright_holder",
    "copyright_institution",
    "copyright_contact",
    "photographer",
    "author",
)


@dataclass(frozen=True)
class _BioscanLabel:
    look: Signature
    ranks: tuple[str, ...]  # order, family, genus (genus may be "not_classified")
    species: str  # binomial or not_classified
    role: str = ""


def _bioscan_labels() -> list[tuple[_BioscanLabel, int, str, dict | None]]:
    labels = []
    for s in SPECIES:
        if species.BIOSCAN in s.sources:
            n = RARE_PER_SOURCE if s.role == RARE else BIOSCAN_PER_SPECIES
            labels.append(
                (
                    _BioscanLabel(species_look(s), (s.order, s.family, s.genus), s.name, s.role),
                    n,
                    "",
                    None,
                )
            )
    cec = signature("Animalia", "Cecidomyiidae", "", None)
    labels.append(
        (
            _BioscanLabel(cec, ("Diptera", "Cecidomyiidae", "not_classified"), "not_classified"),
            6,
            "family_only",
            {"status": "kept", "family": "Cecidomyiidae", "genus": None, "species": None},
        )
    )
    meg = genus_look("Megaselia", "Animalia")
    labels.append(
        (
            _BioscanLabel(meg, ("Diptera", "Phoridae", "Megaselia"), "not_classified"),
            4,
            "genus_only",
            {"status": "kept", "family": "Phoridae", "genus": "Megaselia", "species": None},
        )
    )
    return labels


def _nucleotides(ident: str, n: int = 658) -> str:
    rng = np.random.default_rng(stable_hash64("nuc", ident) >> 1)
    return "".join(np.array(list("ACGT"))[rng.integers(0, 4, n)])


def build_bioscan(w: World) -> None:
    """The metadata TSV and the two image zips (rows alternate between the zips)."""
    rows, zips = [], {1: {}, 2: {}}
    k = 0
    for label, n, trouble, outcome in _bioscan_labels():
        bin_no = stable_hash64("bin", label.species, *label.ranks)
        bin_uri = f"BOLD:A{'CDEFGHJKLMNPQRSTUVWXYZ'[bin_no % 22]}{bin_no % 9000 + 1000}"
        extra = 1 if label.species == "Musca domestica" else 0
        for j in range(n + extra):
            k += 1
            ident = f"bioscan/{label.species}/{label.ranks[1]}/{j}"
            sampleid = f"BIOUG{68000 + k // 96:05d}-{'ABCDEFGH'[(k // 12) % 8]}{k % 12 + 1:02d}"
            processid = f"BSCAN{1000 + k}-22"
            image_file = f"{sampleid}.jpg"
            chunk = 1 + k % 2
            order, family, genus = label.ranks
            name = next(x for x in (label.species, genus, family) if x != "not_classified")
            diptera = order == "Diptera"
            part = ("train", "validation", "test")[stable_hash64("split", processid) % 3]
            rows.append(
                (
                    sampleid,
                    processid,
                    bin_uri,
                    name,
                    "Arthropoda",
                    "Insecta",
                    order,
                    family,
                    "not_classified",
                    "not_classified",
                    genus,
                    label.species,
                    "not_classified",
                    _nucleotides(ident),
                    image_file,
                    part if diptera else "no_split",
                    part if diptera else "no_split",
                    part if diptera else "no_split",
                    part,
                    part,
                    part,
                    str(chunk),
                    "CreativeCommons - Attribution Non-Commercial Share-Alike",
                    "CBG Photography Group",
                    "Centre for Biodiversity Genomics",
                    "ccdbcurator@uoguelph.ca",
                    "CBG Photography Group",
                    "CBG Photography Group",
                )
            )
            key = f"bioscan/{processid}"
            if j == n:  # the extra row: listed in the TSV, image in no zip
                w.expect(
                    key, "missing_in_archive", {"status": "failed", "reason": "missing_in_archive"}
                )
                continue
            pic = w.picture(
                ident, label.look, w.size(ident, aspect=4 / 3), "train", style="specimen"
            )
            zips[chunk][f"part{chunk}/{image_file}"] = pic.data
            if outcome is not None:
                w.expect(key, trouble, outcome)
            elif label.role == RARE:
                w.expect(
                    key, "held_out_species", {"status": "removed", "reason": "held_out_species"}
                )
    w.files["bioscan/BIOSCAN_Insect_Dataset_metadata.tsv"] = tsv_bytes(BIOSCAN_COLUMNS, rows)
    for chunk, members in zips.items():
        w.files[f"bioscan/BIOSCAN_images_part{chunk}.zip"] = zip_bytes(members)
    w.counts["bioscan_rows"] = len(rows)
