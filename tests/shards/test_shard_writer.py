import argparse
import json
import tarfile

import open_clip
import pytest
import torch
import webdataset as wds
from open_clip_train.data import get_dataset_size, get_wds_dataset

from treeoflife.errors import InputError
from treeoflife.shards.text import CAPTION_MEMBERS, caption_members, text_for
from treeoflife.shards.writer import (
    ShardInfo,
    assign_shards,
    file_sha256,
    write_shard,
    write_split_shards,
)

from .conftest import jpeg_bytes, make_rows

SHARD_ARGS = {"image_size": 64, "jpeg_quality": 90, "text_type": "taxon_com", "seed": 0}


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


def test_split_shards_read_back_with_webdataset(tmp_path, data_root):
    rows = make_rows(data_root, 10)
    out = tmp_path / "release" / "shards" / "train"
    infos = write_split_shards(rows, out, data_root, **SHARD_ARGS)
    assert [i.name for i in infos] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert [i.samples for i in infos] == [4, 4, 2]
    sizes = json.loads((out / "sizes.json").read_text())
    assert sizes == {"shard-000000.tar": 4, "shard-000001.tar": 4, "shard-000002.tar": 2}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["samples"] == 10
    assert manifest["shards"]["shard-000001.tar"]["sha256"] == file_sha256(out / "shard-000001.tar")

    url = str(out / "shard-{000000..000002}.tar")
    samples = list(wds.WebDataset(url, shardshuffle=False).decode("pil"))
    by_id = {r["treeoflife_id"]: r for r in rows}
    assert [s["__key__"] for s in samples] == [r["treeoflife_id"] for r in rows]
    for s in samples:
        row = by_id[s["__key__"]]
        assert min(s["jpg"].size) == 64
        assert s["txt"] == text_for(row, "taxon_com", row["key"], 0)
        for member, text in caption_members(row).items():
            assert s[member.lower()] == text  # webdataset lower-cases suffixes (taxontag.txt)
        assert s["json"]["key"] == row["key"]
        assert s["json"]["phash"] == row["phash"]
        assert s["json"]["shard"] == row["shard"]
        assert "image_offset" not in s["json"]


def test_split_shards_reproducible_across_runs(tmp_path, data_root):
    rows = make_rows(data_root, 6)
    a = write_split_shards(rows, tmp_path / "a", data_root, **SHARD_ARGS)
    b = write_split_shards(list(reversed(rows)), tmp_path / "b", data_root, **SHARD_ARGS)
    assert a == b
    for name in ("shard-000000.tar", "shard-000001.tar", "sizes.json", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_resume_skips_finished_and_rewrites_corrupted_shard(tmp_path, data_root, caplog):
    rows = make_rows(data_root, 10)
    out = tmp_path / "train"
    first = write_split_shards(rows, out, data_root, **SHARD_ARGS)
    good, bad = out / "shard-000000.tar", out / "shard-000001.tar"
    good_mtime = good.stat().st_mtime_ns
    original = bad.read_bytes()
    bad.write_bytes(original[:1000])  # a truncated shard from a crashed copy
    (out / "shard-000099.tar").write_bytes(b"stale")  # left over from a bigger earlier build
    (out / ".shard-000002.tar.999.tmp").write_bytes(b"partial")  # a killed writer's temporary
    caplog.set_level("INFO")
    second = write_split_shards(rows, out, data_root, **SHARD_ARGS)
    assert second == first
    assert good.stat().st_mtime_ns == good_mtime  # not rewritten
    assert bad.read_bytes() == original
    assert not (out / "shard-000099.tar").exists()
    assert not list(out.glob(".*"))
    assert "already written" in caplog.text and "rewriting" in caplog.text


def test_changed_settings_rewrite_shards(tmp_path, data_root):
    rows = make_rows(data_root, 4)
    out = tmp_path / "train"
    first = write_split_shards(rows, out, data_root, **SHARD_ARGS)
    second = write_split_shards(rows, out, data_root, **{**SHARD_ARGS, "image_size": 32})
    assert first[0].sha256 != second[0].sha256
    with tarfile.open(out / "shard-000000.tar") as tar:
        names = tar.getnames()
    assert len(names) == 4 * 13


def test_bad_rows_fail_before_writing(tmp_path, data_root):
    rows = make_rows(data_root, 5)
    rows[3]["shard_position"] = 7
    with pytest.raises(InputError, match="positions"):
        write_split_shards(rows, tmp_path / "t", data_root, **SHARD_ARGS)
    rows = make_rows(data_root, 5)
    for col in ("kingdom", "phylum", "class", "order", "family", "genus", "species"):
        rows[4][col] = None
    rows[4]["scientific_name"] = None
    with pytest.raises(ValueError, match="no taxonomy"):
        write_split_shards(rows, tmp_path / "t", data_root, **SHARD_ARGS)
    assert not (tmp_path / "t").exists() or not list((tmp_path / "t").glob("*.tar"))


def test_unreadable_image_names_the_row(tmp_path, data_root):
    rows = make_rows(data_root, 3)
    rows[1]["image_size"] += 10_000_000
    with pytest.raises(InputError, match="img0001"):
        write_split_shards(rows, tmp_path / "t", data_root, **SHARD_ARGS)
    assert not list((tmp_path / "t").glob("*.tar"))


def test_open_clip_loader_reads_the_shards(tmp_path, data_root):
    rows = make_rows(data_root, 12, samples_per_shard=5)
    out = tmp_path / "shards" / "train"
    write_split_shards(rows, out, data_root, **SHARD_ARGS)
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
    write_split_shards(rows, tmp_path / "t", data_root, **SHARD_ARGS, progress=progress)
    assert progress.events[0] == ("start", 9) and progress.events[-1] == ("finish", None)
    assert sum(n for kind, n in progress.events if kind == "advance") == 9
