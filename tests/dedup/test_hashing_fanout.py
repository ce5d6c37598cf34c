"""Catalog hashing fanned out by a mapper (treeoflife.fanout): same tables, same files."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from tests.support.fanout import map_out_of_order
from treeoflife.dedup import hash_catalog_parts
from treeoflife.dedup.hashing import SHARED_WORK, HashPart, hash_catalog_part
from treeoflife.storage import LocalStorage

from .test_dedup_report import write_part


def test_mapped_parts_give_the_local_result_and_files(tmp_path, make_jpeg):
    root = tmp_path / "data"
    parts = [
        write_part(root, i, {f"eol/{i}_{j}": make_jpeg(10 * i + j) for j in range(2)})
        for i in range(4)
    ]
    local = hash_catalog_parts(parts, tmp_path / "local", root, "run-1", workers=1)
    seen: list[HashPart] = []

    def mapper(fn, items):
        items = list(items)
        seen.extend(items)
        yield from map_out_of_order(fn, items)

    out = tmp_path / "mapped"
    mapped = hash_catalog_parts(parts, out, root, "run-1", workers=1, map_parts=mapper)
    assert mapped.equals(local)
    for part in parts:
        name = Path(part).name
        assert (out / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    # Items are small: folders by absolute path and files in them, never image bytes.
    assert all(i.inputs == LocalStorage(root.resolve()) for i in seen)
    assert all(i.outputs == LocalStorage(out.resolve()) for i in seen)
    assert all(i.part == f"catalog/eol/{i.target}" for i in seen)
    # Only unfinished parts are handed out again.
    (out / "part-00002.parquet").unlink()
    seen.clear()
    assert hash_catalog_parts(parts, out, root, "run-1", map_parts=mapper).equals(local)
    assert [Path(i.part).name for i in seen] == ["part-00002.parquet"]


def test_a_part_done_twice_is_kept(tmp_path, make_jpeg):
    root = tmp_path / "data"
    part = write_part(root, 0, {"eol/1_1": make_jpeg(1)})
    rel = part.relative_to(root).as_posix()
    item = HashPart(rel, "h.parquet", LocalStorage(root), LocalStorage(tmp_path), workers=1)
    assert hash_catalog_part(item) == 1
    stamp = (tmp_path / "h.parquet").stat().st_mtime_ns
    assert hash_catalog_part(item) == 1  # a retried worker finds the finished part
    assert (tmp_path / "h.parquet").stat().st_mtime_ns == stamp
    assert pq.read_table(tmp_path / "h.parquet").num_rows == 1


def test_parts_on_object_storage_give_the_local_files(tmp_path, make_jpeg, s3_storage):
    from treeoflife.storage import push_files

    root = tmp_path / "data"
    parts = [
        write_part(root, i, {f"eol/{i}_{j}": make_jpeg(10 * i + j) for j in range(2)})
        for i in range(3)
    ]
    local = hash_catalog_parts(parts, tmp_path / "local", root, "run-1", workers=1)
    stores = sorted(
        {f for p in parts for f in pq.read_table(p, columns=["image_file"]).column(0).to_pylist()}
    )
    push_files(root, stores, s3_storage, tmp_path / "pushed.jsonl")
    seen: list[HashPart] = []

    def mapper(fn, items):
        items = list(items)
        seen.extend(items)
        yield from map_out_of_order(fn, items)

    out = root / "hashes" / "eol"
    mapped = hash_catalog_parts(parts, out, root, "run-1", map_parts=mapper, shared=s3_storage)
    assert mapped.equals(local)
    for part in parts:
        name = Path(part).name
        assert (out / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    # The tasks saw only shared storage: relative paths there, no folder of this machine.
    assert seen and all(i.inputs == s3_storage and not Path(i.part).is_absolute() for i in seen)
    work = "/".join([SHARED_WORK, "run-1", "hashes", "eol"])
    assert all(i.outputs == s3_storage.folder(work) for i in seen)
    # The parts were pushed; the targets, once pulled, are gone from there.
    assert all(s3_storage.exists(i.part) and not i.outputs.exists(i.target) for i in seen)


def test_a_target_of_other_catalog_bytes_on_object_storage_is_hashed_again(
    tmp_path, make_jpeg, s3_storage
):
    """A target an earlier build left under the same work prefix (killed before the driver
    pulled it), hashed from other catalog bytes: the task hashes the part again, the driver
    never pulls the earlier one."""
    from treeoflife.storage import push_files

    earlier = tmp_path / "earlier"
    old = write_part(earlier, 0, {"eol/0_0": make_jpeg(90)})
    hash_catalog_parts([old], tmp_path / "old", earlier, "run-1", workers=1)
    work = "/".join([SHARED_WORK, "run-1", "hashes", "eol"])
    s3_storage.put(tmp_path / "old" / "part-00000.parquet", f"{work}/part-00000.parquet")

    root = tmp_path / "data"
    part = write_part(root, 0, {"eol/0_0": make_jpeg(1), "eol/0_1": make_jpeg(2)})
    local = hash_catalog_parts([part], tmp_path / "local", root, "run-1", workers=1)
    stores = pq.read_table(part, columns=["image_file"]).column(0).unique().to_pylist()
    push_files(root, stores, s3_storage, tmp_path / "pushed.jsonl")
    out = root / "hashes" / "eol"
    mapped = hash_catalog_parts(
        [part], out, root, "run-1", map_parts=map_out_of_order, shared=s3_storage
    )
    assert mapped.equals(local) and mapped.num_rows == 2
    name = "part-00000.parquet"
    assert (out / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
