"""A set as the config names it: its folder, its rows, the files a fingerprint must cover."""

from __future__ import annotations

import csv
import os

import pytest

from treeoflife.config import config_from_dict
from treeoflife.errors import InputError
from treeoflife.evalsets.files import SetFolder
from treeoflife.evalsets.sets import (
    check_evalset_images,
    evalset_input_files,
    evalset_root,
    read_evalset,
)
from treeoflife.runner import fingerprint_paths

HEADER = ["kingdom", "phylum", "cls", "order", "family", "genus", "species", "filepath"]


def _rare(folder, filepaths):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metadata.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for path in filepaths:
            w.writerow(["Animalia", "", "", "", "", "Corvus", "corax", path])
    return folder / "metadata.csv"


def _one_set(tmp_path, **es):
    cfg = config_from_dict({"data_root": str(tmp_path / "data"), "evalsets": [es]})
    return cfg.evalsets[0], cfg


def _fingerprint(es, cfg):
    return fingerprint_paths(evalset_input_files(es, cfg))


def _bump_mtime(path, seconds=10):
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 10**9))


def test_input_files_are_the_list_and_every_image_it_points_at(tmp_path, make_jpeg):
    folder = tmp_path / "rare"
    (folder / "img").mkdir(parents=True)
    (folder / "img" / "a.jpg").write_bytes(make_jpeg(1))
    (tmp_path / "outside.jpg").write_bytes(make_jpeg(2))
    metadata = _rare(folder, ["img/a.jpg", "img/later.jpg", "../outside.jpg", "img/a.jpg"])
    es, cfg = _one_set(tmp_path, name="rare", metadata=str(metadata))
    # each image once, missing or not; the one outside the set's folder left out
    assert evalset_input_files(es, cfg) == [
        folder / "img/a.jpg",
        folder / "img/later.jpg",
        metadata,
    ]


def test_fingerprint_over_input_files_changes_when_an_image_changes(tmp_path, make_jpeg):
    """The hashes stage must rerun when an evaluation image is replaced or appears after a
    build; a fingerprint over the set's list alone (the old one) did not change."""
    folder = tmp_path / "rare"
    (folder / "img").mkdir(parents=True)
    image = folder / "img" / "a.jpg"
    image.write_bytes(make_jpeg(1))
    metadata = _rare(folder, ["img/a.jpg", "img/later.jpg"])
    es, cfg = _one_set(tmp_path, name="rare", metadata=str(metadata))
    seen = [_fingerprint(es, cfg)]
    assert _fingerprint(es, cfg) == seen[-1]  # stable while nothing changes
    list_only = fingerprint_paths([metadata])

    image.write_bytes(make_jpeg(1, quality=60))  # replaced: other content and size
    seen.append(_fingerprint(es, cfg))
    same_size = make_jpeg(3, quality=60)
    same_size = same_size[: image.stat().st_size].ljust(image.stat().st_size, b"\0")
    image.write_bytes(same_size)  # replaced by other bytes of the same size
    _bump_mtime(image)
    seen.append(_fingerprint(es, cfg))
    _bump_mtime(image)  # touched
    seen.append(_fingerprint(es, cfg))
    (folder / "img" / "later.jpg").write_bytes(make_jpeg(4))  # a listed image appears
    seen.append(_fingerprint(es, cfg))
    assert len({repr(f) for f in seen}) == len(seen)  # every change changed the fingerprint
    assert fingerprint_paths([metadata]) == list_only  # what the old fingerprint covered


def test_an_image_added_to_a_folder_set_changes_its_input_files(tmp_path, make_jpeg):
    root = tmp_path / "mine"
    (root / "Quercus_robur").mkdir(parents=True)
    (root / "Quercus_robur" / "1.jpg").write_bytes(make_jpeg(1))
    es, cfg = _one_set(tmp_path, name="mine", metadata=str(root), layout="folder")
    before = evalset_input_files(es, cfg)
    assert before == [root / "Quercus_robur" / "1.jpg"]
    (root / "Acer_alba").mkdir()
    (root / "Acer_alba" / "2.png").write_bytes(make_jpeg(2))
    assert evalset_input_files(es, cfg) == [root / "Acer_alba" / "2.png", *before]


def test_root_defaults_to_the_lists_folder_and_can_be_given(tmp_path):
    metadata = _rare(tmp_path / "lists", ["a.jpg"])
    es, cfg = _one_set(tmp_path, name="s", metadata=str(metadata))
    assert evalset_root(es, cfg) == tmp_path / "lists"
    es, cfg = _one_set(tmp_path, name="s", metadata=str(metadata), root="images")
    assert evalset_root(es, cfg) == tmp_path / "data" / "images"  # relative to the data root
    assert evalset_input_files(es, cfg) == [tmp_path / "data" / "images" / "a.jpg", metadata]


def test_read_evalset_names_the_set_in_errors(tmp_path):
    es, cfg = _one_set(tmp_path, name="birds", metadata=str(tmp_path / "nope.csv"))
    with pytest.raises(InputError, match="evaluation set birds: .*cannot read"):
        read_evalset(es, cfg)


@pytest.mark.parametrize(
    ("filepath", "reason"),
    [
        ("", "missing_filepath"),
        ("   ", "missing_filepath"),
        (None, "missing_filepath"),
        ("../x.jpg", "outside_set"),
        ("img/../../x.jpg", "outside_set"),
        ("img/../a.jpg", "outside_set"),  # stays inside, but `..` is refused outright
        ("/etc/passwd", "outside_set"),
        ("a\x00.jpg", "outside_set"),
        ("out/x.jpg", "outside_set"),  # a symlinked folder leading out
        ("loop.jpg", "unreadable"),
        ("gone.jpg", "missing_file"),
        ("img", "unreadable"),  # a folder
    ],
)
def test_set_folder_refuses_what_is_not_an_image_inside_it(tmp_path, filepath, reason):
    root = tmp_path / "set"
    (root / "img").mkdir(parents=True)
    (root / "a.jpg").write_bytes(b"inside")
    (tmp_path / "x.jpg").write_bytes(b"outside")
    (root / "out").symlink_to(tmp_path, target_is_directory=True)
    (root / "loop.jpg").symlink_to(root / "loop.jpg")
    assert SetFolder(root).read(filepath) == (None, reason)


def test_set_folder_reads_inside_through_symlinks_and_a_symlinked_root(tmp_path):
    real = tmp_path / "real"
    (real / "img").mkdir(parents=True)
    (real / "img" / "a.jpg").write_bytes(b"inside")
    (real / "b.jpg").symlink_to(real / "img" / "a.jpg")
    (tmp_path / "alias").symlink_to(real, target_is_directory=True)
    for root in (real, tmp_path / "alias"):
        folder = SetFolder(root)
        assert folder.read("img/a.jpg") == (b"inside", None)
        assert folder.read("./b.jpg") == (b"inside", None)
        assert folder.locate("img/a.jpg") == (root / "img" / "a.jpg", None)


def test_early_check_stops_a_set_with_none_of_its_images_before_any_stage(tmp_path, make_jpeg):
    folder = tmp_path / "rare"
    (tmp_path / "elsewhere.jpg").write_bytes(make_jpeg(1))
    metadata = _rare(folder, ["img/a.jpg", "../elsewhere.jpg", "img/b.jpg"])
    es, cfg = _one_set(tmp_path, name="rare", metadata=str(metadata))
    with pytest.raises(InputError) as err:
        check_evalset_images(es, cfg)
    message = str(err.value)
    assert message.startswith("evaluation set rare: none of its 3 images is usable under")
    assert "missing_file: 2, outside_set: 1" in message
    assert "'img/a.jpg' (missing_file), '../elsewhere.jpg' (outside_set)" in message
    (folder / "img").mkdir()
    (folder / "img" / "b.jpg").write_bytes(make_jpeg(2))
    check_evalset_images(es, cfg)  # one image is there: the hashes stage warns about the rest
