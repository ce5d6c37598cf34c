import tarfile

import pytest

from treeoflife.io import (
    ImageStoreWriter,
    atomic_path,
    md5_hex,
    read_image_bytes,
    remove_stale_temporaries,
    stable_hash64,
    write_bytes_atomic,
)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("killed")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_whole_file(tmp_path):
    final = tmp_path / "a" / "out.txt"
    write_bytes_atomic(final, b"one")
    write_bytes_atomic(final, b"two")
    assert final.read_bytes() == b"two"
    assert [p.name for p in final.parent.iterdir()] == ["out.txt"]


def test_image_store_offsets_read_back_and_tar_is_valid(tmp_path):
    path = tmp_path / "store.tar"
    blobs = {f"k{i}.jpg": bytes([i]) * (100 + 700 * i) for i in range(5)}
    locs = {}
    with ImageStoreWriter(path) as w:
        for name, data in blobs.items():
            locs[name] = w.add(name, data)
    for name, (offset, size) in locs.items():
        assert read_image_bytes(tmp_path, "store.tar", offset, size) == blobs[name]
    with tarfile.open(path) as tf:
        members = tf.getmembers()
        assert [m.name for m in members] == list(blobs)
        assert all(m.mtime == 0 and m.uid == 0 for m in members)


def test_image_store_is_reproducible_and_atomic(tmp_path):
    def write(p):
        with ImageStoreWriter(p) as w:
            w.add("a.jpg", b"x" * 1000)
            w.add("b.jpg", b"y" * 10)

    write(tmp_path / "one.tar")
    write(tmp_path / "two.tar")
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()
    with pytest.raises(ValueError), ImageStoreWriter(tmp_path / "three.tar") as w:
        w.add("a.jpg", b"x")
        raise ValueError("boom")
    assert not (tmp_path / "three.tar").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_short_read_is_an_error(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    with pytest.raises(OSError, match="short read"):
        read_image_bytes(tmp_path, "f", 1, 10)


def test_remove_stale_temporaries_spares_live_writers(tmp_path):
    import os
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / f".part-00001.parquet.{dead_pid}.tmp").write_bytes(b"x")
    (tmp_path / "sub" / ".scratch.tmp").mkdir()  # a scratch folder with no pid
    (tmp_path / "sub" / f".db.duckdb.{dead_pid}.tmp.wal").write_bytes(b"w")  # derived by a tool
    # our pid, but not being written by us: an earlier process with the same pid left it
    (tmp_path / "sub" / f".part-00003.parquet.{os.getpid()}.tmp").write_bytes(b"old")
    (tmp_path / "sub" / "part-00000.parquet").write_bytes(b"x")
    with atomic_path(tmp_path / "sub" / "part-00002.parquet") as live:
        live.write_bytes(b"live")
        (tmp_path / "sub" / f"{live.name}.wal").write_bytes(b"w")  # a tool's, beside ours
        assert remove_stale_temporaries(tmp_path) == 4
        assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == [
            f".part-00002.parquet.{os.getpid()}.tmp",
            f".part-00002.parquet.{os.getpid()}.tmp.wal",
            "part-00000.parquet",
        ]


def test_stable_hash_is_stable_and_separates_parts():
    assert stable_hash64("a", "b") == stable_hash64("a", "b")
    assert stable_hash64("a", "b") != stable_hash64("ab")
    assert md5_hex(b"") == "d41d8cd98f00b204e9800998ecf8427e"
