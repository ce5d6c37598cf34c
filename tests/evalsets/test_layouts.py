"""Evaluation sets in their shipped layouts, with generated images; real Meta-Album lists."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from tests.conftest import REAL_FIXTURES
from treeoflife.config import EvalSetConfig
from treeoflife.dedup import hash_evalset_rows
from treeoflife.errors import ConfigError, InputError
from treeoflife.evalsets.layouts import LAYOUTS, label_row, metadata_file, read_layout

REAL_EVALSETS = REAL_FIXTURES / "bioclip-evalsets"


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.mark.parametrize(
    ("label", "genus", "species", "common"),
    [
        ("Lamium_galeobdolon", "Lamium", "Lamium galeobdolon", None),
        ("Amanita excelsa Gonn. & Rabenh.", "Amanita", "Amanita excelsa Gonn. & Rabenh.", None),
        ("Lycorma delicatula", "Lycorma", "Lycorma delicatula", None),
        ("Piper Betle (Betel)", None, None, "Piper Betle (Betel)"),
        ("Corn Gray leaf spot", None, None, "Corn Gray leaf spot"),
        ("Tomato___Late_blight", None, None, "Tomato Late blight"),
        ("Apidae", None, None, "Apidae"),
    ],
)
def test_labels_that_are_binomials_fill_genus_and_species(label, genus, species, common):
    row = label_row("x.jpg", label)
    assert (row["genus"], row["species"], row["common_name"]) == (genus, species, common)
    assert row["class"] == label


@pytest.mark.parametrize(
    "path", sorted(REAL_EVALSETS.glob("meta-album-*.csv")), ids=lambda p: p.stem
)
def test_real_meta_album_lists_read_every_row(path):
    with open(path, newline="", encoding="utf-8") as fh:
        n = sum(1 for _ in csv.DictReader(fh))
    rows = read_layout("meta_album", path)
    assert len(rows) == n
    assert all(r["filepath"] and r["class"] for r in rows)
    assert [r["filepath"] for r in rows] == sorted(r["filepath"] for r in rows)


def test_meta_album_bioclip_list_hashes_generated_images(tmp_path, make_jpeg):
    """Real list, images generated in its layout; rows without a file are counted as failed."""
    src = REAL_EVALSETS / "meta-album-PLT_NET_Mini.csv"
    with open(src, newline="", encoding="utf-8") as fh:
        real = list(csv.DictReader(fh))[:6]
    listing = write_csv(
        tmp_path / "PLT_NET" / "metadata.csv",
        ["", "filepath", "class"],
        [[i, r["filepath"], r["class"]] for i, r in enumerate(real)],
    )
    for i, r in enumerate(real[:4]):
        target = listing.parent / r["filepath"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(make_jpeg(i))
    rows = read_layout("meta_album", listing)
    table = hash_evalset_rows("plt_net", rows, listing.parent)
    assert table.num_rows == 6
    assert table["status"].to_pylist().count("ok") == 4
    assert sorted(table["reason"].to_pylist(), key=str)[-2:] == ["missing_file", "missing_file"]
    assert set(table["label"].to_pylist()) == {r["class"] for r in real}
    assert table["genus"].to_pylist()[0] == real[0]["class"].split("_")[0]


def test_meta_album_own_labels_csv(tmp_path, make_jpeg):
    root = tmp_path / "INS"
    write_csv(
        root / "labels.csv",
        ["FILE_NAME", "CATEGORY", "SUPER_CATEGORY"],
        [["b.jpg", "Apis_mellifera", "Apidae"], ["a.jpg", "Bombus", "Apidae"]],
    )
    (root / "images").mkdir()
    (root / "images" / "a.jpg").write_bytes(make_jpeg(1))
    rows = read_layout("meta_album", root)
    assert [(r["filepath"], r["genus"], r["common_name"]) for r in rows] == [
        ("images/a.jpg", None, "Bombus"),
        ("images/b.jpg", "Apis", None),
    ]


def test_birds525_csv_reads_test_split_only(tmp_path, make_jpeg):
    root = tmp_path / "birds"
    write_csv(
        root / "birds.csv",
        ["class id", "filepaths", "labels", "data set", "scientific name"],
        [
            [
                0,
                "train/ABBOTTS BABBLER/001.jpg",
                "ABBOTTS BABBLER",
                "train",
                "MALACOCINCLA ABBOTTI",
            ],
            [0, "test/ABBOTTS BABBLER/1.jpg", "ABBOTTS BABBLER", "test", "MALACOCINCLA ABBOTTI"],
            [1, "test/ALBATROSS/1.jpg", "ALBATROSS", "test", "DIOMEDEA EXULANS"],
            [2, "valid/AMERICAN KESTREL/1.jpg", "AMERICAN KESTREL", "valid", "FALCO SPARVERIUS"],
        ],
    )
    rows = read_layout("birds525", root / "birds.csv")
    assert [(r["filepath"], r["genus"], r["species"], r["cls"]) for r in rows] == [
        ("test/ABBOTTS BABBLER/1.jpg", "Malacocincla", "Malacocincla abbotti", "Aves"),
        ("test/ALBATROSS/1.jpg", "Diomedea", "Diomedea exulans", "Aves"),
    ]
    assert rows[0]["common_name"] == "Abbotts Babbler"


def test_birds525_without_csv_lists_test_folders(tmp_path, make_jpeg):
    root = tmp_path / "birds"
    for label, n in (("ALBATROSS", 2), ("BALD EAGLE", 1)):
        for i in range(n):
            p = root / "test" / label / f"{i}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(make_jpeg(i))
    (root / "train" / "ALBATROSS").mkdir(parents=True)
    (root / "train" / "ALBATROSS" / "9.jpg").write_bytes(make_jpeg(9))
    rows = read_layout("birds525", root)
    assert [r["filepath"] for r in rows] == [
        "test/ALBATROSS/0.jpg",
        "test/ALBATROSS/1.jpg",
        "test/BALD EAGLE/0.jpg",
    ]
    table = hash_evalset_rows("birds", rows, root)
    assert table["status"].to_pylist() == ["ok"] * 3
    assert table["kingdom"].to_pylist() == ["Animalia"] * 3


def test_folder_and_manifest_layouts(tmp_path, make_jpeg):
    root = tmp_path / "mine"
    for label in ("Quercus_robur", "weeds"):
        (root / label).mkdir(parents=True)
        (root / label / "1.png").write_bytes(make_jpeg(3))
        (root / label / "notes.txt").write_text("not an image: not listed")
    rows = read_layout("folder", root)
    assert [(r["filepath"], r["genus"], r["class"]) for r in rows] == [
        ("Quercus_robur/1.png", "Quercus", "Quercus_robur"),
        ("weeds/1.png", None, "weeds"),
    ]
    manifest = write_csv(
        tmp_path / "m.csv",
        ["filepath", "class", "kingdom", "genus", "species"],
        [["a.jpg", "", "Plantae", "Quercus", "robur"], ["b.jpg", "Felis catus", "", "", ""]],
    )
    rows = read_layout("manifest", manifest)
    assert [(r["kingdom"], r["genus"], r["species"]) for r in rows] == [
        ("Plantae", "Quercus", "robur"),
        (None, "Felis", "Felis catus"),
    ]


def test_bad_layouts_raise_clear_errors(tmp_path):
    with pytest.raises(InputError, match="unknown evaluation set layout"):
        read_layout("imagenet", tmp_path)
    with pytest.raises(InputError, match="not found"):
        read_layout("folder", tmp_path / "nope")
    bad = write_csv(tmp_path / "x.csv", ["path", "label"], [["a", "b"]])
    with pytest.raises(InputError, match="lacks columns"):
        read_layout("meta_album", bad)
    shutil.rmtree(tmp_path)


def test_rare_species_rows_keep_file_order_and_blank_cells_are_null(tmp_path):
    header = ["kingdom", "phylum", "cls", "order", "family", "genus", "species", "common_name"]
    path = write_csv(
        tmp_path / "metadata.csv",
        [*header, "filepath", "rarespecies_id"],
        [
            ["Animalia", "Chordata", "Mammalia", "", "", "Ailurus", "fulgens", " ", "z.jpg", "1"],
            ["Animalia", "", "", "", "", "Bufo", "bufo", "Toad", "a.jpg", "2"],
        ],
    )
    rows = read_layout("rare_species", path)
    assert [r["filepath"] for r in rows] == ["z.jpg", "a.jpg"]
    assert rows[0]["order"] is None and rows[0]["common_name"] is None
    assert rows[1]["phylum"] is None and rows[1]["common_name"] == "Toad"
    assert all(r["class"] is None for r in rows)  # the classes of Rare Species are its taxa
    with pytest.raises(InputError, match="lacks columns"):
        read_layout("rare_species", write_csv(tmp_path / "m.csv", ["filepath"], [["a.jpg"]]))
    with pytest.raises(InputError, match="cannot read"):
        read_layout("rare_species", tmp_path / "nope.csv")


def test_config_accepts_exactly_the_registered_layouts(tmp_path):
    for layout in LAYOUTS:
        assert EvalSetConfig(name="s", metadata="m.csv", layout=layout).layout == layout
    with pytest.raises(ConfigError, match="evalsets.s.layout: 'imagenet' is not one of"):
        EvalSetConfig(name="s", metadata="m.csv", layout="imagenet")


def test_metadata_file_is_the_list_each_layout_reads(tmp_path):
    birds = tmp_path / "birds"
    (birds / "test").mkdir(parents=True)
    assert metadata_file("birds525", birds) is None  # folders only, until birds.csv appears
    write_csv(birds / "birds.csv", ["filepaths", "labels", "data set"], [])
    assert metadata_file("birds525", birds) == birds / "birds.csv"
    assert metadata_file("birds525", birds / "birds.csv") == birds / "birds.csv"
    album = tmp_path / "INS"
    album.mkdir()
    assert metadata_file("meta_album", album) == album / "metadata.csv"
    write_csv(album / "labels.csv", ["FILE_NAME", "CATEGORY"], [])
    assert metadata_file("meta_album", album) == album / "labels.csv"
    assert metadata_file("folder", tmp_path) is None
    assert metadata_file("manifest", tmp_path / "m.csv") == tmp_path / "m.csv"
