from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image

from tests.conftest import REAL_FIXTURES
from treeoflife.dedup import (
    EVAL_HASHES,
    PHASH_ALGO,
    find_eval_duplicates,
    hash_catalog,
    hash_evalset_rows,
    phash64,
)
from treeoflife.errors import InputError
from treeoflife.evalsets.layouts import read_layout
from treeoflife.io import ImageStoreWriter, store_member_name
from treeoflife.schemas import HASHES, SOURCE_CATALOG

REAL_EVALSETS = REAL_FIXTURES / "bioclip-evalsets"


class RecordingProgress:
    def __init__(self):
        self.started, self.advanced, self.finished = None, 0, False

    def start(self, stage, total):
        self.started = (stage, total)

    def advance(self, n=1):
        self.advanced += n

    def finish(self):
        self.finished = True


def write_store(tmp_path: Path, images: dict[str, bytes]) -> tuple[Path, pa.Table]:
    """An image-store tar plus a SOURCE_CATALOG table: ok rows for `images`, failed rows between."""
    root = tmp_path / "data"
    image_file = "images/eol/part-00000.tar"
    rows = []
    with ImageStoreWriter(root / image_file) as store:
        for i, (key, data) in enumerate(images.items()):
            offset, size = store.add(store_member_name(key), data)
            rows.append(
                {
                    "key": key,
                    "source": "eol",
                    "status": "ok",
                    "image_file": image_file,
                    "image_offset": offset,
                    "image_size": size,
                    "md5": hashlib.md5(data).hexdigest(),
                }
            )
            if i % 2 == 0:
                rows.append(
                    {
                        "key": f"eol/failed{i}",
                        "source": "eol",
                        "status": "failed",
                        "reason": "http_404",
                    }
                )
    return root, pa.Table.from_pylist(rows, schema=SOURCE_CATALOG)


@pytest.fixture
def store(tmp_path, make_jpeg):
    images = {f"eol/{100 + i}_{7 + i}": make_jpeg(i, (320, 240)) for i in range(7)}
    root, catalog = write_store(tmp_path, images)
    return root, catalog, images


def test_hash_catalog_rows_order_and_values(store):
    root, catalog, images = store
    progress = RecordingProgress()
    hashes = hash_catalog(catalog, root, workers=1, batch_size=3, progress=progress)
    assert hashes.schema.equals(HASHES)
    assert hashes.num_rows == len(images) < catalog.num_rows
    assert hashes["key"].to_pylist() == list(images)
    assert hashes["md5"].to_pylist() == [hashlib.md5(d).hexdigest() for d in images.values()]
    assert hashes["phash"].to_pylist() == [phash64(d) for d in images.values()]
    assert set(hashes["phash_algo"].to_pylist()) == {PHASH_ALGO}
    assert progress.started == ("hash images", len(images))
    assert progress.advanced == len(images) and progress.finished


def test_hash_catalog_process_pool_same_output(store):
    root, catalog, _ = store
    in_process = hash_catalog(catalog, root, workers=1, batch_size=2)
    pooled = hash_catalog(catalog, root, workers=2, batch_size=2)
    assert pooled.equals(in_process)


def test_hash_catalog_md5_mismatch_names_key(store):
    root, catalog, images = store
    bad_key = list(images)[3]
    md5 = [
        ("0" * 32 if k == bad_key else m)
        for k, m in zip(catalog["key"].to_pylist(), catalog["md5"].to_pylist(), strict=True)
    ]
    bad = catalog.set_column(catalog.schema.get_field_index("md5"), "md5", pa.array(md5))
    with pytest.raises(InputError, match=bad_key):
        hash_catalog(bad, root, workers=1)
    with pytest.raises(InputError, match=bad_key):
        hash_catalog(bad, root, workers=2, batch_size=2)


def test_hash_catalog_short_read_names_key(store):
    root, catalog, images = store
    last = list(images)[-1]
    sizes = [
        (s + 10_000 if k == last else s)
        for k, s in zip(catalog["key"].to_pylist(), catalog["image_size"].to_pylist(), strict=True)
    ]
    bad = catalog.set_column(
        catalog.schema.get_field_index("image_size"), "image_size", pa.array(sizes, pa.int64())
    )
    with pytest.raises(InputError, match=last):
        hash_catalog(bad, root, workers=1)


def test_hash_catalog_undecodable_ok_row_keeps_md5(tmp_path, make_jpeg):
    html = b"<html>not an image</html>"
    root, catalog = write_store(tmp_path, {"eol/1_1": make_jpeg(1), "eol/2_2": html})
    hashes = hash_catalog(catalog, root, workers=1)
    assert hashes["key"].to_pylist() == ["eol/1_1", "eol/2_2"]
    assert hashes["md5"].to_pylist()[1] == hashlib.md5(html).hexdigest()
    assert hashes["phash"].to_pylist()[1] is None
    assert hashes["phash"].to_pylist()[0] is not None


def test_hash_catalog_empty_and_only_failed(tmp_path):
    catalog = pa.Table.from_pylist(
        [{"key": "eol/1_1", "source": "eol", "status": "failed", "reason": "http_404"}],
        schema=SOURCE_CATALOG,
    )
    out = hash_catalog(catalog, tmp_path, workers=2)
    assert out.num_rows == 0 and out.schema.equals(HASHES)


def write_evalset(folder: Path, rows: list[dict]) -> Path:
    header = [
        "kingdom",
        "phylum",
        "cls",
        "order",
        "family",
        "genus",
        "species",
        "common_name",
        "filepath",
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metadata.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def hash_evalset(name: str, metadata: Path, root: Path | None = None):
    """Hash a Rare Species list's images, relative to `root` (default: the list's folder)."""
    rows = read_layout("rare_species", metadata)
    return hash_evalset_rows(name, rows, root if root is not None else metadata.parent)


def taxon(species: str, filepath: str) -> dict:
    return {
        "kingdom": "Animalia",
        "phylum": "Chordata",
        "cls": "Aves",
        "order": "Passeriformes",
        "family": "Corvidae",
        "genus": "Corvus",
        "species": species,
        "common_name": f"{species} crow",
        "filepath": filepath,
    }


def test_hash_evalset_records_failures_in_order(tmp_path, make_jpeg):
    folder = tmp_path / "rare_species"
    (folder / "images").mkdir(parents=True)
    good = {f"images/{i}.jpg": make_jpeg(50 + i) for i in range(3)}
    for rel, data in good.items():
        (folder / rel).write_bytes(data)
    (folder / "images/error.jpg").write_bytes(b"<!DOCTYPE html><html>Too Many Requests</html>")
    (folder / "images/a_folder.jpg").mkdir()
    rows = [
        taxon("corax", "images/0.jpg"),
        taxon("corone", "images/missing.jpg"),
        taxon("monedula", "images/1.jpg"),
        taxon("frugilegus", "images/error.jpg"),
        taxon("", ""),
        taxon("albus", "images/a_folder.jpg"),
        taxon("corax", "images/2.jpg"),
    ]
    table = hash_evalset("rare_species", write_evalset(folder, rows))

    assert table.schema.equals(EVAL_HASHES)
    assert table.num_rows == len(rows)
    assert table["eval_key"].to_pylist() == [r["filepath"] for r in rows]
    assert set(table["evalset"].to_pylist()) == {"rare_species"}
    assert table["status"].to_pylist() == ["ok", "failed", "ok", "failed", "failed", "failed", "ok"]
    assert table["reason"].to_pylist() == [
        None,
        "missing_file",
        None,
        "not_an_image",
        "missing_filepath",
        "unreadable",
        None,
    ]
    assert table["class"].to_pylist()[0] == "Aves"
    assert table["species"].to_pylist()[4] is None  # blank cells become null
    by_key = {r["eval_key"]: r for r in table.to_pylist()}
    for rel, data in good.items():
        assert by_key[rel]["md5"] == hashlib.md5(data).hexdigest()
        assert by_key[rel]["phash"] == phash64(data)
        assert by_key[rel]["phash_algo"] == PHASH_ALGO
    assert by_key["images/error.jpg"]["phash"] is None
    assert by_key["images/missing.jpg"]["md5"] is None


def test_hash_evalset_root_overrides_csv_folder(tmp_path, make_jpeg):
    images = tmp_path / "elsewhere"
    images.mkdir()
    (images / "x.jpg").write_bytes(make_jpeg(1))
    csv_path = write_evalset(tmp_path / "meta", [taxon("corax", "x.jpg")])
    assert hash_evalset("s", csv_path, root=images)["status"].to_pylist() == ["ok"]
    with pytest.raises(InputError, match=r"evaluation set s: none of its 1 images is usable"):
        hash_evalset("s", csv_path)


def test_hash_evalset_real_meta_album_list_with_no_images_is_an_error(tmp_path):
    """A real BioCLIP list (filepath,class; no ranks) with no image on disk: dedup against it
    would be void, so hashing stops, naming the set and the first missing paths."""
    csv_path = REAL_EVALSETS / "meta-album-FNG_Mini.csv"
    with open(csv_path, newline="", encoding="utf-8") as fh:
        expected = [row["filepath"] for row in csv.DictReader(fh)]
    rows = read_layout("meta_album", csv_path)
    with pytest.raises(InputError) as err:
        hash_evalset_rows("fungi", rows, tmp_path)
    message = str(err.value)
    assert f"evaluation set fungi: none of its {len(expected)} images" in message
    assert f"missing_file: {len(expected)}" in message and str(tmp_path) in message
    first = sorted(expected)[:3]  # the layout lists a set's images sorted by path
    assert all(repr(path) in message for path in first)


def test_some_missing_images_are_counted_and_warned(tmp_path, make_jpeg, caplog):
    folder = tmp_path / "rare"
    (folder / "img").mkdir(parents=True)
    (folder / "img" / "0.jpg").write_bytes(make_jpeg(0))
    rows = [taxon("corax", "img/0.jpg"), taxon("corone", "img/gone.jpg")]
    rows += [taxon("albus", "img/lost.jpg")]
    with caplog.at_level("WARNING"):
        table = hash_evalset("rare", write_evalset(folder, rows))
    assert table["status"].to_pylist() == ["ok", "failed", "failed"]
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "evaluation set rare: 2 of 3 images not usable (missing_file: 2)" in warning
    assert "img/gone.jpg, img/lost.jpg" in warning


def test_end_to_end_copies_of_eval_images_are_removed(tmp_path, make_photo, encode_image):
    """Eval images; training holds one byte-identical copy, one shrunk re-encode, one other."""
    folder = tmp_path / "evalset"
    (folder / "img").mkdir(parents=True)
    originals = {f"img/{i}.jpg": make_photo(200 + i) for i in range(4)}
    eval_bytes = {rel: encode_image(img, "JPEG", quality=90) for rel, img in originals.items()}
    for rel, data in eval_bytes.items():
        (folder / rel).write_bytes(data)
    evals = hash_evalset("rare", write_evalset(folder, [taxon("corax", r) for r in eval_bytes]))

    shrunk = originals["img/2.jpg"]
    shrunk = shrunk.resize(
        (int(shrunk.width * 0.6), int(shrunk.height * 0.6)), Image.Resampling.BICUBIC
    )
    train_images = {
        "eol/1_1": eval_bytes["img/1.jpg"],
        "eol/2_2": encode_image(shrunk, "JPEG", quality=70),
        "eol/3_3": encode_image(make_photo(999), "JPEG", quality=90),
    }
    root, catalog = write_store(tmp_path / "train", train_images)
    hashes = hash_catalog(catalog, root, workers=1)
    got = find_eval_duplicates(hashes, evals, 8).to_pylist()
    assert [(r["key"], r["reason"], r["eval_key"]) for r in got] == [
        ("eol/1_1", "exact_eval_duplicate", "img/1.jpg"),
        ("eol/2_2", "near_eval_duplicate", "img/2.jpg"),
    ]
    assert 0 <= got[1]["distance"] <= 8
