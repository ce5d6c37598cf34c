import argparse
import io
import json
import tarfile

import open_clip
import pyarrow.parquet as pq
import pytest
import torch
import webdataset as wds
from open_clip_train.data import get_dataset_size, get_wds_dataset

from treeoflife.errors import ConfigError, InputError
from treeoflife.io import file_sha256
from treeoflife.shards.manifest import INDEX_SCHEMA
from treeoflife.shards.settings import ShardSettings
from treeoflife.shards.shard_file import (
    ShardInfo,
    scan_shard,
    write_shard,
    write_shards,
)
from treeoflife.shards.text import CAPTION_MEMBERS, caption_members, text_for
from treeoflife.shards.writer import write_split_shards

from .conftest import assign_shards, jpeg_bytes, make_rows

SHARD_ARGS = {
    "image_size": 64,
    "jpeg_quality": 90,
    "text_type": "taxon_com",
    "seed": 0,
    "samples_per_shard": 4,
}


def _write(rows, out, data_root, total=None, progress=None, **args):
    """write_split_shards in this process with SHARD_ARGS, `args` overriding settings."""
    settings = ShardSettings(**{**SHARD_ARGS, **args})
    return write_split_shards(
        rows, out, settings, data_root=data_root, total=total, progress=progress
    )


def _sample(i: int) -> dict:
    row = {"key": f"k{i}", "kingdom": "Animalia", "genus": "Corvus", "species": "corax"}
    return {
        "__key__": f"id-{i}",
        "jpg": jpeg_bytes(i, 40, 30),
        **caption_members(row),
        "txt": text_for(row, "sci", row["key"], 0),
        "json": {"key": row["key"], "phash": 2**64 - 1, "name": "Grand corbeau é"},
    }


def test_assign_shards_is_pure_and_fills_shards_in_order():
    keys = [f"k{i}" for i in range(10)]
    out = assign_shards(keys, "val", 4)
    assert out == assign_shards(keys, "val", 4)
    assert out[0] == ("val/shard-000000.tar", 0)
    assert out[3] == ("val/shard-000000.tar", 3)
    assert out[4] == ("val/shard-000001.tar", 0)
    assert out[9] == ("val/shard-000002.tar", 1)
    with pytest.raises(ValueError):
        assign_shards(keys, "val", 0)


def test_write_shard_member_order_and_reproducible_bytes(tmp_path):
    samples = [_sample(i) for i in range(3)]
    a = write_shard(tmp_path / "a" / "shard-000000.tar", samples)
    b = write_shard(tmp_path / "b" / "shard-000000.tar", samples)
    assert a == b and isinstance(a, ShardInfo)
    assert a.samples == 3 and a.name == "shard-000000.tar"
    path = tmp_path / "a" / "shard-000000.tar"
    assert path.read_bytes() == (tmp_path / "b" / "shard-000000.tar").read_bytes()
    assert a.bytes == path.stat().st_size and a.sha256 == file_sha256(path)
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    expected = ["jpg", *CAPTION_MEMBERS, "txt", "json"]
    assert [m.name for m in members[: len(expected)]] == [f"id-0.{e}" for e in expected]
    assert {(m.mtime, m.uid, m.gid, m.mode, m.uname) for m in members} == {(0, 0, 0, 0o644, "")}
    assert not list(tmp_path.rglob("*.tmp"))


def test_write_shard_json_is_compact_sorted_utf8(tmp_path):
    write_shard(tmp_path / "s.tar", [_sample(0)])
    with tarfile.open(tmp_path / "s.tar") as tar:
        raw = tar.extractfile("id-0.json").read()
    assert raw == '{"key":"k0","name":"Grand corbeau é","phash":18446744073709551615}'.encode()


@pytest.mark.parametrize("bad_key", ["inat21/abc", "a.b", "", None])
def test_write_shard_rejects_unsafe_keys_and_leaves_no_file(tmp_path, bad_key):
    sample = {**_sample(0), "__key__": bad_key}
    with pytest.raises(ValueError):
        write_shard(tmp_path / "s.tar", [_sample(1), sample])
    assert list(tmp_path.iterdir()) == []


def test_write_shard_requires_every_member(tmp_path):
    sample = _sample(0)
    del sample["taxonTag_com.txt"]
    with pytest.raises(ValueError, match="taxonTag_com.txt"):
        write_shard(tmp_path / "s.tar", [sample])


def _names(out):
    return sorted(p.name for p in out.glob("shard-*.tar"))


def test_split_shards_read_back_with_webdataset(tmp_path, data_root):
    rows = make_rows(data_root, 10)
    out = tmp_path / "release" / "shards" / "train"
    written = _write(rows, out, data_root)
    assert [i.name for i in written.shards] == _names(out)
    assert _names(out) == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert [i.samples for i in written.shards] == [4, 4, 2] and written.samples == 10
    sizes = json.loads((out / "sizes.json").read_text())
    assert sizes == {"shard-000000.tar": 4, "shard-000001.tar": 4, "shard-000002.tar": 2}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["samples"] == 10
    assert manifest["shards"]["shard-000001.tar"]["sha256"] == file_sha256(out / "shard-000001.tar")

    url = str(out / "shard-{000000..000002}.tar")
    samples = list(wds.WebDataset(url, shardshuffle=False).decode("pil"))
    by_id = {r["treeoflife_id"]: r for r in rows}
    assert [s["__key__"] for s in samples] == [r["treeoflife_id"] for r in rows]  # row order
    for i, s in enumerate(samples):
        row = by_id[s["__key__"]]
        assert min(s["jpg"].size) == 64
        assert s["txt"] == text_for(row, "taxon_com", row["key"], 0)
        for member, text in caption_members(row).items():
            assert s[member.lower()] == text  # webdataset lower-cases suffixes (taxontag.txt)
        assert s["json"]["key"] == row["key"]
        assert s["json"]["phash"] == f"{row['phash']:016x}"  # 16 hex digits, not a uint64
        # The writer places each row: the json member says where the sample is.
        assert s["json"]["shard"] == f"train/shard-{i // 4:06d}.tar"
        assert s["json"]["shard_position"] == i % 4
        assert "image_offset" not in s["json"]


def test_index_lets_a_reader_seek_to_any_sample(tmp_path, data_root):
    rows = make_rows(data_root, 7)
    out = tmp_path / "train"
    written = _write(rows, out, data_root)
    index = pq.read_table(written.index)
    assert index.schema.equals(INDEX_SCHEMA, check_metadata=False)
    assert pq.ParquetFile(written.index).num_row_groups == 2  # one per shard
    assert index.column("key").to_pylist() == [r["key"] for r in rows]
    for entry in index.to_pylist():
        with open(out / entry["shard"], "rb") as fh:
            fh.seek(entry["offset"])
            blob = fh.read(entry["size"])
            fh.seek(entry["jpg_offset"])
            jpg = fh.read(entry["jpg_size"])
        with tarfile.open(fileobj=io.BytesIO(blob + b"\0" * 1024)) as tar:  # a mini tar
            names = tar.getnames()
            assert tar.extractfile(f"{entry['treeoflife_id']}.jpg").read() == jpg
            meta = json.loads(tar.extractfile(f"{entry['treeoflife_id']}.json").read())
        assert len(names) == 13 and meta["shard_position"] == entry["position"]
    # The index of a shard on disk, read back from its headers, is the one written.
    scanned = [r for name in _names(out) for r in scan_shard(out / name)]
    assert scanned == index.to_pylist()


def test_same_bytes_whatever_the_worker_count(tmp_path, data_root):
    rows = make_rows(data_root, 9)
    a, b = tmp_path / "a" / "train", tmp_path / "b" / "train"
    _write(rows, a, data_root)
    _write(rows, b, data_root, workers=2)
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    assert {"index.parquet", "manifest.json", "sizes.json", "shard-000002.tar"} <= set(files)
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_byte_target_bounds_every_shard(tmp_path, data_root):
    rows = make_rows(data_root, 12)
    args = {**SHARD_ARGS, "samples_per_shard": 100}
    one = _write(rows, tmp_path / "one", data_root, **args)
    assert [s.samples for s in one.shards] == [12]
    limit = one.shards[0].bytes // 3
    written = _write(rows, tmp_path / "t", data_root, **args, max_shard_bytes=limit)
    assert len(written.shards) >= 3 and written.samples == 12
    assert all(s.bytes <= limit for s in written.shards)
    assert all(s.bytes == (tmp_path / "t" / s.name).stat().st_size for s in written.shards)
    # A sample bigger than the limit still gets written, alone in its shard.
    tiny = _write(rows[:3], tmp_path / "tiny", data_root, **args, max_shard_bytes=1)
    assert [s.samples for s in tiny.shards] == [1, 1, 1]


def test_resume_keeps_finished_shards_and_rewrites_the_rest(tmp_path, data_root, caplog):
    rows = make_rows(data_root, 10)
    clean_dir, out = tmp_path / "clean" / "train", tmp_path / "train"
    clean = _write(rows, clean_dir, data_root)

    def killed_after(n):
        for i, row in enumerate(rows):
            if i == n:
                raise KeyboardInterrupt  # the process dies mid-shard
            yield row

    with pytest.raises(KeyboardInterrupt):
        _write(killed_after(6), out, data_root)
    assert _names(out) == ["shard-000000.tar"]  # the shard in progress left nothing behind
    assert not list(out.glob(".*"))
    first_mtime = (out / "shard-000000.tar").stat().st_mtime_ns
    (out / "shard-000099.tar").write_bytes(b"stale")  # from a bigger earlier build
    dead = (1 << 22) + 1  # above any pid_max: a writer that cannot be alive
    (out / f".shard-000002.tar.{dead}.tmp").write_bytes(b"partial")  # a killed writer's
    caplog.set_level("INFO")
    resumed = _write(rows, out, data_root)
    assert resumed.shards == clean.shards
    assert (out / "shard-000000.tar").stat().st_mtime_ns == first_mtime  # not rewritten
    assert "already written" in caplog.text
    assert _names(out) == _names(clean_dir) and not list(out.glob(".*"))
    for name in ("shard-000001.tar", "index.parquet", "manifest.json", "sizes.json"):
        assert (out / name).read_bytes() == (clean_dir / name).read_bytes(), name

    # A corrupted shard is rewritten, with the same bytes.
    bad = out / "shard-000001.tar"
    bad.write_bytes(bad.read_bytes()[:1000])
    again = _write(rows, out, data_root)
    assert again.shards == clean.shards
    assert bad.read_bytes() == (clean_dir / "shard-000001.tar").read_bytes()


def test_changed_settings_rewrite_shards(tmp_path, data_root):
    rows = make_rows(data_root, 4)
    out = tmp_path / "train"
    first = _write(rows, out, data_root)
    second = _write(rows, out, data_root, **{**SHARD_ARGS, "image_size": 32})
    assert first.shards[0].sha256 != second.shards[0].sha256
    with tarfile.open(out / "shard-000000.tar") as tar:
        names = tar.getnames()
    assert len(names) == 4 * 13


def test_square_mode_and_random_text_type(tmp_path, data_root):
    rows = make_rows(data_root, 12)
    args = {**SHARD_ARGS, "resize_mode": "square", "text_type": "random", "seed": 3}
    _write(rows, tmp_path / "t", data_root, **args)
    samples = list(
        wds.WebDataset(
            str(tmp_path / "t" / "shard-{000000..000002}.tar"), shardshuffle=False
        ).decode("pil")
    )
    assert {s["jpg"].size for s in samples} == {(64, 64)}
    kinds = set()
    for s, row in zip(samples, rows, strict=True):
        assert s["txt"] == text_for(row, "random", row["key"], 3)
        kinds.add(
            next(
                m
                for m in ("sci", "com", "taxon", "sci_com", "taxon_com")
                if s[f"{m}.txt"] == s["txt"]
            )
        )
    assert len(kinds) >= 3  # a mixture, as BioCLIP trained


def test_bad_row_fails_naming_it_and_leaves_no_partial_shard(tmp_path, data_root):
    rows = make_rows(data_root, 6)
    for col in ("kingdom", "phylum", "class", "order", "family", "genus", "species"):
        rows[5][col] = None
    rows[5]["scientific_name"] = None
    with pytest.raises(InputError, match="img0005.*no taxonomy"):
        _write(rows, tmp_path / "t", data_root)
    assert _names(tmp_path / "t") == ["shard-000000.tar"]  # finished before the bad row
    assert not list((tmp_path / "t").glob(".*"))
    rows = make_rows(data_root, 2)
    rows[1]["treeoflife_id"] = "a/b"
    with pytest.raises(InputError, match="treeoflife_id"):
        _write(rows, tmp_path / "u", data_root)
    with pytest.raises(ConfigError, match="shards.text_type: 'x'"):
        _write(rows, tmp_path / "u", data_root, **{**SHARD_ARGS, "text_type": "x"})


@pytest.mark.parametrize("workers", [1, 2])
def test_unreadable_image_names_the_row(tmp_path, data_root, workers):
    rows = make_rows(data_root, 3)
    rows[1]["image_size"] += 10_000_000
    with pytest.raises(InputError, match="img0001"):
        _write(rows, tmp_path / "t", data_root, workers=workers)
    assert not list((tmp_path / "t").glob("*.tar"))


def test_open_clip_loader_reads_the_shards(tmp_path, data_root):
    rows = make_rows(data_root, 12, samples_per_shard=5)
    out = tmp_path / "shards" / "train"
    _write(rows, out, data_root, **{**SHARD_ARGS, "samples_per_shard": 5})
    url = str(out / "shard-{000000..000002}.tar")
    assert get_dataset_size(url) == (12, 3)

    args = argparse.Namespace(
        train_data=url,
        val_data=None,
        train_num_samples=None,  # open_clip must take it from sizes.json
        dataset_resampled=False,
        train_data_upsampling_factors=None,
        seed=0,
        batch_size=4,
        workers=0,
        world_size=1,
    )
    preprocess = open_clip.image_transform(32, is_train=False)
    tokenizer = open_clip.get_tokenizer("RN50")
    info = get_wds_dataset(args, preprocess, is_train=True, tokenizer=tokenizer)
    assert info.dataloader.num_samples == 12
    batches = list(info.dataloader)
    assert len(batches) == 3
    images, texts = batches[0]
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    assert texts.shape == (4, 77) and texts.dtype == torch.long
    expected = {tuple(tokenizer(text_for(r, "taxon_com", r["key"], 0))[0].tolist()) for r in rows}
    assert {tuple(t.tolist()) for _, ts in batches for t in ts} <= expected


class _RecordingProgress:
    def __init__(self):
        self.events = []

    def start(self, stage, total):
        self.events.append(("start", total))

    def advance(self, n=1):
        self.events.append(("advance", n))

    def finish(self):
        self.events.append(("finish", None))


def test_progress_counts_every_row(tmp_path, data_root):
    rows = make_rows(data_root, 9)
    progress = _RecordingProgress()
    _write(rows, tmp_path / "t", data_root, total=len(rows), progress=progress)
    assert progress.events[0] == ("start", 9) and progress.events[-1] == ("finish", None)
    assert sum(n for kind, n in progress.events if kind == "advance") == 9


def test_write_shards_are_final_and_equal_single_writes(tmp_path):
    chunks = [[_sample(3 * i + j) for j in range(3)] for i in range(3)]
    infos = write_shards([(tmp_path / "many" / f"s{i}.tar", c) for i, c in enumerate(chunks)])
    for i, chunk in enumerate(chunks):
        single = write_shard(tmp_path / "one" / f"s{i}.tar", chunk)
        assert infos[i] == single
        assert (tmp_path / "many" / f"s{i}.tar").read_bytes() == (
            tmp_path / "one" / f"s{i}.tar"
        ).read_bytes()
    assert not list((tmp_path / "many").glob(".*"))


def test_write_shards_error_keeps_finished_shards_and_no_partial(tmp_path):
    good = [_sample(0), _sample(1)]
    bad = [_sample(2), {**_sample(3), "__key__": "bad.key"}]
    with pytest.raises(ValueError, match="bad.key"):
        write_shards([(tmp_path / "s0.tar", good), (tmp_path / "s1.tar", bad)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s0.tar"]


def test_split_shards_are_final_when_yielded(tmp_path, data_root, monkeypatch):
    """Shards close in the background while the next is written: each shard the writer
    yields (and the manifest lists) is already under its final name with its sha256."""
    import treeoflife.shards.writer as writer_module

    seen = []
    real = writer_module._stream_shards

    def spy(*args, **kwargs):
        for result in real(*args, **kwargs):
            path = args[1] / result.name
            seen.append(result.name)
            assert path.exists() and file_sha256(path) == result.entry.sha256
            yield result

    monkeypatch.setattr(writer_module, "_stream_shards", spy)
    rows = make_rows(data_root, 10)
    out = _write(rows, tmp_path / "train", data_root)
    assert seen == [s.name for s in out.shards] and len(seen) == 3
    assert not list((tmp_path / "train").glob(".*"))
