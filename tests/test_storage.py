"""Shared storage for fan-out tasks (treeoflife.storage): a folder, or object storage (S3 over
real HTTP to a loopback S3-compatible server), behind one contract."""

from __future__ import annotations

import os

import pytest

from treeoflife.config import StorageConfig, load_config
from treeoflife.errors import ConfigError, OutputError
from treeoflife.exchange import exchange_folder, pull_outputs, task_folder
from treeoflife.io import read_image_bytes
from treeoflife.storage import (
    FsspecStorage,
    LocalStorage,
    open_storage,
    output_path,
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
    assert pull_outputs(s3_storage, ["images/absent.tar", "images/d.tar"], root, ledger=ledger)
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


# --------------------------------------------------------------------------- task outputs

PART = ["images/p.tar", "catalog/p.parquet", "catalog/records/p.parquet"]  # marker last


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_exchange_folder_is_the_folder_itself_or_its_place_on_shared(s3_storage, tmp_path):
    root = tmp_path / "data"
    split = root / "release" / "shards" / "train"
    assert exchange_folder(split, root) == LocalStorage(split.resolve())
    assert exchange_folder(root, root, s3_storage) == s3_storage
    on_s3 = exchange_folder(split, root, s3_storage, under=".work/x")
    assert on_s3 == s3_storage.folder(".work/x/release/shards/train")
    on_s3.write_bytes("a", b"1")
    assert s3_storage.read_bytes(".work/x/release/shards/train/a") == b"1"
    with pytest.raises(ConfigError, match="not inside the data root"):
        exchange_folder(tmp_path / "elsewhere", root, s3_storage)


def test_a_task_writing_in_a_folder_it_does_not_see(storage, tmp_path):
    """`task_folder`: a folder on this disk is used as it is; object storage gets the files
    of a scratch folder, marker last, and only when the task ends without error."""
    local = storage.local_path("")
    with task_folder(storage, PART) as out:
        if local is not None:
            assert out == local
        for rel in PART[:-1]:  # not the marker yet: killed here, nothing is done
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(rel.encode())
        if local is None:
            assert not storage.exists(PART[0])  # nothing leaves before the block ends
        (out / PART[-1]).parent.mkdir(parents=True, exist_ok=True)
        (out / PART[-1]).write_bytes(b"done")
    assert all(storage.read_bytes(rel) for rel in PART)
    # A retried task whose first attempt finished: told so off this disk (on it, the stage's
    # own resume rule decides).
    with task_folder(storage, PART) as again:
        assert again == local
    if local is None:
        scratch = []
        with pytest.raises(RuntimeError), task_folder(storage, ["x/a", "x/done"]) as out:
            scratch.append(out)
            (out / "x").mkdir()
            (out / "x" / "a").write_bytes(b"half")
            raise RuntimeError("the task failed")
        assert not storage.exists("x/a") and not scratch[0].exists()


def test_a_marker_of_other_inputs_is_not_done(s3_storage, tmp_path):
    """A marker an earlier build of other inputs left at the same place (`is_current` says
    so) does not mark this task done, nor can the driver pull it: the task writes again,
    and a file of the earlier output it does not write now is removed, not left to pull."""
    for rel in PART:
        s3_storage.write_bytes(rel, b"earlier")
    is_ours = lambda folder: folder.read_bytes(PART[-1]) == b"ours"  # noqa: E731
    assert not pull_outputs(s3_storage, PART, tmp_path, is_current=is_ours)
    assert not any(tmp_path.iterdir())
    with task_folder(s3_storage, PART, is_ours) as out:
        assert out is not None
        for rel in (PART[0], PART[-1]):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(b"ours")
    assert [s3_storage.exists(rel) for rel in PART] == [True, False, True]
    assert s3_storage.read_bytes(PART[0]) == b"ours"
    with task_folder(s3_storage, PART, is_ours) as again:
        assert again is None  # now it is this task's output
    assert pull_outputs(s3_storage, PART, tmp_path, is_current=is_ours)
    assert not (tmp_path / PART[1]).exists() and (tmp_path / PART[0]).read_bytes() == b"ours"


def test_an_upload_cut_short_over_an_earlier_output_is_not_done(s3_storage, tmp_path):
    """A task redoing an output whose marker stays the same (a rerun: `is_current` tells the
    two apart by another file) removes the marker before uploading: cut short after that
    other file went up, the earlier marker must not make the mix look done."""

    class CutShort(FsspecStorage):
        """The same prefix, its connection lost when the second file goes up."""

        def put(self, local, rel):
            if rel == PART[1]:
                raise ConnectionResetError(f"{rel}: connection lost")
            super().put(local, rel)

    for rel in PART:
        s3_storage.write_bytes(rel, b"before")
    is_redone = lambda folder: folder.read_bytes(PART[0]) != b"before"  # noqa: E731
    cut = CutShort(s3_storage.location, s3_storage.options)
    with pytest.raises(ConnectionResetError), task_folder(cut, PART, is_redone) as out:
        assert out is not None
        for rel in PART:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(b"after" if rel == PART[0] else b"before")
    assert s3_storage.read_bytes(PART[0]) == b"after"
    assert not pull_outputs(s3_storage, PART, tmp_path / "pulled", is_current=is_redone)
    with task_folder(s3_storage, PART, is_redone) as again:
        assert again is not None  # the retried task writes it again


def test_pull_outputs_copies_what_a_task_left_marker_last(storage, tmp_path):
    root, ledger = tmp_path / "data", tmp_path / "state" / "pushed.jsonl"
    # No marker: the task did not finish, nothing is copied.
    storage.write_bytes(PART[0], b"tar")
    assert not pull_outputs(storage, PART, root, ledger=ledger)
    assert not root.exists() and not ledger.exists()
    storage.write_bytes(PART[2], b"record")  # the catalog part was not written: skipped
    assert pull_outputs(storage, PART, root, ledger=ledger)
    assert (root / PART[0]).read_bytes() == b"tar" and (root / PART[2]).read_bytes() == b"record"
    assert not (root / PART[1]).exists()
    assert push_files(root, [PART[0], PART[2]], storage, ledger) == 0  # never sent back
    # `move`: a task's work files are gone from the folder once here.
    assert pull_outputs(storage, PART, tmp_path / "moved", move=True)
    assert not any(storage.exists(rel) for rel in PART)
    assert (tmp_path / "moved" / PART[2]).read_bytes() == b"record"


def test_pull_outputs_from_the_folder_itself_copies_nothing(tmp_path):
    root = tmp_path / "data"
    folder = exchange_folder(root, root)
    assert not pull_outputs(folder, PART, root)  # the marker says whether the task finished
    folder.write_bytes(PART[-1], b"done")
    assert pull_outputs(folder, PART, root, move=True)
    assert (root / PART[-1]).read_bytes() == b"done"  # its own outputs are never removed
    assert not (root / PART[0]).exists()


def test_pull_outputs_checks_the_digest_the_task_recorded(storage, tmp_path):
    out = tmp_path / "split"
    storage.write_bytes("shard-0.tar", b"what the task wrote")
    good = {"shard-0.tar": _sha256(b"what the task wrote")}
    assert pull_outputs(storage, ["shard-0.tar"], out, sha256=good)
    assert (out / "shard-0.tar").read_bytes() == b"what the task wrote"
    stamp = (out / "shard-0.tar").stat().st_mtime_ns
    assert pull_outputs(storage, ["shard-0.tar"], out, sha256=good)  # already here: kept
    assert (out / "shard-0.tar").stat().st_mtime_ns == stamp
    storage.write_bytes("shard-1.tar", b"changed on its way")
    bad = {"shard-1.tar": _sha256(b"what the task wrote")}
    with pytest.raises(OutputError, match="does not match the sha256 its task recorded"):
        pull_outputs(storage, ["shard-1.tar"], out, sha256=bad)
    assert not (out / "shard-1.tar").exists()  # nothing unverified under its name


def test_output_path_for_a_writer_that_renames_itself(storage):
    with output_path(storage, "s/shard.tar", renames_itself=True) as target:
        if storage.local_path("") is not None:
            assert target == storage.local_path("s/shard.tar")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"tar")
    assert storage.read_bytes("s/shard.tar") == b"tar"
