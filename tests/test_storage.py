"""Shared storage for fan-out tasks (treeoflife.storage): a folder, or object storage (S3 over
real HTTP to a loopback S3-compatible server), behind one contract."""

from __future__ import annotations

import os

import pytest

from treeoflife.config import StorageConfig, load_config
from treeoflife.errors import ConfigError
from treeoflife.io import read_image_bytes
from treeoflife.storage import (
    FsspecStorage,
    LocalStorage,
    open_storage,
    pull_files,
    push_files,
    shared_storage,
)


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "shared")
    return request.getfixturevalue("s3_storage")


def test_files_round_trip(storage, tmp_path):
    assert not storage.exists("a/b.bin") and storage.size("a/b.bin") is None
    assert storage.list("a") == []
    storage.write_bytes("a/b.bin", b"0123456789" * 100)
    assert storage.exists("a/b.bin") and storage.size("a/b.bin") == 1000
    assert storage.read_bytes("a/b.bin", 5, 15) == b"5678901234"
    assert read_image_bytes(storage, "a/b.bin", 990, 10) == b"0123456789"
    with pytest.raises(OSError, match="short read"):
        read_image_bytes(storage, "a/b.bin", 995, 10)
    with storage.open("a/b.bin") as fh:
        fh.seek(100)
        assert fh.read(3) == b"012"

    local = tmp_path / "local.bin"
    local.write_bytes(os.urandom(3_000_000))
    storage.put(local, "a/c.bin")
    storage.get("a/c.bin", tmp_path / "back" / "c.bin")
    assert (tmp_path / "back" / "c.bin").read_bytes() == local.read_bytes()
    assert not [p for p in (tmp_path / "back").iterdir() if p.name != "c.bin"]  # no temporary
    assert storage.list("a") == ["b.bin", "c.bin"]

    storage.remove("a/b.bin")
    storage.remove("a/b.bin")  # removing what is gone is not an error
    assert storage.list("a") == ["c.bin"]
    storage.remove_tree("a")
    assert not storage.exists("a/c.bin")


def test_storage_objects_travel_to_workers(s3_storage):
    import pickle

    s3_storage.write_bytes("x", b"1")
    copy = pickle.loads(pickle.dumps(s3_storage))  # the filesystem is reopened where it runs
    assert copy == s3_storage and copy.read_bytes("x") == b"1"


def test_push_copies_what_is_missing_and_resumes(s3_storage, tmp_path):
    root, ledger = tmp_path / "data", tmp_path / "state" / "pushed.jsonl"
    for name in ("a", "b", "c"):
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "images" / f"{name}.tar").write_bytes(name.encode() * 1000)
    rels = ["images/a.tar", "images/b.tar", "images/c.tar"]
    # Interrupted after two files (the third is missing): those two stay done.
    with pytest.raises(FileNotFoundError):
        push_files(root, [*rels[:2], "images/missing.tar", rels[2]], s3_storage, ledger)
    assert push_files(root, rels, s3_storage, ledger) == 1  # only c
    assert push_files(root, rels, s3_storage, ledger) == 0
    (root / "images" / "b.tar").write_bytes(b"changed")  # a new size and mtime: copied again
    assert push_files(root, rels, s3_storage, ledger) == 1
    assert s3_storage.read_bytes("images/b.tar") == b"changed"
    s3_storage.remove("images/a.tar")  # gone there: copied again whatever the ledger says
    assert push_files(root, rels, s3_storage, ledger) == 1
    # What a task left there and the driver pulled is never sent back.
    s3_storage.write_bytes("images/d.tar", b"from a worker")
    pull_files(s3_storage, ["images/d.tar", "images/absent.tar"], root, ledger)
    assert (root / "images" / "d.tar").read_bytes() == b"from a worker"
    assert not (root / "images" / "absent.tar").exists()
    assert push_files(root, [*rels, "images/d.tar"], s3_storage, ledger) == 0


def test_locations_and_config(tmp_path):
    assert open_storage(tmp_path) == LocalStorage(tmp_path)
    assert open_storage(f"file://{tmp_path}") == LocalStorage(tmp_path)
    assert isinstance(open_storage("s3://bucket/prefix"), FsspecStorage)
    with pytest.raises(ConfigError, match="storage.shared"):
        StorageConfig(shared="bucket/prefix")
    with pytest.raises(ConfigError, match="storage.shared: cannot open nosuchproto://x"):
        FsspecStorage("nosuchproto://x").exists("y")
    # In a config file: checked before any work starts, the key named.
    config = tmp_path / "c.yaml"
    for text, match in [
        ("storage: {shared: my-bucket/x}", "storage.shared"),
        ("storage: {sharde: s3://b/x}", "sharde"),
        ("storage: {shared: s3://b/x, options: [1]}", "storage.options"),
    ]:
        config.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_config(config)
    config.write_text("storage: {shared: s3://b/x, options: {anon: true}}")
    cfg = load_config(config)
    assert shared_storage(cfg) == FsspecStorage("s3://b/x") and shared_storage(cfg).options
