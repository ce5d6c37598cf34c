"""The shard driver's per-shard tasks (treeoflife.shards.tasks): whatever runs the tasks and in
whatever order they finish, the files are those of the driver's in-process path, byte for byte."""

import json

import numpy as np
import pyarrow as pa
import pytest

from tests.support.fanout import map_out_of_order
from treeoflife.errors import InputError
from treeoflife.fanout import map_in_order
from treeoflife.shards.manifest import MANIFEST_FILE, ShardEntry
from treeoflife.shards.settings import ShardSettings
from treeoflife.shards.tasks import (
    ROWS_FILE,
    ROWS_SCHEMA,
    WORK_DIR,
    MappedSplit,
    OrderedRows,
    ShardTask,
    plan_shards,
    write_planned_shard,
)
from treeoflife.shards.writer import write_split_shards

from .conftest import make_rows

ARGS = {"image_size": 64, "jpeg_quality": 90, "text_type": "taxon_com", "seed": 0}


def _table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=ROWS_SCHEMA)


def _settings(**args) -> ShardSettings:
    return ShardSettings(**ARGS, **args)


def _mapped(table, keys, out, data_root, mapper, assign_location=True, shared=None, **args):
    """write_split_shards with per-shard tasks run by `mapper`."""
    return write_split_shards(
        table,
        out,
        _settings(**args),
        data_root=data_root,
        keys=keys,
        assign_location=assign_location,
        map_parts=mapper,
        shared=shared,
    )


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _both(tmp_path, data_root, rows, keys=None, mapper=map_in_order, assign_location=True, **a):
    """(in-process folder, mapped folder) for the same rows and settings."""
    keys = [r["key"] for r in rows] if keys is None else keys
    by_key = {r["key"]: r for r in rows}
    seq, mapped = tmp_path / "seq" / "train", tmp_path / "mapped" / "train"
    one = write_split_shards(
        [by_key[k] for k in keys],
        seq,
        _settings(**a),
        data_root=data_root,
        assign_location=assign_location,
    )
    two = _mapped(_table(rows), keys, mapped, data_root, mapper, assign_location, **a)
    assert one.shards == two.shards
    return seq, mapped


@pytest.mark.parametrize(
    "n, args",
    [
        (10, {"samples_per_shard": 4}),  # no byte limit: boundaries by count
        (12, {"samples_per_shard": 100, "max_shard_bytes": 60_000}),  # a few per shard
        (3, {"samples_per_shard": 100, "max_shard_bytes": 1}),  # every sample alone
        (25, {"samples_per_shard": 100, "max_shard_bytes": 200_000}),  # positions pass 9
        (9, {"samples_per_shard": 2, "max_shard_bytes": 200_000}),  # the count ends shards
        (12, {"samples_per_shard": 100, "max_shard_bytes": 60_000, "assign_location": False}),
    ],
)
def test_same_bytes_as_the_sequential_writer(tmp_path, data_root, n, args):
    rows = make_rows(data_root, n)
    rows.reverse()  # shard order is the keys' order, not the table's
    keys = [r["key"] for r in rows]
    rows.reverse()
    seq, mapped = _both(tmp_path, data_root, rows, keys, map_out_of_order, **args)
    assert _files(seq) == _files(mapped)
    assert not (mapped / WORK_DIR).exists() and not list(mapped.glob(".*"))
    if args.get("max_shard_bytes", 0) > 1:
        sizes = json.loads((mapped / "sizes.json").read_text())
        assert len(sizes) > 1  # the limit split the split


def test_positions_past_99_in_a_byte_limited_shard(tmp_path, data_root):
    rows = make_rows(data_root, 105)
    seq, mapped = _both(
        tmp_path, data_root, rows, samples_per_shard=103, max_shard_bytes=20_000_000
    )
    assert json.loads((mapped / "sizes.json").read_text()) == {
        "shard-000000.tar": 103,
        "shard-000001.tar": 2,
    }
    assert _files(seq) == _files(mapped)


def test_plan_ends_shards_where_the_limits_say():
    # rows of (jpg, padded text, json): 1024 + 512-padded members, so every sample is 3 KiB
    sizes = np.array([[1000, 512, 400]] * 10, dtype=np.int64)
    params = {"samples_per_shard": 4, "max_shard_bytes": 0, "assign_location": False}
    assert [(s, e) for s, e, _ in plan_shards(iter([sizes]), params)] == [(0, 4), (4, 8), (8, 10)]
    # 10 KiB record padding: 3 samples (9 KiB) + 1 KiB end blocks fill one record exactly
    params = {"samples_per_shard": 100, "max_shard_bytes": 10_240, "assign_location": False}
    plan = plan_shards(iter([sizes[:5], sizes[5:]]), params)  # chunks do not matter
    assert plan == [(0, 3, 10_240), (3, 6, 10_240), (6, 9, 10_240), (9, 10, 10_240)]


def test_empty_split(tmp_path, data_root):
    seq, mapped = _both(tmp_path, data_root, [], samples_per_shard=4)
    assert _files(seq) == _files(mapped)
    assert json.loads((mapped / "sizes.json").read_text()) == {}


def test_keys_missing_from_the_catalog_fail_clearly(tmp_path, data_root):
    rows = make_rows(data_root, 3)
    keys = ["inat21/img0000", "inat21/nope"]
    for mapper in (None, map_in_order):
        with pytest.raises(InputError, match="1 keys to shard are not in the catalog"):
            _mapped(_table(rows), keys, tmp_path / "train", data_root, mapper)


def _stop_after(n: int):
    """A mapper whose driver dies (KeyboardInterrupt) after n results came back."""

    def mapper(fn, items):
        for i, item in enumerate(items):
            if i == n:
                raise KeyboardInterrupt
            yield fn(item)

    return mapper


@pytest.mark.parametrize("max_bytes", [0, 60_000])
def test_killed_run_resumes_with_the_same_bytes(tmp_path, data_root, max_bytes):
    rows = make_rows(data_root, 10)
    args = {"samples_per_shard": 4, "max_shard_bytes": max_bytes}
    seq, _ = _both(tmp_path, data_root, rows, **args)
    out = tmp_path / "killed" / "train"
    keys = [r["key"] for r in rows]
    with pytest.raises(KeyboardInterrupt):
        _mapped(_table(rows), keys, out, data_root, _stop_after(2), **args)
    # What finished is recorded for the rerun: shards in the manifest, or encoded chunks.
    manifest = out / MANIFEST_FILE
    shards = json.loads(manifest.read_text())["shards"] if manifest.exists() else {}
    chunks = list((out / WORK_DIR).glob("chunk-*.json"))
    assert sorted(shards) == (["shard-000000.tar", "shard-000001.tar"] if not max_bytes else [])
    assert bool(chunks) == bool(max_bytes)
    shard0 = out / "shard-000000.tar"
    first = shard0.stat().st_mtime_ns if shard0.exists() else None
    _mapped(_table(rows), keys, out, data_root, map_in_order, **args)
    assert _files(out) == _files(seq)
    if first is not None:
        assert shard0.stat().st_mtime_ns == first  # kept, not rewritten
    assert not (out / WORK_DIR).exists()


def test_a_retried_shard_task_writes_the_same_shard(tmp_path, data_root):
    rows = make_rows(data_root, 6)
    out = tmp_path / "train"
    keys = [r["key"] for r in rows]
    table = _table(rows)
    _mapped(table, keys, out, data_root, map_in_order, samples_per_shard=4)
    before = (out / "shard-000000.tar").read_bytes()
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    # Run shard 0's task again by hand, as a worker retry would, with a fresh .work folder.
    settings = _settings(samples_per_shard=4)
    split = MappedSplit(
        OrderedRows.from_table(table, keys), out, data_root, settings, manifest["params"]
    )
    assert (out / WORK_DIR / ROWS_FILE).exists()
    for _ in range(2):
        result = write_planned_shard(ShardTask(split.job, 0, 0, 4))
        assert result.entry == ShardEntry(**manifest["shards"]["shard-000000.tar"])
        assert result.index.num_rows == 4
        assert (out / "shard-000000.tar").read_bytes() == before


def test_an_earlier_sequential_build_is_reused(tmp_path, data_root, caplog):
    rows = make_rows(data_root, 8)
    out = tmp_path / "train"
    write_split_shards(rows, out, _settings(samples_per_shard=4), data_root=data_root)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.tar")}
    caplog.set_level("INFO")
    keys = [r["key"] for r in rows]
    _mapped(_table(rows), keys, out, data_root, map_in_order, samples_per_shard=4)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.tar")} == before
    assert "already written" in caplog.text


def _push_stores(data_root, rows, shared, ledger):
    from treeoflife.storage import push_files

    push_files(data_root, sorted({r["image_file"] for r in rows}), shared, ledger)


@pytest.mark.parametrize(
    "args",
    [
        {"samples_per_shard": 4},
        {"samples_per_shard": 100, "max_shard_bytes": 60_000},  # the encode pass runs there too
    ],
)
def test_tasks_on_object_storage_give_the_same_files(tmp_path, data_root, s3_storage, args):
    rows = make_rows(data_root, 10)
    _push_stores(data_root, rows, s3_storage, tmp_path / "pushed.jsonl")
    keys = [r["key"] for r in rows]
    seq = tmp_path / "seq" / "train"
    write_split_shards(rows, seq, _settings(**args), data_root=data_root)
    ran: list[str] = []

    def mapper(fn, items):
        items = list(items)
        ran.extend(fn.__name__ for _ in items)
        assert all(i.job.images == s3_storage for i in items)  # tasks see shared storage only
        assert all(i.job.files == s3_storage.folder("release/shards/train") for i in items)
        yield from map_out_of_order(fn, items)

    out = data_root / "release" / "shards" / "train"  # its place on shared storage too

    def write():
        return _mapped(_table(rows), keys, out, data_root, mapper, shared=s3_storage, **args)

    write()
    expected = _files(seq)
    assert _files(out) == expected
    assert not (out / WORK_DIR).exists() and not list(out.glob(".*"))
    # The whole split is on shared storage too, and nothing else.
    assert s3_storage.list("release/shards/train") == sorted(expected)
    assert all(s3_storage.read_bytes(f"release/shards/train/{n}") == expected[n] for n in expected)
    assert not s3_storage.exists(f"release/shards/train/{WORK_DIR}/{ROWS_FILE}")

    # A rerun with the same inputs keeps every shard the first run left in the split folder.
    ran.clear()
    write()
    assert "write_planned_shard" not in ran
    assert _files(out) == expected


def test_a_shard_that_changed_on_its_way_back_is_refused(tmp_path, data_root, s3_storage):
    from treeoflife.errors import OutputError

    rows = make_rows(data_root, 6)
    _push_stores(data_root, rows, s3_storage, tmp_path / "pushed.jsonl")

    def corrupting(fn, items):
        for item in items:
            result = fn(item)
            name = result.name
            s3_storage.write_bytes(f"train/{name}", b"x" * result.entry.bytes)  # same size
            yield result

    out = data_root / "train"
    keys, four = [r["key"] for r in rows], {"samples_per_shard": 4}
    with pytest.raises(OutputError, match="does not match the sha256"):
        _mapped(_table(rows), keys, out, data_root, corrupting, shared=s3_storage, **four)
    assert not list(out.glob("shard-*.tar"))  # nothing unverified under a release name
