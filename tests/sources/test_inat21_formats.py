"""iNat21 as published: .json.tar.gz annotations, md5s, category mapping, archive safety, resume."""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support.mirror_server import Fault, MirrorServer
from treeoflife.config import config_from_dict
from treeoflife.errors import InputError
from treeoflife.sources import ingest_inat21

from .builders import (
    INAT_CATEGORIES,
    add_member,
    inat_file_name,
    jpeg,
    make_inat,
    read_catalog,
    rows_of,
    snapshot,
)


def make_cfg(root: Path, archives: list[dict], per_part: int = 2, **extra):
    return config_from_dict(
        {
            "data_root": str(root),
            "sources": {"inat21": {"archives": archives, "images_per_part": per_part, **extra}},
        }
    )


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def json_tar_gz(json_path: Path) -> Path:
    """The published packaging: <split>.json.tar.gz holding <split>.json."""
    out = json_path.with_name(json_path.name + ".tar.gz")
    with tarfile.open(out, "w:gz") as tar:
        add_member(tar, "./", b"", type=tarfile.DIRTYPE)
        add_member(tar, "./._" + json_path.name, b"\x00\x05\x16\x07")  # macOS resource fork
        add_member(tar, "./" + json_path.name, json_path.read_bytes())
    return out


def json_gz(json_path: Path) -> Path:
    out = json_path.with_name(json_path.name + ".gz")
    out.write_bytes(gzip.compress(json_path.read_bytes(), mtime=0))
    return out


def test_annotations_json_tar_gz_and_json_gz_read_like_json(tmp_path):
    archive, _ = make_inat(tmp_path / "in", n=5, missing=(3,))
    plain = Path(archive["annotations"])
    variants = {
        "json": (plain, None),
        "json_tar_gz": (json_tar_gz(plain), None),
        "json_gz": (json_gz(plain), None),
    }
    variants["json_tar_gz_md5"] = (variants["json_tar_gz"][0], md5_of(variants["json_tar_gz"][0]))
    snaps = {}
    for name, (path, md5) in variants.items():
        spec = {**archive, "annotations": str(path), "annotations_md5": md5}
        cfg = make_cfg(tmp_path / name, [spec])
        stats = ingest_inat21(cfg)
        assert (stats.rows, stats.ok) == (5, 4)
        snaps[name] = {k: v for k, v in snapshot(cfg.root).items() if "/_" not in k}
    assert all(s == snaps["json"] for s in snaps.values())
    bad = {**archive, "annotations": str(variants["json_tar_gz"][0]), "annotations_md5": "0" * 32}
    with pytest.raises(InputError, match=r"annotations .*train\.json\.tar\.gz: md5"):
        ingest_inat21(make_cfg(tmp_path / "bad", [bad]))
    empty = tmp_path / "in" / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as tar:
        add_member(tar, "readme.txt", b"no json here")
    with pytest.raises(InputError, match="no .json file"):
        ingest_inat21(make_cfg(tmp_path / "empty", [{**archive, "annotations": str(empty)}]))


def test_annotations_and_archive_over_http_with_drops(tmp_path):
    archive, _ = make_inat(tmp_path / "in", n=6)
    packed = json_tar_gz(Path(archive["annotations"]))
    tar = Path(archive["images"])
    faults = {
        "/train.json.tar.gz": Fault(reset_after=packed.stat().st_size // 2, fail_first=1),
        "/train.tar.gz": Fault(reset_after=tar.stat().st_size // 2, fail_first=1),
    }
    with MirrorServer(tmp_path / "in", faults) as server:
        spec = {
            "images": server.url + "/train.tar.gz",
            "md5": md5_of(tar),
            "annotations": server.url + "/train.json.tar.gz",
            "annotations_md5": md5_of(packed),
        }
        stats = ingest_inat21(make_cfg(tmp_path / "remote", [spec]))
        assert server.hits["/train.json.tar.gz"] == 2 and server.hits["/train.tar.gz"] == 2
    assert (stats.rows, stats.ok) == (6, 6)
    local = make_cfg(tmp_path / "local", [archive])
    ingest_inat21(local)
    rows = rows_of(read_catalog(tmp_path / "remote", "inat21")[0])
    assert rows == rows_of(read_catalog(tmp_path / "local", "inat21")[0])


def test_every_image_maps_to_its_category_or_a_reason(tmp_path):
    archive, _ = make_inat(tmp_path / "in", n=6, extras=False)
    path = Path(archive["annotations"])
    data = json.loads(path.read_text())
    by_image = {a["image_id"]: a for a in data["annotations"]}
    # 0: annotated normally; 1: no annotation -> category from its image_dir_name folder
    del by_image[data["images"][1]["id"]]
    # 2: annotation says the other category than its folder
    by_image[data["images"][2]["id"]]["category_id"] = 1
    # 3: no annotation and a folder that names no category
    del by_image[data["images"][3]["id"]]
    uuid_name = Path(data["images"][3]["file_name"]).name
    data["images"][3]["file_name"] = f"train/99999_Nothing_known/{uuid_name}"
    # 4: annotation to a category that does not exist, folder fallback
    by_image[data["images"][4]["id"]]["category_id"] = 12345
    # 5: an unsafe file name is never looked up in the archive
    data["images"][5]["file_name"] = "../" + data["images"][5]["file_name"]
    data["annotations"] = list(by_image.values())
    path.write_text(json.dumps(data))
    stats = ingest_inat21(make_cfg(tmp_path / "data", [archive], per_part=10))
    rows = rows_of(read_catalog(tmp_path / "data", "inat21")[0])
    assert [(r["status"], r["reason"]) for r in rows] == [
        ("ok", None),
        ("ok", None),
        ("failed", "category_mismatch"),
        ("failed", "unknown_category"),
        ("ok", None),
        ("failed", "malformed_row"),
    ]
    assert [r["inat21_category_id"] for r in rows] == [0, 1, 1, None, 0, None]
    assert rows[1]["verbatim_scientific_name"] == "Bellis perennis"
    assert rows[1]["verbatim_common_name"] == "Common Daisy"
    assert rows[4]["verbatim_genus"] == "Lumbricus"
    assert rows[3]["verbatim_kingdom"] is None and rows[3]["image_file"] is None
    # members of rows failed while planning are not "unlisted": they were listed
    assert stats.ignored == {"unlisted_member": 2}  # the renamed 3 and the "../" 5
    assert stats.rows == 6 and stats.ok == 3
    # the categories as published, with how many images of this archive each got
    cats = pq.read_table(tmp_path / "data/catalog/inat21/_categories-00.parquet").to_pylist()
    assert [(c["id"], c["images"]) for c in cats] == [(0, 2), (1, 2)]
    assert cats[1]["image_dir_name"] == INAT_CATEGORIES[1]["image_dir_name"]
    assert cats[0]["specific_epithet"] == "terrestris" and cats[0]["supercategory"] == "Animals"


def special_members_archive(folder: Path) -> dict:
    """A train.tar.gz with every kind of member an archive may hold."""
    archive, _ = make_inat(folder, n=4, extras=False)
    first = inat_file_name("train", 0)
    big = inat_file_name("train", 3)
    with tarfile.open(archive["images"], "w:gz") as tar:
        add_member(tar, first, jpeg(0))
        add_member(tar, inat_file_name("train", 1), b"\xff\xd8\xff\xe0 corrupt jpeg")
        add_member(tar, big, jpeg(3, 400, 300))
        add_member(tar, inat_file_name("train", 2), b"", type=tarfile.LNKTYPE, linkname=first)
        add_member(tar, "train/fifo", b"", type=tarfile.FIFOTYPE)
        add_member(tar, "train/null", b"", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        add_member(tar, "train/disk", b"", type=tarfile.BLKTYPE, devmajor=8, devminor=0)
        add_member(tar, "train/sym.jpg", b"", type=tarfile.SYMTYPE, linkname="../../etc/passwd")
        add_member(tar, "/abs/" + first, jpeg(5))
        add_member(tar, "train/../../" + first, jpeg(6))
        add_member(tar, first, jpeg(7))  # the same name twice: the first one wins
    return archive


def test_archive_safety_links_devices_sizes_and_corrupt_members(tmp_path):
    archive = special_members_archive(tmp_path / "in")
    big = len(jpeg(3, 400, 300))
    cfg = make_cfg(tmp_path / "data", [archive], per_part=10, max_member_bytes=big - 1)
    stats = ingest_inat21(cfg)
    rows = rows_of(read_catalog(cfg.root, "inat21")[0])
    assert [(r["status"], r["reason"]) for r in rows] == [
        ("ok", None),
        ("failed", "truncated_image"),
        ("failed", "missing_in_archive"),  # only a hard link to it was in the archive
        ("failed", "member_too_large"),
    ]
    assert stats.ignored == {"duplicate_member": 1, "unsafe_member": 7}
    saved = json.loads((cfg.root / "catalog/inat21/_stats.json").read_text())
    assert saved["ignored"] == stats.ignored and saved["rows"] == 4


def test_md5_mismatch_removes_parts_of_earlier_runs_too(tmp_path):
    archive, _ = make_inat(tmp_path / "in", n=5)
    md5 = md5_of(Path(archive["images"]))
    cfg = make_cfg(tmp_path / "data", [{**archive, "md5": md5}])
    ingest_inat21(cfg)
    # an interrupted run left parts 0 and 2 and no archive marker; then the file went bad
    (cfg.root / "catalog/inat21/_archive-00.json").unlink()
    (cfg.root / "catalog/inat21/part-00001.parquet").unlink()
    make_inat(tmp_path / "in", n=5, seed=9)  # same names, other bytes
    with pytest.raises(InputError, match="md5 .* does not match"):
        ingest_inat21(cfg)
    assert not list((cfg.root / "catalog/inat21").glob("part-*"))
    assert not list((cfg.root / "catalog/inat21").glob("_*-00.*"))  # marker, categories
    assert not list((cfg.root / "images/inat21").glob("part-*"))


def test_truncated_archive_with_md5_keeps_nothing(tmp_path):
    archive, _ = make_inat(tmp_path / "in", n=5)
    path = Path(archive["images"])
    md5 = md5_of(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    cfg = make_cfg(tmp_path / "data", [{**archive, "md5": md5}])
    with pytest.raises(InputError, match="unreadable"):
        ingest_inat21(cfg)
    assert not list((cfg.root / "catalog/inat21").glob("part-*"))


def test_killed_before_the_archive_marker_rereads_and_ends_identical(tmp_path):
    archive, _ = make_inat(tmp_path / "in", n=5)
    cfg = make_cfg(tmp_path / "data", [archive])
    first = ingest_inat21(cfg)
    before = snapshot(cfg.root)
    # killed after the last part, before the marker and _stats.json were written
    (cfg.root / "catalog/inat21/_archive-00.json").unlink()
    (cfg.root / "catalog/inat21/_stats.json").unlink()
    again = ingest_inat21(cfg)
    assert (again.parts_written, again.parts_skipped) == (0, 3)
    assert again.ignored == first.ignored  # recounted from the archive, not forgotten
    assert snapshot(cfg.root) == before
    # a changed archive (other md5 configured) redoes its parts instead of trusting them
    cfg2 = make_cfg(tmp_path / "data", [{**archive, "md5": md5_of(Path(archive["images"]))}])
    redo = ingest_inat21(cfg2)
    assert redo.parts_written == 3


def test_changed_annotations_redo_parts_and_shorter_inputs_leave_no_stale_parts(tmp_path):
    archive, _ = make_inat(tmp_path / "in", n=5)
    cfg = make_cfg(tmp_path / "data", [archive])
    ingest_inat21(cfg)
    # same images and row count, another licence text: the parts are redone, not trusted
    path = Path(archive["annotations"])
    data = json.loads(path.read_text())
    data["licenses"][0]["name"] = "CC0 1.0"
    path.write_text(json.dumps(data))
    redo = ingest_inat21(cfg)
    assert redo.parts_written == 3
    assert {r["license"] for r in rows_of(read_catalog(cfg.root, "inat21")[0])} == {"CC0 1.0"}
    # a shorter input: parts beyond the new end do not linger to be read as rows
    make_inat(tmp_path / "in", n=2)
    stats = ingest_inat21(cfg)
    tables, parts = read_catalog(cfg.root, "inat21")
    assert [p.name for p in parts] == ["part-00000.parquet"] and stats.rows == 2
    assert sorted(p.name for p in (cfg.root / "images/inat21").iterdir()) == ["part-00000.tar"]


def test_a_run_killed_midway_then_resumed_over_changed_annotations_redoes_all(tmp_path):
    archive, _ = make_inat(tmp_path / "in", n=5)
    cfg = make_cfg(tmp_path / "data", [archive])
    ingest_inat21(cfg)
    marker = cfg.root / "catalog/inat21/_archive-00.json"
    # as a kill after part 0 leaves it: the "started" marker, one part, no _stats.json
    started = json.loads(marker.read_text())
    marker.write_text(json.dumps({"archive": started["archive"], "complete": False}))
    for part in ("part-00001", "part-00002"):
        (cfg.root / f"catalog/inat21/{part}.parquet").unlink()
    path = Path(archive["annotations"])
    data = json.loads(path.read_text())
    data["licenses"][0]["name"] = "CC0 1.0"
    path.write_text(json.dumps(data))
    stats = ingest_inat21(cfg)
    assert (stats.parts_written, stats.parts_skipped) == (3, 0)  # part 0 not trusted
    assert {r["license"] for r in rows_of(read_catalog(cfg.root, "inat21")[0])} == {"CC0 1.0"}
    assert json.loads(marker.read_text())["complete"] is True
