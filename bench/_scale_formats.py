"""The scale world's files in each source's real format (bench/scale_world.py calls these):
iNat21 tar.gz + COCO JSON, BIOSCAN TSV + zips, EOL manifest chunks + pages + mirror folder,
a GBIF-style backbone with filler rows, Rare Species-style evaluation sets.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from bench._scale_plan import (
    BIOSCAN,
    EOL,
    EOL_PREFIX,
    INAT,
    MISSING,
    NOT_FOUND,
    RANK_KEYS,
    UNRESOLVED,
    Plan,
    Renderer,
    epithet,
    species_ranks,
    stable_uuid,
    word,
)
from treeoflife.io import tar_member_info
from treeoflife.sample.backbone import (
    KINGDOM_KEYS,
    REAL_BACKBONE,
    TAXON_COLUMNS,
    VERNACULAR_COLUMNS,
)
from treeoflife.sample.bioscan import BIOSCAN_COLUMNS
from treeoflife.sample.builder import OWNERS
from treeoflife.sample.eol import EOL_MANIFEST_HEADER, EOL_PAGES_HEADER, LICENSES
from treeoflife.sample.evalsets import EVALSET_HEADER

# ------------------------------------------------------------------------------ writers


def _csv(path: Path, header, rows) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _names(plan: Plan, sp: int) -> tuple[tuple[str, ...], str, str]:
    """(kingdom..genus, epithet, common name or '') of a species."""
    common = f"{word(sp + 7)} {word(int(plan.genus[sp]))}" if sp % 2 == 0 else ""
    return species_ranks(int(plan.genus[sp])), epithet(sp), common


def write_inat21(out: Path, plan: Plan, render: Renderer) -> None:
    folder = out / "inat21"
    folder.mkdir(parents=True, exist_ok=True)
    ids = np.flatnonzero(plan.img_source == INAT)
    categories = []
    for sp in range(plan.species):
        ranks, ep, common = _names(plan, sp)
        categories.append(
            {
                "id": sp,
                "name": f"{ranks[5]} {ep}",
                "common_name": common or f"{ranks[5]} {ep}",
                "supercategory": ranks[2],
                **dict(zip(RANK_KEYS, ranks, strict=True)),
                "specific_epithet": ep,
                "image_dir_name": f"{sp:05d}_{'_'.join(ranks)}_{ep}",
            }
        )
    for split, chosen in (("train", ids[ids % 10 != 9]), ("val", ids[ids % 10 == 9])):
        images, annotations = [], []
        tmp = folder / f".{split}.tar.gz.tmp"
        with (
            open(tmp, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=1) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
        ):
            for i, data in zip(chosen, render.images(chosen), strict=True):
                sp = int(plan.img_species[i])
                name = f"{split}/{categories[sp]['image_dir_name']}/{stable_uuid('inat', i)}.jpg"
                n = int(i) * 2654435761 % 1_000_003
                images.append(
                    {
                        "id": int(i) + 1,
                        "width": 0,
                        "height": 0,
                        "file_name": name,
                        "license": n % 6 + 1,
                        "rights_holder": OWNERS[n % len(OWNERS)],
                        "date": f"2019-{n % 12 + 1:02d}-{n % 28 + 1:02d} 10:{n % 60:02d}:00+00:00",
                        "latitude": round(40 + (n % 2000) / 100, 5),
                        "longitude": round(-10 + (n % 3000) / 100, 5),
                        "location_uncertainty": n % 100 + 5,
                    }
                )
                with Image.open(io.BytesIO(data)) as im:
                    images[-1]["width"], images[-1]["height"] = im.size
                annotations.append({"id": int(i) + 1, "image_id": int(i) + 1, "category_id": sp})
                if plan.img_trouble[i] != MISSING:
                    tar.addfile(tar_member_info(name, len(data)), io.BytesIO(data))
        os.replace(tmp, folder / f"{split}.tar.gz")
        doc = {
            "info": {"year": 2021, "version": "2021", "description": f"scale world ({split})"},
            "images": images,
            "categories": categories,
            "annotations": annotations,
            "licenses": [{"id": k + 1, "name": f"license {k + 1}", "url": ""} for k in range(6)],
        }
        (folder / f"{split}.json").write_text(json.dumps(doc))


def _nucleotides() -> str:
    rng = np.random.default_rng(12345)
    return "".join(np.array(list("ACGT"))[rng.integers(0, 4, 4096)])


def write_bioscan(out: Path, plan: Plan, render: Renderer) -> None:
    folder = out / "bioscan"
    folder.mkdir(parents=True, exist_ok=True)
    ids = np.flatnonzero(plan.img_source == BIOSCAN)
    per_zip = plan.spec.images_per_zip
    nuc = _nucleotides()
    rows = []
    zf = None
    for j, (i, data) in enumerate(zip(ids, render.images(ids), strict=True)):
        chunk = j // per_zip + 1
        if j % per_zip == 0:
            if zf is not None:
                zf.close()
            zf = zipfile.ZipFile(folder / f"BIOSCAN_images_part{chunk}.zip", "w")
        sp = int(plan.img_species[i])
        ranks, ep, _ = _names(plan, sp)
        sampleid, processid = f"BIOUG{int(i):08d}", f"BSCAN{int(i):08d}-22"
        image_file = f"{sampleid}.jpg"
        part = ("train", "validation", "test")[int(i) % 3]
        off = int(i) % 3000
        rows.append(
            (
                sampleid, processid, f"BOLD:A{word(sp).upper()}", f"{ranks[5]} {ep}",
                "Arthropoda", "Insecta", ranks[3], ranks[4], "not_classified", "not_classified",
                ranks[5], f"{ranks[5]} {ep}", "not_classified", nuc[off : off + 658], image_file,
                part, part, part, part, part, part, str(chunk),
                "CreativeCommons - Attribution Non-Commercial Share-Alike",
                "CBG Photography Group", "Centre for Biodiversity Genomics",
                "ccdbcurator@uoguelph.ca", "CBG Photography Group", "CBG Photography Group",
            )
        )  # fmt: skip
        if plan.img_trouble[i] != MISSING:
            info = zipfile.ZipInfo(f"part{chunk}/{image_file}", date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system, info.external_attr = 3, (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, data)
    if zf is not None:
        zf.close()
    with (folder / "BIOSCAN_Insect_Dataset_metadata.tsv").open("w", encoding="utf-8") as f:
        f.write("\t".join(BIOSCAN_COLUMNS) + "\n")
        f.writelines("\t".join(r) + "\n" for r in rows)


def _synonym_genus(sp: int) -> str:
    return word(1_000_000 + sp).capitalize() + "ia"


def write_eol(out: Path, plan: Plan, render: Renderer) -> None:
    folder = out / "eol"
    mirror = folder / "mirror"
    mirror.mkdir(parents=True, exist_ok=True)
    ids = np.flatnonzero(plan.img_source == EOL)
    rows = []
    n_unres = 0
    for i, data in zip(ids, render.images(ids), strict=True):
        t = int(plan.img_trouble[i])
        sp = int(plan.img_species[i])
        if t == UNRESOLVED:
            page = 9_000_000 + n_unres // 10
            n_unres += 1
        else:
            page = 1_000_000 + sp
        cid = 30_000_000 + int(i)
        h = hashlib.blake2b(str(cid).encode(), digest_size=2).hexdigest()
        rest = f"{h[:2]}/{h[2:]}/{cid}.jpg"
        n = int(i) * 2654435761 % 1_000_003
        rows.append(
            (
                str(cid),
                str(page),
                f"https://inaturalist-open-data.s3.amazonaws.com/photos/{cid}/original.jpg",
                EOL_PREFIX + rest,
                LICENSES[n % len(LICENSES)],
                OWNERS[n % len(OWNERS)],
            )
        )
        if t != NOT_FOUND:
            path = mirror / rest
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    per = plan.spec.rows_per_manifest
    for k in range(max(1, -(-len(rows) // per))):
        chunk = rows[k * per : (k + 1) * per]
        _csv(folder / f"media_manifest_{k + 1}.csv", EOL_MANIFEST_HEADER, chunk)
    pages = []
    for sp in range(plan.species):
        ranks, ep, common = _names(plan, sp)
        genus = _synonym_genus(sp) if plan.synonym[sp] else ranks[5]
        pages.append((str(1_000_000 + sp), f"{genus} {ep}", *ranks[:5], genus, common))
    for k in range(-(-n_unres // 10)):
        pages.append((str(9_000_000 + k), f"Zzyx{word(k)} blimp{word(k)}", *[""] * 7))
    _csv(folder / "pages.csv", EOL_PAGES_HEADER, pages)


def _taxon(tid, parent, accepted, canonical, generic, ep, rank, status, ranks, auth="") -> str:
    cols = list(ranks) + [""] * (6 - len(ranks))
    sci = f"{canonical} {auth}".strip()
    return "\t".join(
        (
            str(tid), "7ddf754f-d193-4cc9-b351-99906754a03b", str(parent or ""),
            str(accepted or ""), "", sci, auth, canonical, generic, ep, "", rank, "", "", status,
            "", "", *cols,
        )
    ) + "\n"  # fmt: skip


def write_backbone(out: Path, plan: Plan) -> int:
    """Taxon.tsv (+ vernacular names): the world's taxa, synonyms, then filler rows."""
    folder = out / "backbone"
    folder.mkdir(parents=True, exist_ok=True)
    ids: dict[tuple[str, ...], int] = {}
    next_id = [100_000_001]
    lines: list[str] = []
    rank_names = ("kingdom", "phylum", "class", "order", "family", "genus")

    def taxon_id(path: tuple[str, ...]) -> int:
        if path not in ids:
            parent = taxon_id(path[:-1]) if len(path) > 1 else None
            if len(path) == 1:
                ids[path] = KINGDOM_KEYS[path[0]]
            else:
                ids[path] = next_id[0]
                next_id[0] += 1
            name = path[-1]
            rank = rank_names[len(path) - 1]
            auth = "Linnaeus, 1758" if rank == "genus" else ""
            lines.append(
                _taxon(ids[path], parent, None, name, name, "", rank, "accepted", path, auth)
            )
        return ids[path]

    vernacular = []
    families: dict[tuple[str, ...], None] = {}
    for sp in range(plan.species):
        ranks, ep, common = _names(plan, sp)
        gid = taxon_id(ranks)
        families.setdefault(ranks[:5])
        if not plan.in_backbone[sp]:
            continue
        sid = next_id[0]
        next_id[0] += 1
        name = f"{ranks[5]} {ep}"
        lines.append(_taxon(sid, gid, None, name, ranks[5], ep, "species", "accepted", ranks,
                            "(Smith, 1901)"))  # fmt: skip
        if plan.synonym[sp]:
            syn = _synonym_genus(sp)
            lines.append(_taxon(next_id[0], gid, sid, f"{syn} {ep}", syn, ep, "species",
                                "synonym", ranks, "Jones, 1850"))  # fmt: skip
            next_id[0] += 1
        if common:
            vernacular.append(f"{sid}\t{common}\ten\t\t\t\t\tCatalogue of Life\n")
    fill = max(0, plan.spec.backbone_rows - len(lines))
    families_list = list(families)
    genus_id, genus_name, fam = 0, "", ()
    for j in range(fill):
        if j % 20 == 0:
            fam = families_list[(j // 20) % len(families_list)]
            genus_name = word(3_000_000 + j // 20).capitalize() + "ella"
            genus_id = next_id[0]
            lines.append(_taxon(genus_id, ids[fam], None, genus_name, genus_name, "", "genus",
                                "accepted", (*fam, genus_name)))  # fmt: skip
        else:
            ep = word(j) + "i"
            lines.append(_taxon(next_id[0], genus_id, None, f"{genus_name} {ep}", genus_name, ep,
                                "species", "accepted", (*fam, genus_name)))  # fmt: skip
        next_id[0] += 1
    with (folder / "Taxon.tsv").open("w", encoding="utf-8") as f:
        f.write("\t".join(TAXON_COLUMNS) + "\n")
        f.writelines(lines)
    with (folder / "VernacularName.tsv").open("w", encoding="utf-8") as f:
        f.write("\t".join(VERNACULAR_COLUMNS) + "\n")
        f.writelines(vernacular)
    for name in ("meta.xml", "eml.xml"):
        shutil.copy(REAL_BACKBONE / name, folder / name)
    return len(lines)


def write_evalsets(out: Path, plan: Plan, render: Renderer) -> None:
    ids = np.arange(len(plan.eval_species))
    rows: dict[str, list] = {"rare_species": [], "seen_species": []}
    for e, data in zip(ids, render.evals(ids), strict=True):
        name = "rare_species" if plan.eval_rare[e] else "seen_species"
        sp = int(plan.eval_species[e])
        ranks, ep, common = _names(plan, sp)
        filepath = f"{ranks[5]}_{ep}/{stable_uuid('eval', e)}.jpg"
        path = out / "evalsets" / name / filepath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows[name].append((*ranks, ep, common, filepath))
    for name, r in rows.items():
        (out / "evalsets" / name).mkdir(parents=True, exist_ok=True)
        r.sort(key=lambda x: x[-1])
        _csv(out / "evalsets" / name / "metadata.csv", EVALSET_HEADER, r)
