"""iNat21 ingest over a real COCO JSON + .tar.gz made by code."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from treeoflife.config import config_from_dict
from treeoflife.errors import InputError
from treeoflife.io import md5_hex
from treeoflife.schemas import SOURCE_CATALOG
from treeoflife.sources import ingest_inat21

from .builders import inat_file_name, make_inat, read_catalog, rows_of, snapshot, stored_bytes


def make_cfg(tmp_path: Path, archives: list[dict], per_part: int = 2):
    return config_from_dict(
        {
            "data_root": str(tmp_path / "data"),
            "sources": {"inat21": {"archives": archives, "images_per_part": per_part}},
        }
    )


def test_rows_statuses_names_and_images(tmp_path):
    archive, payloads = make_inat(tmp_path / "in", n=5, missing=(3,), html=(1,))
    cfg = make_cfg(tmp_path, [archive])
    stats = ingest_inat21(cfg)
    tables, parts = read_catalog(cfg.root, "inat21")
    assert [p.name for p in parts] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    for p in parts:
        assert pq.read_schema(p).equals(SOURCE_CATALOG, check_metadata=True)
    rows = rows_of(tables)
    # one row per JSON image, in JSON order
    assert [r["inat21_file"] for r in rows] == [inat_file_name("train", i) for i in range(5)]
    assert [r["key"] for r in rows] == [
        "inat21/" + Path(inat_file_name("train", i)).stem for i in range(5)
    ]
    assert [(r["status"], r["reason"]) for r in rows] == [
        ("ok", None),
        ("failed", "not_an_image"),
        ("ok", None),
        ("failed", "missing_in_archive"),
        ("ok", None),
    ]
    first = rows[0]
    assert first["verbatim_kingdom"] == "Animalia"
    assert first["verbatim_genus"] == "Lumbricus"
    assert first["verbatim_scientific_name"] == "Lumbricus terrestris"
    assert first["verbatim_common_name"] == "Common Earthworm"
    assert first["inat21_category_id"] == 0 and rows[1]["inat21_category_id"] == 1
    assert first["license"] == "CC BY 4.0" and first["rights_holder"] == "observer 0"
    for i, row in enumerate(rows):
        if row["status"] == "ok":
            data = stored_bytes(cfg.root, row)
            # baseline JPEGs are stored as served: md5 is of the source bytes
            assert data == payloads[row["inat21_file"]]
            assert (row["width"], row["height"]) == (24, 16)
            assert row["image_file"] == f"images/inat21/part-{i // 2:05d}.tar"
        else:
            assert row["image_file"] is None and row["md5"] is None
    assert (stats.rows, stats.ok, stats.failed) == (5, 3, 2)
    assert stats.reasons == {"missing_in_archive": 1, "not_an_image": 1}
    assert stats.ignored == {"unlisted_member": 1, "unsafe_member": 3}
    assert (stats.parts_written, stats.parts_skipped) == (3, 0)
    on_disk = json.loads((cfg.root / "catalog/inat21/_stats.json").read_text())
    assert on_disk["rows"] == 5 and on_disk["reasons"] == stats.reasons
    assert on_disk["ignored"] == stats.ignored
    assert "parts_written" not in on_disk


def test_rerun_is_byte_identical_and_skips_parts(tmp_path):
    archive, _ = make_inat(tmp_path / "in", n=5, missing=(3,))
    cfg = make_cfg(tmp_path, [archive])
    first = ingest_inat21(cfg)
    before = snapshot(cfg.root)
    again = ingest_inat21(cfg)
    assert snapshot(cfg.root) == before
    assert (again.parts_written, again.parts_skipped) == (0, 3)
    assert again.ignored == first.ignored  # carried over without re-reading the archive
    assert (again.rows, again.ok, again.reasons) == (first.rows, first.ok, first.reasons)


def test_interrupted_part_is_redone(tmp_path):
    archive, _ = make_inat(tmp_path / "in", n=5)
    cfg = make_cfg(tmp_path, [archive])
    ingest_inat21(cfg)
    before = snapshot(cfg.root)
    # simulate a crash while writing part 1: tar written, parquet only as a temporary
    part1 = cfg.root / "catalog/inat21/part-00001.parquet"
    part1.unlink()
    leftover = part1.with_name(".part-00001.parquet.4242.tmp")
    leftover.write_bytes(b"partial")
    (cfg.root / "images/inat21/.part-00001.tar.4242.tmp").write_bytes(b"partial tar")
    stats = ingest_inat21(cfg)
    assert (stats.parts_written, stats.parts_skipped) == (1, 2)
    assert not leftover.exists()
    assert snapshot(cfg.root) == before


def test_tar_order_differs_from_json_order(tmp_path):
    archive, payloads = make_inat(tmp_path / "in", n=7, reverse=True, extras=False)
    cfg = make_cfg(tmp_path, [archive], per_part=3)
    stats = ingest_inat21(cfg)
    rows = rows_of(read_catalog(cfg.root, "inat21")[0])
    assert [r["inat21_file"] for r in rows] == [inat_file_name("train", i) for i in range(7)]
    assert stats.ok == 7 and stats.ignored == {}
    assert all(stored_bytes(cfg.root, r) == payloads[r["inat21_file"]] for r in rows)


def test_two_archives_number_parts_globally(tmp_path):
    train, _ = make_inat(tmp_path / "in", "train", n=5, extras=False, seed=1)
    val, _ = make_inat(tmp_path / "in", "val", n=1, extras=False, seed=2)
    cfg = make_cfg(tmp_path, [train, val])
    stats = ingest_inat21(cfg)
    tables, parts = read_catalog(cfg.root, "inat21")
    assert [p.name for p in parts][-1] == "part-00003.parquet"
    assert rows_of([tables[-1]])[0]["inat21_file"] == inat_file_name("val", 0)
    assert stats.rows == 6 and stats.parts_written == 4


def test_md5_checked_while_streaming(tmp_path):
    archive, _ = make_inat(tmp_path / "in", n=3)
    good = hashlib.md5(Path(archive["images"]).read_bytes()).hexdigest()
    cfg = make_cfg(tmp_path / "bad", [{**archive, "md5": "0" * 32}])
    with pytest.raises(InputError, match="train.tar.gz") as info:
        ingest_inat21(cfg)
    assert "md5" in str(info.value)
    # nothing derived from the bad archive stays under a final name
    assert not list((cfg.root / "catalog/inat21").glob("part-*.parquet"))
    assert not list((cfg.root / "images/inat21").glob("part-*.tar"))
    cfg_ok = make_cfg(tmp_path / "good", [{**archive, "md5": good}])
    assert ingest_inat21(cfg_ok).ok == 3


def test_corrupt_archive_is_a_clear_error(tmp_path):
    archive, _ = make_inat(tmp_path / "in", n=3)
    path = Path(archive["images"])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="train.tar.gz"):
        ingest_inat21(make_cfg(tmp_path, [archive]))


def test_duplicate_and_malformed_json_images(tmp_path):
    archive, _ = make_inat(tmp_path / "in", n=3, extras=False)
    data = json.loads(Path(archive["annotations"]).read_text())
    data["images"].append(dict(data["images"][0], id=77))  # same file twice
    data["images"].append({"id": 78})  # no file_name
    Path(archive["annotations"]).write_text(json.dumps(data))
    stats = ingest_inat21(make_cfg(tmp_path, [archive], per_part=10))
    rows = rows_of(read_catalog(tmp_path / "data", "inat21")[0])
    assert [r["reason"] for r in rows] == [None, None, None, "duplicate_key", "malformed_row"]
    assert len({r["key"] for r in rows}) == 5
    assert stats.rows == 5 and stats.ok == 3
    assert md5_hex(stored_bytes(tmp_path / "data", rows[0])) == rows[0]["md5"]


def test_unreachable_url_inputs_fail_clearly(tmp_path):
    archive, _ = make_inat(tmp_path / "in", n=1)
    remote = {**archive, "annotations": "http://127.0.0.1:9/train.json"}  # nothing listens
    with pytest.raises(InputError, match="iNat21 annotations http://127.0.0.1:9/train.json"):
        ingest_inat21(make_cfg(tmp_path, [remote]))


def test_mini_layout_maps_every_image_to_its_category(tmp_path):
    archive, _ = make_inat(tmp_path / "in", split="train_mini", n=4, extras=False)
    stats = ingest_inat21(make_cfg(tmp_path, [archive], per_part=10))
    rows = rows_of(read_catalog(tmp_path / "data", "inat21")[0])
    assert stats.ok == 4
    assert [r["inat21_file"].split("/")[0] for r in rows] == ["train_mini"] * 4
    assert [r["verbatim_genus"] for r in rows] == ["Lumbricus", "Bellis"] * 2
    assert [r["inat21_category_id"] for r in rows] == [0, 1, 0, 1]
