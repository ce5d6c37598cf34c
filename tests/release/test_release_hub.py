"""The release as Hugging Face `datasets` users meet it, with the real library.

The sample is built by `treeoflife build`; its release folder is copied as `hf upload` with the
card's `--exclude 'metadata/*'` would upload it, and `metadata/` as the second repository.
Every config both cards declare is then loaded by name from those folders, and the train
shards are loaded the plain way (`load_dataset("webdataset", data_files=...)`, which infers
types from the first 5 samples), in memory and streaming.
"""

from __future__ import annotations

import csv
import shutil

import pyarrow.parquet as pq
import pytest
import yaml

from treeoflife.release.hub import METADATA_DIR
from treeoflife.shards.sample_json import SAMPLE_JSON_FIELDS

datasets = pytest.importorskip("datasets", reason="datasets (dev dependency) not installed")


def _front(card) -> dict:
    text = card.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text[4 : text.index("\n---\n", 4)])


@pytest.fixture(scope="module")
def repos(built_sample, tmp_path_factory) -> dict:
    """{"images": folder, "metadata": folder} as two uploaded repositories would hold them."""
    base = tmp_path_factory.mktemp("hub")
    release = built_sample["release"]
    images = base / "images"
    shutil.copytree(
        release, images, ignore=lambda d, names: [METADATA_DIR] if d == str(release) else []
    )
    metadata = shutil.copytree(release / METADATA_DIR, base / "metadata")
    return {"images": images, "metadata": metadata, "cache": base / "cache"}


@pytest.fixture(scope="module")
def catalog(built_sample) -> list[dict]:
    return pq.read_table(built_sample["release"] / "catalog.parquet").to_pylist()


def _train_files(release) -> list[str]:
    return sorted(str(p) for p in (release / "shards" / "train").glob("shard-*.tar"))


def _check_json_members(members: list[dict], catalog: list[dict]) -> None:
    by_key = {r["key"]: r for r in catalog}
    for meta in members:
        assert sorted(meta) == list(SAMPLE_JSON_FIELDS)
        row = by_key[meta["key"]]  # the key joins the full row in the catalog
        assert meta["phash"] == f"{row['phash']:016x}" and int(meta["phash"], 16) >= 0
        assert meta["treeoflife_id"] == row["treeoflife_id"] and row["status"] == "kept"
        assert meta["species"] == (row["species"] or "")
        assert meta["width"] == row["width"] and meta["height"] == row["height"]
    # the unsigned pHash that broke `datasets` (>= 2**63) is in the sample
    assert any(int(m["phash"], 16) >= 2**63 for m in members)


def test_webdataset_builder_reads_the_train_shards(built_sample, catalog, tmp_path):
    files = _train_files(built_sample["release"])
    ds = datasets.load_dataset(
        "webdataset", data_files={"train": files}, split="train", cache_dir=str(tmp_path)
    )
    kept_train = [r for r in catalog if r["status"] == "kept" and r["split"] == "train"]
    assert ds.num_rows == len(kept_train)
    json_type = ds.features["json"]
    assert {k: v.dtype for k, v in json_type.items()} == {
        k: "int64" if k in ("width", "height", "shard_position") else "string"
        for k in SAMPLE_JSON_FIELDS
    }
    members = ds["json"]
    _check_json_members(members, catalog)
    assert ds[0]["jpg"].mode == "RGB"
    assert {m["key"] for m in members} == {r["key"] for r in kept_train}


def test_webdataset_builder_streams_the_train_shards(built_sample, catalog):
    files = _train_files(built_sample["release"])
    ds = datasets.load_dataset(
        "webdataset", data_files={"train": files}, split="train", streaming=True
    )
    members = [sample["json"] for sample in ds]
    _check_json_members(members, catalog)
    assert len(members) == sum(r["status"] == "kept" and r["split"] == "train" for r in catalog)


def test_every_config_of_the_images_card_loads_with_the_declared_types(built_sample, repos):
    front = _front(repos["images"] / "README.md")
    declared = {i["config_name"]: i["features"] for i in front["dataset_info"]}
    assert [c["config_name"] for c in front["configs"]] == ["default"] == list(declared)
    shards = built_sample["release"] / "shards"
    for config in front["configs"]:
        name = config["config_name"]
        loaded = datasets.load_dataset(str(repos["images"]), name, cache_dir=str(repos["cache"]))
        want = datasets.Features._from_yaml_list(declared[name])
        splits = {f["split"] for f in config["data_files"]}
        assert set(loaded) == splits == {"train", "val", "train_small"}
        for split, ds in loaded.items():
            assert ds.features == want
            sizes = (shards / split / "sizes.json").read_text()
            assert ds.num_rows == sum(yaml.safe_load(sizes).values())
        streamed = datasets.load_dataset(str(repos["images"]), name, split="val", streaming=True)
        assert len([s["__key__"] for s in streamed]) == loaded["val"].num_rows


def test_every_config_of_the_metadata_card_loads_by_name(built_sample, repos, catalog):
    front = _front(repos["metadata"] / "README.md")
    names = [c["config_name"] for c in front["configs"]]
    assert names == ["catalog", "licenses"]
    declared = {i["config_name"]: i["features"] for i in front["dataset_info"]}
    loaded = {
        name: datasets.load_dataset(
            str(repos["metadata"]), name, split=name, cache_dir=str(repos["cache"])
        )
        for name in names
    }
    for name, ds in loaded.items():
        assert ds.features == datasets.Features._from_yaml_list(declared[name])

    rows = loaded["catalog"].to_list()
    assert rows == catalog  # every row, every column, uint64 pHash intact
    with open(built_sample["release"] / "licenses.csv", newline="", encoding="utf-8") as fh:
        csv_rows = list(csv.DictReader(fh))
    licences = sorted(loaded["licenses"].to_list(), key=lambda r: r["key"])
    assert [{k: v or "" for k, v in r.items()} for r in licences] == csv_rows
    # the default config (no name) is the catalog
    default = datasets.load_dataset(
        str(repos["metadata"]), split="catalog", cache_dir=str(repos["cache"])
    )
    assert default.num_rows == len(catalog)


def test_metadata_catalog_is_the_release_catalog(built_sample):
    release = built_sample["release"]
    ours, theirs = release / "catalog.parquet", release / METADATA_DIR / "catalog.parquet"
    assert theirs.read_bytes() == ours.read_bytes()
    assert theirs.stat().st_ino == ours.stat().st_ino  # a hard link: no second copy on disk
