"""The sample world generator: determinism, idempotence, formats, and the trouble-makers."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import shutil
import stat
import tarfile
import zipfile
from collections import defaultdict
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.csv as pacsv
import pytest
from PIL import Image, ImageOps, UnidentifiedImageError

from tests.conftest import REAL_FIXTURES
from treeoflife import schemas
from treeoflife.sample import SAMPLE_VERSION, generate_sample
from treeoflife.sample.backbone import TAXON_COLUMNS
from treeoflife.sample.bioscan import BIOSCAN_COLUMNS
from treeoflife.sample.eol import EOL_MEDIA_PREFIX
from treeoflife.vocabulary import Reason

REAL_BACKBONE = REAL_FIXTURES / "gbif-backbone-archaea"
EVAL_HEADER = "kingdom,phylum,cls,order,family,genus,species,common_name,filepath"
MANIFEST_HEADER = (
    "EOL content ID,EOL page ID,Medium Source URL,EOL Full-Size Copy URL,License Name,"
    "Copyright Owner"
)


# --- helpers -------------------------------------------------------------------------------


def files_of(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read_csv(path: Path, delimiter: str = ",") -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        if delimiter == "\t":
            return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
        return list(csv.DictReader(fh))


def ref_phash(data: bytes) -> int:
    """Reference pHash (imagehash.phash): 32x32 grey Lanczos, DCT-II, 8x8 low block > median."""
    with Image.open(io.BytesIO(data)) as im:
        im = ImageOps.exif_transpose(im)
        grey = np.asarray(im.convert("L").resize((32, 32), Image.Resampling.LANCZOS), float)
    n = np.arange(32)
    dct = 2 * np.cos(np.pi * n[:, None] * (2 * n[None, :] + 1) / 64)
    low = (dct @ grey @ dct.T)[:8, :8]
    bits = (low > np.median(low)).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def dist(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


class Sources:
    """Every training row of the generated sources, by stable key."""

    def __init__(self, root: Path):
        self.root = root
        self.expected = {e["key"]: e for e in json.loads((root / "expected.json").read_text())}
        self.images: dict[str, bytes | None] = {}  # key -> bytes (None: no file)
        self.label: dict[str, str] = {}  # key -> verbatim scientific name
        self.inat_docs = {}
        for split in ("train", "val"):
            doc = json.loads((root / f"inat21/{split}.json").read_text())
            self.inat_docs[split] = doc
            with tarfile.open(root / f"inat21/{split}.tar.gz") as tar:
                members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
            cats = {c["id"]: c for c in doc["categories"]}
            by_image = {a["image_id"]: a["category_id"] for a in doc["annotations"]}
            for img in doc["images"]:
                key = "inat21/" + Path(img["file_name"]).stem
                self.images[key] = members.get(img["file_name"])
                self.label[key] = cats[by_image[img["id"]]]["name"]
        self.bioscan = read_csv(root / "bioscan/BIOSCAN_Insect_Dataset_metadata.tsv", "\t")
        zipped = {}
        for part in (1, 2):
            with zipfile.ZipFile(root / f"bioscan/BIOSCAN_images_part{part}.zip") as zf:
                zipped.update({n: zf.read(n) for n in zf.namelist() if not n.endswith("/")})
        for row in self.bioscan:
            key = f"bioscan/{row['processid']}"
            self.images[key] = zipped.get(f"part{row['chunk_number']}/{row['image_file']}")
            self.label[key] = row["species"]
        pages = {r["page_id"]: r for r in read_csv(root / "eol/pages.csv")}
        self.eol_rows = read_csv(root / "eol/media_manifest_1.csv") + read_csv(
            root / "eol/media_manifest_2.csv"
        )
        self.eol_path = {}
        for row in self.eol_rows:
            key = f"eol/{row['EOL content ID']}_{row['EOL page ID']}"
            url = row["EOL Full-Size Copy URL"]
            path = root / "eol/mirror" / url.removeprefix(EOL_MEDIA_PREFIX)
            self.eol_path[key] = path
            self.images[key] = path.read_bytes() if path.exists() else None
            self.label[key] = pages[row["EOL page ID"]]["scientific_name"]

    def by_trouble(self, trouble: str) -> list[str]:
        return sorted(k for k, e in self.expected.items() if e["trouble"] == trouble)

    def evalset(self, name: str) -> list[tuple[dict, bytes]]:
        folder = self.root / "evalsets" / name
        return [
            (r, (folder / r["filepath"]).read_bytes()) for r in read_csv(folder / "metadata.csv")
        ]


@pytest.fixture(scope="module")
def world0(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sample") / "sample"
    generate_sample(root, seed=0)
    return root


@pytest.fixture(scope="module")
def sources(world0) -> Sources:
    return Sources(world0)


# --- determinism and idempotence ------------------------------------------------------------


class RecordingProgress:
    def __init__(self):
        self.calls = []

    def start(self, stage, total):
        self.calls.append(("start", stage))

    def advance(self, n=1):
        self.calls.append(("advance", n))

    def finish(self):
        self.calls.append(("finish", None))


def test_same_seed_gives_identical_bytes_and_other_seed_other_images(world0, tmp_path):
    again = tmp_path / "again"
    progress = RecordingProgress()
    summary = generate_sample(again, seed=0, progress=progress)
    assert progress.calls[0] == ("start", "sample") and progress.calls[-1] == ("finish", None)
    assert sum(n for what, n in progress.calls if what == "advance") >= 400
    assert summary["version"] == SAMPLE_VERSION and summary["seed"] == 0
    first, second = files_of(world0), files_of(again)
    assert sorted(first) == sorted(second)
    assert [p for p in first if first[p] != second[p]] == []

    # A different seed, over a copy of the seed-0 folder with a stale mirror file and leftovers
    other = tmp_path / "other"
    shutil.copytree(world0, other)
    stale = other / "eol/mirror/stale.jpg"
    stale.write_bytes(b"old")
    (other / ".staging-999999").mkdir()
    generate_sample(other, seed=1)
    third = files_of(other)
    assert not stale.exists() and not (other / ".staging-999999").exists()
    assert json.loads((other / ".complete").read_text())["seed"] == 1
    images = [
        p for p in first if p.endswith((".tar.gz", ".zip")) or first[p].startswith(b"\xff\xd8")
    ]  # (the HTML served as .jpg stays)
    assert len(images) > 200 and all(first[p] != third[p] for p in images)
    assert set(first) == set(third)  # the same layout, only pixels differ


def test_second_call_does_not_rewrite(world0):
    before = {p: p.stat().st_mtime_ns for p in world0.rglob("*")}
    summary = generate_sample(world0, seed=0)
    after = {p: p.stat().st_mtime_ns for p in world0.rglob("*")}
    assert before == after
    assert summary == json.loads((world0 / ".complete").read_text())
    assert 300 <= summary["training_candidates"] <= 500


def test_fixed_archive_metadata(world0):
    for split in ("train", "val"):
        raw = (world0 / f"inat21/{split}.tar.gz").read_bytes()
        assert raw[4:8] == b"\0\0\0\0"  # gzip mtime
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw))) as tar:
            members = tar.getmembers()
        assert [m.name for m in members] == sorted(m.name for m in members)
        assert {(m.mtime, m.uid, m.gid, m.uname) for m in members} == {(0, 0, 0, "")}
    for part in (1, 2):
        with zipfile.ZipFile(world0 / f"bioscan/BIOSCAN_images_part{part}.zip") as zf:
            assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
            for info in zf.infolist():  # unix modes with the file type, as zip tools write
                mode = info.external_attr >> 16
                assert stat.S_ISDIR(mode) if info.is_dir() else stat.S_ISREG(mode)


# --- formats --------------------------------------------------------------------------------


def test_inat21_archives_match_coco_json(world0, sources):
    missing = set(sources.by_trouble("missing_in_archive"))
    cat_fields = {
        "id",
        "name",
        "common_name",
        "supercategory",
        "kingdom",
        "phylum",
        "class",
        "order",
        "family",
        "genus",
        "specific_epithet",
        "image_dir_name",
    }
    for split, doc in sources.inat_docs.items():
        assert {c["id"] for c in doc["categories"]} == set(range(len(doc["categories"])))
        for c in doc["categories"]:
            assert set(c) == cat_fields
            ranks = [
                c[r]
                for r in (
                    "kingdom",
                    "phylum",
                    "class",
                    "order",
                    "family",
                    "genus",
                    "specific_epithet",
                )
            ]
            assert c["image_dir_name"] == f"{c['id']:05d}_" + "_".join(ranks)
            assert c["name"] == f"{c['genus']} {c['specific_epithet']}"
        with tarfile.open(world0 / f"inat21/{split}.tar.gz") as tar:
            files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
        listed = {i["file_name"]: i for i in doc["images"]}
        assert set(files) <= set(listed)
        absent = {"inat21/" + Path(f).stem for f in set(listed) - set(files)}
        assert absent == (
            {k for k in missing if k.startswith("inat21/")} if split == "train" else set()
        )
        assert {a["image_id"] for a in doc["annotations"]} == {i["id"] for i in doc["images"]}
        for name, data in files.items():
            assert re.fullmatch(rf"{split}/\d{{5}}_[A-Za-z_]+/[0-9a-f-]{{36}}\.jpg", name)
            with Image.open(io.BytesIO(data)) as im:
                assert im.size == (listed[name]["width"], listed[name]["height"])
                assert max(im.size) <= 500 and min(im.size) >= 64


def test_bioscan_tsv_and_zips(world0, sources):
    header = (world0 / "bioscan/BIOSCAN_Insect_Dataset_metadata.tsv").read_text().split("\n")[0]
    assert tuple(header.split("\t")) == BIOSCAN_COLUMNS
    assert {
        "sampleid",
        "processid",
        "uri",
        "name",
        "nucraw",
        "image_file",
        "chunk_number",
        "copyright_license",
    } <= set(BIOSCAN_COLUMNS)
    rows = sources.bioscan
    assert {r["phylum"] for r in rows} == {"Arthropoda"} and {r["class"] for r in rows} == {
        "Insecta"
    }
    assert len({r["processid"] for r in rows}) == len(rows)
    for r in rows:
        if r["species"] != "not_classified":
            assert r["species"].split(" ")[0] == r["genus"] and " " in r["species"]
        assert r["chunk_number"] in ("1", "2")
    family_only = [r for r in rows if r["genus"] == "not_classified"]
    genus_only = [
        r for r in rows if r["genus"] != "not_classified" and r["species"] == "not_classified"
    ]
    assert family_only and genus_only
    missing = [k for k in sources.by_trouble("missing_in_archive") if k.startswith("bioscan/")]
    assert missing and all(sources.images[k] is None for k in missing)
    assert sum(v is None for k, v in sources.images.items() if k.startswith("bioscan/")) == 1


def test_eol_manifests_pages_and_mirror(world0, sources):
    for n in (1, 2):
        assert (world0 / f"eol/media_manifest_{n}.csv").read_text().split("\n")[
            0
        ] == MANIFEST_HEADER
    assert (world0 / "eol/pages.csv").read_text().split("\n")[0] == (
        "page_id,scientific_name,kingdom,phylum,class,order,family,genus,common_name"
    )
    pages = {r["page_id"] for r in read_csv(world0 / "eol/pages.csv")}
    for row in sources.eol_rows:
        assert row["EOL Full-Size Copy URL"].startswith(EOL_MEDIA_PREFIX)
        assert row["EOL page ID"] in pages
    absent = {k for k, v in sources.images.items() if k.startswith("eol/") and v is None}
    assert absent == set(sources.by_trouble("http_404"))
    mirror_files = {p for p in (world0 / "eol/mirror").rglob("*") if p.is_file()}
    assert mirror_files == {p for p in sources.eol_path.values() if p.exists()}


def test_backbone_is_a_gbif_archive_with_every_real_row(world0):
    taxon = world0 / "backbone/Taxon.tsv"
    table = pacsv.read_csv(
        taxon,
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
        convert_options=pacsv.ConvertOptions(
            column_types={c: "string" for c in TAXON_COLUMNS}, strings_can_be_null=True
        ),
    )
    assert table.column_names == list(TAXON_COLUMNS) and len(TAXON_COLUMNS) == 23
    con = duckdb.connect()
    n = con.execute(
        f"select count(*) from read_csv('{taxon}', delim='\t', quote='', "
        "header=true, all_varchar=true)"
    ).fetchall()[0][0]
    assert n == table.num_rows
    ours = set(taxon.read_text().splitlines())
    real = (REAL_BACKBONE / "Taxon.tsv").read_text().splitlines()
    assert set(real) <= ours
    for name in ("meta.xml", "eml.xml"):
        assert (world0 / "backbone" / name).read_bytes() == (REAL_BACKBONE / name).read_bytes()

    rows = table.to_pylist()
    by_id = {r["taxonID"]: r for r in rows}
    assert len(by_id) == len(rows)
    for r in rows:
        for ref in ("parentNameUsageID", "acceptedNameUsageID"):
            assert r[ref] is None or r[ref] in by_id, (r["taxonID"], ref)
        if r["taxonomicStatus"] in ("synonym", "homotypic synonym") and r["acceptedNameUsageID"]:
            acc = by_id[r["acceptedNameUsageID"]]
            assert [r[c] for c in ("kingdom", "family", "genus")] == [
                acc[c] for c in ("kingdom", "family", "genus")
            ]
    accepted_genera = defaultdict(set)
    for r in rows:
        if r["taxonRank"] == "genus" and r["taxonomicStatus"] == "accepted":
            accepted_genera[r["canonicalName"]].add(r["kingdom"])
    for genus in ("Prunella", "Morus", "Oenanthe"):
        assert accepted_genera[genus] == {"Animalia", "Plantae"}
    statuses = {
        r["taxonomicStatus"]
        for r in rows
        if r["taxonID"] not in {line.split("\t")[0] for line in real}
    }
    assert statuses == {"accepted", "synonym", "homotypic synonym"}
    species = {
        r["taxonID"]
        for r in rows
        if r["taxonRank"] == "species"
        and r["kingdom"] != "Archaea"
        and r["taxonomicStatus"] == "accepted"
    }
    assert all(
        by_id[t]["scientificName"].startswith(by_id[t]["canonicalName"] + " ") for t in species
    )
    vern = read_csv(world0 / "backbone/VernacularName.tsv", "\t")
    english = {v["taxonID"] for v in vern if v["language"] == "en"}
    assert english <= set(by_id) and len(english & species) >= 0.8 * len(species)


def test_evalsets_layout(world0, sources):
    seen_species = set()
    for name in ("rare_species", "seen_species"):
        folder = world0 / "evalsets" / name
        assert (folder / "metadata.csv").read_text().split("\n")[0] == EVAL_HEADER
        rows = sources.evalset(name)
        assert len(rows) >= 15
        names = {f"{r['genus']} {r['species']}" for r, _ in rows}
        assert all(" " not in r["species"] for r, _ in rows)
        if name == "seen_species":
            seen_species = names
        else:
            rare = names
    trained = set(sources.label.values())
    assert seen_species <= trained and rare <= trained and not rare & seen_species


# --- ground truth and trouble-makers --------------------------------------------------------


def test_expected_keys_exist_and_use_the_schema_vocabulary(sources):
    reasons = {
        Reason.EXACT_EVAL_DUPLICATE,
        Reason.NEAR_EVAL_DUPLICATE,
        Reason.HELD_OUT_SPECIES,
        Reason.TAXON_UNRESOLVED,
        Reason.TRUNCATED_IMAGE,
        Reason.NOT_AN_IMAGE,
        Reason.MISSING_IN_ARCHIVE,
    }
    assert sources.expected
    for key, e in sources.expected.items():
        assert key in sources.images, key
        assert e["expect"]["status"] in schemas.FINAL_STATUSES
        assert e["expect"].get("reason", "truncated_image") in reasons
    troubles = {e["trouble"] for e in sources.expected.values()}
    assert troubles >= {
        "cmyk_jpeg",
        "png_with_alpha",
        "exif_rotated",
        "truncated_jpeg",
        "html_as_image",
        "http_404",
        "synonym",
        "synonym_archaea",
        "homonym_genus",
        "name_with_authorship",
        "misspelt_name",
        "exact_eval_duplicate",
        "near_eval_duplicate",
        "held_out_species",
        "family_only",
        "genus_only",
        "unresolvable_name",
        "missing_in_archive",
    }
    homonyms = [sources.expected[k]["expect"] for k in sources.by_trouble("homonym_genus")]
    for genus in ("Prunella",):
        assert {h["kingdom"] for h in homonyms if h["genus"] == genus} == {"Animalia", "Plantae"}


def test_trouble_files_are_what_they_claim(sources):
    def one(trouble):
        keys = sources.by_trouble(trouble)
        assert len(keys) == 1, trouble
        return keys[0], sources.images[keys[0]]

    _, data = one("cmyk_jpeg")
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and im.mode == "CMYK"
    _, data = one("png_with_alpha")
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG" and im.mode == "RGBA"
        assert im.getchannel("A").getextrema()[0] < 255
    key, data = one("exif_rotated")
    with Image.open(io.BytesIO(data)) as im:
        assert im.getexif()[0x0112] == 6
        w, h = im.size
        assert w != h
    assert sources.expected[key]["expect"] == {"status": "kept", "width": h, "height": w}
    _, data = one("truncated_jpeg")
    assert data[:2] == b"\xff\xd8" and not data.endswith(b"\xff\xd9")
    with pytest.raises(OSError), Image.open(io.BytesIO(data)) as im:
        im.load()
    _, data = one("html_as_image")
    key = sources.by_trouble("html_as_image")[0]
    assert sources.eol_path[key].suffix == ".jpg"
    assert data.lstrip().lower().startswith(b"<!doctype html")
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(data))
    key, data = one("http_404")
    assert data is None and not sources.eol_path[key].exists()


def test_taxonomy_trouble_pages(sources):
    pages = {r["scientific_name"]: r for r in read_csv(sources.root / "eol/pages.csv")}
    assert pages["Quercus robur L."]["scientific_name"] == "Quercus robur L."
    arch = pages["Methanobacterium thermoflexum"]
    assert arch["kingdom"] == "Archaea"
    backbone = (sources.root / "backbone/Taxon.tsv").read_text()
    assert "\tMethanobacterium thermoflexum\t" in backbone
    assert "\tHelix aspersa\t" in backbone
    for key in sources.by_trouble("synonym"):
        assert sources.label[key] == "Helix aspersa"
    nonsense = [sources.label[k] for k in sources.by_trouble("unresolvable_name")]
    assert nonsense and all(n not in backbone for n in nonsense)
    fuzzy = {sources.label[k] for k in sources.by_trouble("misspelt_name")}
    assert fuzzy == {"Taraxacum oficinale"}


def test_held_out_species_are_listed_for_every_training_image(sources):
    rare = {f"{r['genus']} {r['species']}" for r, _ in sources.evalset("rare_species")}
    rare_keys = {k for k, name in sources.label.items() if name in rare}
    assert len(rare_keys) >= 10
    assert rare_keys == set(sources.by_trouble("held_out_species"))


def test_duplicates_of_eval_images_and_phash_separation(sources):
    evals = [data for name in ("rare_species", "seen_species") for _, data in sources.evalset(name)]
    eval_hashes = [ref_phash(d) for d in evals]
    (exact_key,) = sources.by_trouble("exact_eval_duplicate")
    assert sources.images[exact_key] in evals
    (near_key,) = sources.by_trouble("near_eval_duplicate")
    near = sources.images[near_key]
    assert near not in evals
    near_hash = ref_phash(near)
    closest = min(range(len(evals)), key=lambda i: dist(near_hash, eval_hashes[i]))
    assert dist(near_hash, eval_hashes[closest]) <= 8
    with Image.open(io.BytesIO(near)) as a, Image.open(io.BytesIO(evals[closest])) as b:
        assert a.width < b.width * 0.7  # resized, not a byte copy
    unrelated = 0
    for key, data in sources.images.items():
        if data is None or key in (exact_key, near_key):
            continue
        try:
            h = ref_phash(data)
        except (OSError, UnidentifiedImageError):
            continue
        unrelated += 1
        assert min(dist(h, e) for e in eval_hashes) >= 16, key
    assert unrelated >= 300


def test_seen_species_are_learnable_from_thumbnails(sources):
    """Nearest centroid on 16x16 thumbnails separates seen species well above chance.

    Pixel-wise centroids blur away (the organism moves), so the thumbnail's feature is the hue
    histogram of its coloured pixels; a CLIP's convolutions are position-free too.
    """

    def thumb(data: bytes) -> np.ndarray:
        """Hue histogram of the coloured pixels of a 16x16 thumbnail (position-free)."""
        with Image.open(io.BytesIO(data)) as im:
            hsv = np.asarray(im.convert("RGB").resize((16, 16)).convert("HSV"), int)
        hist = np.bincount(hsv[..., 0][hsv[..., 1] > 100] // 16, minlength=16).astype(float)
        return hist / max(hist.sum(), 1.0)

    by_label = defaultdict(list)
    for key, data in sources.images.items():
        name = sources.label[key]
        if data is None or name.count(" ") != 1 or key in sources.expected:
            continue
        by_label[name].append(thumb(data))
    labels = sorted(by_label)
    centroids = np.stack([np.mean(by_label[n], axis=0) for n in labels])
    evals = sources.evalset("seen_species")
    hits = 0
    for row, data in evals:
        pred = labels[int(np.argmin(((centroids - thumb(data)) ** 2).sum(axis=1)))]
        hits += pred == f"{row['genus']} {row['species']}"
    accuracy = hits / len(evals)
    assert accuracy >= 5 / len(labels), accuracy  # five times chance
