"""Evaluation images are hashed again exactly when they change: the hash stage keeps each
file's hashes under its filepath, size and mtime (a file unchanged since is not read again)."""

from __future__ import annotations

import os

from tests.incremental.drift import new_jpeg
from treeoflife.dedup import hash_evalset_rows
from treeoflife.io import md5_hex


def rows(names):
    return [{"filepath": n, "genus": "Corvus", "species": "corax", "class": "raven"} for n in names]


def test_a_replaced_image_is_hashed_again_an_unchanged_one_is_not(tmp_path):
    root, cache = tmp_path / "set", tmp_path / "state" / "cache.parquet"
    root.mkdir()
    for i in range(3):
        (root / f"{i}.jpg").write_bytes(new_jpeg(i))
    first = hash_evalset_rows("s", rows(["0.jpg", "1.jpg", "2.jpg"]), root, cache)
    assert first["md5"].to_pylist() == [md5_hex(new_jpeg(i)) for i in range(3)]

    # same size and mtime, other bytes: the cache vouches for it (the key is size + mtime) ...
    st = (root / "1.jpg").stat()
    same_size = new_jpeg(1)[:-2] + b"\xff\xd9"  # another JPEG ending, same length
    (root / "1.jpg").write_bytes(same_size)
    os.utime(root / "1.jpg", ns=(st.st_atime_ns, st.st_mtime_ns))
    again = hash_evalset_rows("s", rows(["0.jpg", "1.jpg", "2.jpg"]), root, cache)
    assert again["md5"].to_pylist() == first["md5"].to_pylist()

    # ... a replaced file (new mtime) is read and hashed again
    (root / "2.jpg").write_bytes(new_jpeg(9))
    replaced = hash_evalset_rows("s", rows(["0.jpg", "1.jpg", "2.jpg"]), root, cache)
    assert replaced["md5"].to_pylist()[2] == md5_hex(new_jpeg(9))
    assert replaced["phash"].to_pylist()[2] != first["phash"].to_pylist()[2]
    # rows 0 and 2 as hashing without a cache gives (row 1 is the one the cache vouched for)
    fresh = hash_evalset_rows("s", rows(["0.jpg", "1.jpg", "2.jpg"]), root).to_pylist()
    got = replaced.to_pylist()
    assert (got[0], got[2]) == (fresh[0], fresh[2])
