"""The iNat21 look-alike: train/val annotation JSON and image archives, with the exact
eval copy and the image missing from its archive."""

from __future__ import annotations

import json

from treeoflife.io import stable_hash64
from treeoflife.sample import species
from treeoflife.sample.builder import (
    OWNERS,
    RARE_PER_SOURCE,
    Picture,
    World,
    species_look,
    stable_uuid,
)
from treeoflife.sample.file_formats import targz_bytes
from treeoflife.sample.species import RARE, SPECIES, SPECIES_BY_NAME, Species

INAT_TRAIN, INAT_VAL = 7, 2


def _inat_categories() -> list[Species]:
    cats = [s for s in SPECIES if species.INAT in s.sources]
    return sorted(cats, key=lambda s: (*s.ranks, s.epithet))


def _supercategory(s: Species) -> str:
    if s.kingdom == "Plantae":
        return "Plants"
    if s.kingdom == "Fungi":
        return "Fungi"
    return {
        "Insecta": "Insects",
        "Aves": "Birds",
        "Mammalia": "Mammals",
        "Amphibia": "Amphibians",
        "Gastropoda": "Mollusks",
    }.get(s.cls, "Animalia")


def build_inat21(w: World, exact_copy: tuple[str, Picture]) -> None:
    """train/val JSON and archives; `exact_copy` is an eval picture put into train as is."""
    cats = _inat_categories()
    categories = []
    for cid, s in enumerate(cats):
        dir_name = f"{cid:05d}_{'_'.join(s.ranks)}_{s.epithet}"
        categories.append(
            {
                "id": cid,
                "name": s.name,
                "common_name": s.common_name or s.name,
                "supercategory": _supercategory(s),
                "kingdom": s.kingdom,
                "phylum": s.phylum,
                "class": s.cls,
                "order": s.order,
                "family": s.family,
                "genus": s.genus,
                "specific_epithet": s.epithet,
                "image_dir_name": dir_name,
            }
        )
    image_id = 0
    for split in ("train", "val"):
        images, annotations, members = [], [], {}

        def add(
            s: Species,
            cid: int,
            ident: str,
            data: bytes | None,
            size,
            trouble=None,
            outcome=None,
            _split=split,
            _images=images,
            _ann=annotations,
            _mem=members,
        ):
            nonlocal image_id
            image_id += 1
            file_uuid = stable_uuid("inat21", ident)
            file_name = f"{_split}/{categories[cid]['image_dir_name']}/{file_uuid}.jpg"
            n = stable_hash64("inat-meta", ident)
            _images.append(
                {
                    "id": image_id,
                    "width": size[0],
                    "height": size[1],
                    "file_name": file_name,
                    "license": int(n % 6) + 1,
                    "rights_holder": OWNERS[n % len(OWNERS)],
                    "date": f"2019-{n % 12 + 1:02d}-{n % 28 + 1:02d} 10:{n % 60:02d}:00+00:00",
                    "latitude": round(40 + (n % 2000) / 100, 5),
                    "longitude": round(-10 + (n % 3000) / 100, 5),
                    "location_uncertainty": int(n % 100) + 5,
                }
            )
            _ann.append({"id": image_id, "image_id": image_id, "category_id": cid})
            if data is not None:
                _mem[file_name] = data
            key = f"inat21/{file_uuid}"
            if trouble:
                w.expect(key, trouble, outcome)
            elif s.role == RARE:
                w.expect(
                    key, "held_out_species", {"status": "removed", "reason": "held_out_species"}
                )

        for cid, s in enumerate(cats):
            n = INAT_TRAIN if split == "train" else INAT_VAL
            if s.role == RARE:
                n = RARE_PER_SOURCE if split == "train" else 1
            for j in range(n):
                ident = f"inat21/{split}/{s.name}/{j}"
                size = w.size(ident, 96, 320)
                pic = w.picture(ident, species_look(s), size, "train")
                add(s, cid, ident, pic.data, size)
        if split == "train":
            vulpes = SPECIES_BY_NAME["Vulpes vulpes"]
            cid = cats.index(vulpes)
            add(
                vulpes,
                cid,
                "inat21/train/exact-copy",
                exact_copy[1].data,
                (exact_copy[1].image.width, exact_copy[1].image.height),
                "exact_eval_duplicate",
                {"status": "removed", "reason": "exact_eval_duplicate"},
            )
            bufo = SPECIES_BY_NAME["Bufo bufo"]
            add(
                bufo,
                cats.index(bufo),
                "inat21/train/missing",
                None,
                (240, 180),
                "missing_in_archive",
                {"status": "failed", "reason": "missing_in_archive"},
            )
        doc = {
            "info": {
                "year": 2021,
                "version": "2021",
                "description": f"iNat2021 look-alike ({split}), treeoflife sample world",
                "contributor": "treeoflife sample generator",
                "url": "",
                "date_created": "2021-03-01 00:00:00",
            },
            "images": images,
            "categories": categories,
            "annotations": annotations,
            "licenses": [
                {"id": i + 1, "name": name, "url": ""}
                for i, name in enumerate(
                    (
                        "Attribution-NonCommercial License",
                        "Attribution License",
                        "Attribution-ShareAlike License",
                        "Attribution-NonCommercial-ShareAlike License",
                        "Public Domain Dedication",
                        "No known copyright restrictions",
                    )
                )
            ],
        }
        w.files[f"inat21/{split}.json"] = json.dumps(doc, indent=1).encode()
        if split == "val":
            # iNat21 publishes its annotations as <split>.json.tar.gz; the sample config reads
            # val's that way (the plain .json stays for readers that look at the JSON itself)
            w.files["inat21/val.json.tar.gz"] = targz_bytes(
                {"val.json": w.files["inat21/val.json"]}
            )
        w.files[f"inat21/{split}.tar.gz"] = targz_bytes(members)
        w.counts[f"inat21_{split}"] = len(images)
