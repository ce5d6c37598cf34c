"""The sample world in the published TreeOfLife-10M layout, with trouble on purpose.

Written from the generated sample (`generate.py`) into `<sample>/published/`:
`metadata/catalog.csv`, `metadata/licenses.csv` (the dataset card's columns) and
`dataset/EOL/image_set_0N.tar.gz` (`<treeoflife_id>.jpg` members), plus `expected.json`, the
outcome every planted trouble must have:

- an EOL image whose published md5 no longer matches its bytes (`md5_mismatch`);
- an EOL image whose full-size URL is gone but whose medium source URL serves it (found);
- an EOL image whose both URLs are gone (`url_gone`; still in the image sets);
- an EOL image missing from the image sets (`file_absent` when read from them);
- an iNat21 row whose file the user's archive does not hold (`file_absent`);
- a published family the taxonomy stage disagrees with (in the label diff).

Every row of catalog.csv is a pure function of the sample (ids are UUID5s of the keys).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import uuid
from pathlib import Path

from treeoflife.io import stable_hash64, write_bytes_atomic, write_text_atomic
from treeoflife.sample.eol import EOL_MEDIA_PREFIX
from treeoflife.sample.file_formats import targz_bytes
from treeoflife.sample.species import SPECIES_BY_NAME
from treeoflife.sources.published.plan import CATALOG_COLUMNS, LICENSE_COLUMNS

log = logging.getLogger(__name__)

PUBLISHED_VERSION = "1"
_NS = uuid.UUID("0d7c55a2-4f4e-4b8e-9a51-6a3f2b1c9e77")
GONE_PREFIX = EOL_MEDIA_PREFIX + "gone/"  # the mirror has no such folder: 404 / not found
WRONG_FAMILY = "Wrongidae"
IMAGE_SETS = 2
RANK6 = ("kingdom", "phylum", "class", "order", "family", "genus")


def published_id(key: str) -> str:
    return str(uuid.uuid5(_NS, key))


def _split(key: str) -> tuple[str, bool]:
    """(train | val, also listed as train_small) -- a pure function of the key."""
    h = stable_hash64("published-split", key)
    if h % 10 == 0:
        return "val", False
    return "train", h % 3 == 0


def _csv_text(header, rows) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _empty() -> dict:
    return dict.fromkeys(CATALOG_COLUMNS, "")


def _eol_rows(sample: Path) -> list[dict]:
    pages = {}
    with open(sample / "eol" / "pages.csv", newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            pages[r["page_id"]] = r
    rows, seen = [], set()
    for manifest in sorted((sample / "eol").glob("media_manifest_*.csv")):
        with open(manifest, newline="", encoding="utf-8", errors="replace") as fh:
            for r in csv.DictReader(fh):
                content, page = (
                    (r.get("EOL content ID") or "").strip(),
                    (r.get("EOL page ID") or "").strip(),
                )
                if not (content.isdigit() and page.isdigit()) or (content, page) in seen:
                    continue  # the sample's malformed and duplicate rows are not published
                seen.add((content, page))
                names = dict(pages.get(page, {}))
                true = SPECIES_BY_NAME.get(names.get("scientific_name") or "")
                if true is not None:  # as BioCLIP's labelling gave it: all seven ranks
                    names.update(zip(RANK6, true.ranks, strict=True))
                sci = (names.get("scientific_name") or "").split(" ", 1)
                url = r.get("EOL Full-Size Copy URL") or ""
                local = sample / "eol" / "mirror" / url[len(EOL_MEDIA_PREFIX) :]
                data = (
                    local.read_bytes()
                    if url.startswith(EOL_MEDIA_PREFIX) and local.is_file()
                    else None
                )
                rows.append({
                    **_empty(), "key": f"eol/{content}_{page}", "eol_content_id": content,
                    "eol_page_id": page, **{k: names.get(k) or "" for k in RANK6},
                    "species": sci[1] if len(sci) == 2 else "",
                    "common": names.get("common_name") or names.get("scientific_name") or "",
                    "url": url, "medium": r.get("Medium Source URL") or "", "data": data,
                    "license": r.get("License Name") or "", "owner": r.get("Copyright Owner") or "",
                })  # fmt: skip
    return rows


def _inat_rows(sample: Path) -> list[dict]:
    ann = json.loads((sample / "inat21" / "train.json").read_text())
    cats = {c["id"]: c for c in ann["categories"]}
    cat_of = {a["image_id"]: a["category_id"] for a in ann["annotations"]}
    rows = []
    for image in ann["images"]:
        c = cats.get(cat_of.get(image["id"]))
        if c is None:
            continue
        base = image["file_name"].rsplit("/", 1)[-1]
        rows.append({
            **_empty(), "key": "inat21/" + base.rsplit(".", 1)[0], "inat21_filename": base,
            "inat21_cls_name": c["image_dir_name"], "inat21_cls_num": str(c["id"]),
            **{k: c.get(k) or "" for k in ("kingdom", "phylum", "class", "order", "family",
                                            "genus")},
            "species": c.get("specific_epithet") or "", "common": c.get("common_name") or "",
        })  # fmt: skip
    return rows


def _bioscan_rows(sample: Path) -> list[dict]:
    rows = []
    path = sample / "bioscan" / "BIOSCAN_Insect_Dataset_metadata.tsv"
    with open(path, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh, delimiter="\t"):

            def get(col, r=r):
                v = (r.get(col) or "").strip()
                return "" if v == "not_classified" else v

            genus, species = get("genus"), get("species")
            epithet = species.split(" ", 1)[1] if species.startswith(genus + " ") else species
            ranks = ["Animalia", get("phylum"), get("class"), get("order"), get("family"), genus]
            common = f"{genus} {epithet}".strip() if genus else " ".join(x for x in ranks if x)
            rows.append({
                **_empty(), "key": "bioscan/" + r["image_file"].rsplit(".", 1)[0],
                "bioscan_part": r["chunk_number"], "bioscan_filename": r["image_file"],
                **dict(zip(("kingdom", "phylum", "class", "order", "family", "genus"), ranks,
                           strict=True)),
                "species": epithet, "common": common,
            })  # fmt: skip
    return rows


def build_published(sample: Path) -> tuple[dict[str, bytes], dict]:
    """(relative path -> bytes, expected outcomes) of the published layout of `sample`."""
    eol, inat, bioscan = _eol_rows(sample), _inat_rows(sample), _bioscan_rows(sample)
    for row in eol + inat + bioscan:
        row["treeoflife_id"] = published_id(row["key"])
    eol.sort(key=lambda r: r["treeoflife_id"])
    good = [r for r in eol if r["data"] is not None and r["data"][:2] == b"\xff\xd8"]
    changed, fallback, gone, unpacked = good[0], good[1], good[2], good[3]
    expected = {
        changed["treeoflife_id"]: {"trouble": "md5_changed", "reason": "md5_mismatch"},
        fallback["treeoflife_id"]: {"trouble": "full_size_url_gone", "status": "ok"},
        gone["treeoflife_id"]: {"trouble": "url_gone", "reason": "not_found"},
        unpacked["treeoflife_id"]: {"trouble": "absent_from_image_sets", "reason": "file_absent"},
    }
    fallback["medium"] = fallback["url"]
    fallback["url"] = GONE_PREFIX + fallback["url"][len(EOL_MEDIA_PREFIX) :]
    gone["medium"] = GONE_PREFIX + "medium/" + gone["url"][len(EOL_MEDIA_PREFIX) :]
    gone["url"] = GONE_PREFIX + gone["url"][len(EOL_MEDIA_PREFIX) :]
    wrong = next(r for r in good[4:] if r["family"] and r["species"])
    expected[wrong["treeoflife_id"]] = {
        "trouble": "label_disagrees", "rank": "family", "published": WRONG_FAMILY,
        "resolved": wrong["family"],
    }  # fmt: skip
    wrong["family"] = WRONG_FAMILY
    absent = {**inat[0], "key": "inat21/00000000-0000-4000-8000-00000000dead"}
    absent["inat21_filename"] = "00000000-0000-4000-8000-00000000dead.jpg"
    absent["treeoflife_id"] = published_id(absent["key"])
    inat.append(absent)
    expected[absent["treeoflife_id"]] = {"trouble": "inat21_file_absent", "reason": "file_absent"}

    catalog, licenses, sets = [], [], [{} for _ in range(IMAGE_SETS)]
    for row in sorted(eol + inat + bioscan, key=lambda r: r["treeoflife_id"]):
        split, small = _split(row["key"])
        values = [row.get(c, "") for c in CATALOG_COLUMNS[1:]]
        catalog.append([split, *values])
        if small:
            catalog.append(["train_small", *values])
        if row in eol:
            data = row["data"]
            md5 = hashlib.md5(data).hexdigest() if data else ""
            if row is changed:
                md5 = hashlib.md5(b"the image as it was published" + md5.encode()).hexdigest()
            licenses.append([row["treeoflife_id"], row["eol_content_id"], row["eol_page_id"], md5,
                             row["medium"], row["url"], row["license"], row["owner"] or
                             "not provided", "", "not provided"])  # fmt: skip
            if data is not None and row is not unpacked:
                i = stable_hash64("image-set", row["treeoflife_id"]) % IMAGE_SETS
                sets[i][f"{row['treeoflife_id']}.jpg"] = data
    files = {
        "metadata/catalog.csv": _csv_text(CATALOG_COLUMNS, catalog).encode(),
        "metadata/licenses.csv": _csv_text(LICENSE_COLUMNS, licenses).encode(),
    }
    for i, members in enumerate(sets):
        files[f"dataset/EOL/image_set_{i + 1:02d}.tar.gz"] = targz_bytes(members)
    totals = {
        "eol": len(eol), "inat21": len(inat), "bioscan": len(bioscan),
        "images": len(eol) + len(inat) + len(bioscan),
    }  # fmt: skip
    return files, {"version": PUBLISHED_VERSION, "totals": totals, "rows": expected}


def write_published_world(sample: Path) -> dict:
    """Write `<sample>/published/` (a no-op when its marker matches the sample's)."""
    out = Path(sample) / "published"
    source = (Path(sample) / ".complete").read_text()
    marker = out / ".complete"
    stamp = {"version": PUBLISHED_VERSION, "sample": hashlib.sha1(source.encode()).hexdigest()}
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        return json.loads((out / "expected.json").read_text())
    files, expected = build_published(Path(sample))
    marker.unlink(missing_ok=True)
    for rel, data in sorted(files.items()):
        write_bytes_atomic(out / rel, data)
    write_text_atomic(out / "expected.json", json.dumps(expected, indent=1, sort_keys=True) + "\n")
    write_text_atomic(marker, json.dumps(stamp))
    log.info("published layout of the sample written to %s: %s", out, expected["totals"])
    return expected
