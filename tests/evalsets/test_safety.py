"""Hostile or broken evaluation sets (issue 15, issue 16 item 7), with real files on disk.

Only interfaces that predate treeoflife.evalsets are used here (config loading, the pipeline's
stages, dedup.hash_evalset_rows), so this file also runs against the code before it: there
every test here fails.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile

import pyarrow.parquet as pq
import pytest

from tests.dedup.test_dedup_stage import build_root
from treeoflife import pipeline
from treeoflife.config import load_config
from treeoflife.dedup import hash_evalset_rows
from treeoflife.errors import ConfigError, InputError
from treeoflife.evalsets.package import package_evalsets
from treeoflife.evalsets.sets import read_evalset
from treeoflife.layout import Layout

RANKS = ["kingdom", "phylum", "cls", "order", "family", "genus", "species", "common_name"]


def _append_rows(metadata, filepaths: list[str]) -> None:
    with open(metadata, "a", newline="") as fh:
        w = csv.writer(fh)
        for path in filepaths:
            w.writerow(["Plantae", "", "", "", "", "Outsidus", "nullus", "", path])


def _packaged_images(folder) -> list[bytes]:
    n = int((folder / "test" / "nshards.txt").read_text())
    out = []
    for i in range(n):
        with tarfile.open(folder / "test" / f"{i}.tar") as tar:
            for m in tar.getmembers():
                if m.name.endswith(".jpg"):
                    out.append(tar.extractfile(m).read())
    return out


def test_filepaths_outside_the_set_are_never_read_hashed_or_packaged(
    tmp_path, make_photo, encode_image
):
    """A Rare Species list points out of its folder three ways at a copy of a kept training
    image; read, it would remove that image as an exact duplicate and publish its bytes."""
    cfg = build_root(tmp_path, make_photo, encode_image)
    evalsets = tmp_path / "evalsets"
    kept_copy = encode_image(make_photo(7), "JPEG")  # the bytes of training image eol/6_1
    (evalsets / "outside.jpg").write_bytes(kept_copy)
    (evalsets / "secret.txt").write_text("API_TOKEN=do-not-publish\n")
    rare = evalsets / "rare"
    (rare / "img" / "link.jpg").symlink_to(evalsets / "outside.jpg")  # a symlink out
    (rare / "img" / "same.jpg").symlink_to(rare / "img" / "r.jpg")  # a symlink inside: fine
    outside = ["../outside.jpg", str(evalsets / "outside.jpg"), "img/link.jpg"]
    outside += ["img/../../secret.txt"]
    _append_rows(rare / "metadata.csv", [*outside, "img/same.jpg"])

    pipeline.build(cfg, stages=("hashes",))
    layout = Layout(cfg.root)
    rows = {r["eval_key"]: r for r in pq.read_table(layout.evalset_hashes("rare")).to_pylist()}
    for path in outside:
        assert (rows[path]["status"], rows[path]["reason"]) == ("failed", "outside_set")
        assert rows[path]["md5"] is None  # not even the md5 of an outside file is recorded
    assert rows["img/same.jpg"]["status"] == "ok"

    pipeline.run("dedup", cfg)
    removals = {r["key"]: r["reason"] for r in pq.read_table(layout.removals).to_pylist()}
    assert "eol/6_1" not in removals  # the outside copy of it was not taken as an eval image
    report = json.loads((layout.dedup_dir / "report.json").read_text())
    listed = report["settings"]["evaluation_images"]["rare"]
    assert listed["outside_set"] == 4 and listed["outside_set_paths"] == outside
    assert listed["missing"] == 1 and listed["missing_paths"] == ["img/g.jpg"]

    packaged = package_evalsets(cfg)
    assert packaged["rare"]["skipped"] == {"missing_file": 1, "outside_set": 4}
    assert packaged["rare"]["images"] == 2  # img/r.jpg and the symlink to it
    wds_dir = layout.evalsets_wds / "rare"
    hashes = pq.read_table(wds_dir / "hashes.parquet").to_pylist()
    assert not any(r["eval_key"] in outside and r["md5"] for r in hashes)
    assert len(_packaged_images(wds_dir)) == 2


def test_a_symlinked_class_folder_out_of_a_folder_set_is_not_read(tmp_path, make_jpeg):
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "1.jpg").write_bytes(make_jpeg(1))
    root = tmp_path / "set"
    (root / "Quercus_robur").mkdir(parents=True)
    (root / "Quercus_robur" / "1.jpg").write_bytes(make_jpeg(2))
    (root / "Private_thing").symlink_to(outside, target_is_directory=True)
    rows = read_evalset(_folder_set(tmp_path, root), _cfg(tmp_path, root))
    table = hash_evalset_rows("mine", rows, root).to_pylist()
    got = {r["eval_key"]: (r["status"], r["reason"], r["md5"]) for r in table}
    assert got["Private_thing/1.jpg"] == ("failed", "outside_set", None)
    assert got["Quercus_robur/1.jpg"][0] == "ok"


def _folder_set(tmp_path, root):
    return _cfg(tmp_path, root).evalsets[0]


def _cfg(tmp_path, root):
    path = tmp_path / "folder.yaml"
    path.write_text(
        f"data_root: {tmp_path / 'data'}\n"
        f"evalsets:\n  - {{name: mine, metadata: {root}, layout: folder}}\n"
    )
    return load_config(path)


def _config_with_sets(tmp_path, names: list[str]):
    lines = [f"data_root: {tmp_path / 'data'}", "evalsets:"]
    lines += [f"  - {{name: {json.dumps(n)}, metadata: evalsets/m.csv}}" for n in names]
    path = tmp_path / "build.yaml"
    path.write_text("\n".join(lines) + "\n")
    return load_config(path)


@pytest.mark.parametrize(
    "name",
    ["../escape", "a/b", "/tmp/abs", "..", ".hidden", "a..b", "two words", "", "x" * 129],
)
def test_a_set_name_unsafe_as_a_path_is_refused_at_config_load(tmp_path, name):
    with pytest.raises(ConfigError, match=r"evalsets\.name: .* is not a safe name"):
        _config_with_sets(tmp_path, [name])


def test_a_set_name_with_a_nul_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"evalsets\.name"):
        _config_with_sets(tmp_path, ["a\x00b"])


def test_safe_set_names_are_accepted(tmp_path):
    names = ["rare_species", "meta-album.PLT_NET", "Birds525"]
    assert [es.name for es in _config_with_sets(tmp_path, names).evalsets] == names


@pytest.mark.parametrize("second", ["rare", "RARE"])
def test_two_sets_with_one_name_are_refused_at_config_load(tmp_path, second):
    """Both would write hashes/evalsets/rare.parquet: the second set silently replaced the
    first's hashes, so dedup against the first was lost."""
    with pytest.raises(ConfigError, match=r"evalsets\[1\]\.name: .* evalsets\[0\]"):
        _config_with_sets(tmp_path, ["rare", second])


def test_a_set_with_none_of_its_images_stops_the_build_before_dedup(
    tmp_path, make_photo, encode_image
):
    cfg = build_root(tmp_path, make_photo, encode_image)
    (tmp_path / "evalsets" / "rare" / "img" / "r.jpg").unlink()  # g.jpg was never there
    with pytest.raises(InputError) as err:
        pipeline.build(cfg, stages=("hashes",))
    message = str(err.value)
    assert message.startswith("evaluation set rare: none of its 2 images is usable")
    assert "'img/r.jpg' (missing_file)" in message and "'img/g.jpg' (missing_file)" in message
    assert not Layout(cfg.root).removals.exists()


def test_a_set_whose_list_names_no_image_stops_the_build(tmp_path, make_photo, encode_image):
    cfg = build_root(tmp_path, make_photo, encode_image)
    header = io.StringIO()
    csv.writer(header).writerow([*RANKS, "filepath"])
    (tmp_path / "evalsets" / "rare" / "metadata.csv").write_text(header.getvalue())
    with pytest.raises(InputError, match="evaluation set rare: none of its 0 images.*no images"):
        pipeline.build(cfg, stages=("hashes",))


def test_a_set_with_some_images_missing_is_a_warning_and_listed(
    tmp_path, make_photo, encode_image, caplog
):
    cfg = build_root(tmp_path, make_photo, encode_image)
    with caplog.at_level("WARNING"):
        pipeline.build(cfg, stages=("hashes",))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("evaluation set rare: 1 of 2 images not usable" in w for w in warnings)
    pipeline.run("dedup", cfg)
    report = json.loads((Layout(cfg.root).dedup_dir / "report.json").read_text())
    rare = report["settings"]["evaluation_images"]["rare"]
    assert (rare["listed"], rare["hashed"], rare["missing"]) == (2, 1, 1)
    assert rare["missing_paths"] == ["img/g.jpg"]
    assert os.path.exists(Layout(cfg.root).removals)
