"""End to end: the parent flow on the bundled sample, then everything a user would check."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import duckdb
import polars as pl
import pytest
import webdataset as wds
from PIL import Image
from torchvision import transforms

from tests.conftest import REPO
from treeoflife import schemas
from treeoflife.shards.text import CAPTION_MEMBERS

pytestmark = pytest.mark.slow


def _catalog(root: Path) -> str:
    return str(root / "release" / "catalog.parquet")


def _input_rows(sample: Path) -> int:
    inat = sum(
        len(json.loads((sample / "inat21" / f).read_text())["images"])
        for f in ("train.json", "val.json")
    )
    with open(sample / "bioscan" / "BIOSCAN_Insect_Dataset_metadata.tsv") as fh:
        bioscan = sum(1 for _ in fh) - 1
    eol = 0
    for f in sorted((sample / "eol").glob("media_manifest_*.csv")):
        with open(f) as fh:
            eol += sum(1 for _ in fh) - 1
    return inat + bioscan + eol


def test_every_input_row_has_exactly_one_final_status(sample_build):
    root = sample_build["root"]
    total, distinct, bad = duckdb.execute(
        f"SELECT count(*), count(DISTINCT key), "
        f"count(*) FILTER (WHERE status NOT IN {schemas.FINAL_STATUSES}) "
        f"FROM '{_catalog(root)}'"
    ).fetchone()
    assert total == distinct == _input_rows(root / "sample")
    assert bad == 0
    no_reason = duckdb.execute(
        f"SELECT count(*) FROM '{_catalog(root)}' WHERE status != 'kept' AND reason IS NULL"
    ).fetchone()[0]
    assert no_reason == 0
    kept_per_split = dict(
        duckdb.execute(
            f"SELECT split, count(*) FROM '{_catalog(root)}' WHERE status='kept' GROUP BY split"
        ).fetchall()
    )
    assert set(kept_per_split) == {"train", "val"}


def test_catalog_matches_published_schema_and_reads_in_polars(sample_build):
    root = sample_build["root"]
    published = json.loads((REPO / "schemas" / "catalog.json").read_text())
    names = [f["name"] for f in published["fields"]]
    df = pl.read_parquet(_catalog(root))
    assert df.columns == names
    kingdoms = set(df.filter(pl.col("status") == "kept")["kingdom"].unique().to_list())
    assert {"Animalia", "Plantae", "Fungi"} <= kingdoms


def _check(row: dict, expect: dict, key: str) -> list[str]:
    problems = []
    for field, want in expect.items():
        if field == "reason_in":
            if row["reason"] not in want:
                problems.append(f"{key}: reason {row['reason']!r} not in {want}")
        elif row.get(field) != want:
            problems.append(f"{key}: {field} is {row.get(field)!r}, expected {want!r}")
    return problems


def test_trouble_makers_end_where_expected(sample_build):
    root = sample_build["root"]
    rows = {
        r["key"]: r
        for r in duckdb.sql(f"SELECT * FROM '{_catalog(root)}'").to_arrow_table().to_pylist()
    }
    problems = []
    troubles = set()
    for item in sample_build["expected"]:
        troubles.add(item["trouble"])
        if item["key"] not in rows:
            problems.append(f"{item['key']}: missing from the catalog")
            continue
        problems += _check(rows[item["key"]], item["expect"], item["key"])
    assert not problems, "\n".join(problems)
    assert len(troubles) >= 12


def _all_shards(root: Path, split: str) -> list[str]:
    return sorted(str(p) for p in (root / "release" / "shards" / split).glob("shard-*.tar"))


def test_shards_read_back_with_webdataset(sample_build):
    root = sample_build["root"]
    cat = pl.read_parquet(_catalog(root)).filter(pl.col("status") == "kept")
    by_id = {r["treeoflife_id"]: r for r in cat.to_dicts()}
    for split in ("train", "val", "train_small"):
        urls = _all_shards(root, split)
        assert urls, split
        sizes = json.loads((root / "release" / "shards" / split / "sizes.json").read_text())
        seen = 0
        for sample in wds.WebDataset(urls, shardshuffle=False):
            seen += 1
            assert {"jpg", "txt", "json"} <= set(sample)
            for member in CAPTION_MEMBERS:  # webdataset lower-cases member suffixes
                assert member.lower() in sample, member
            meta = json.loads(sample["json"])
            row = by_id[sample["__key__"]]
            assert meta["key"] == row["key"]
            assert sample["txt"].decode().startswith("a photo of ")
            img = Image.open(io.BytesIO(sample["jpg"]))
            assert img.mode == "RGB" and min(img.size) <= 64
            if split != "train_small":
                assert (
                    meta["shard"] == row["shard"]
                    and meta["shard_position"] == row["shard_position"]
                )
                assert Path(sample["__url__"]).name == Path(row["shard"]).name
        assert seen == sum(sizes.values())
        if split == "train_small":
            assert seen == cat.filter(pl.col("in_train_small")).height
        else:
            assert seen == cat.filter(pl.col("split") == split).height


def test_open_clip_loader_reads_our_shards(sample_build):
    import open_clip
    from open_clip_train.data import get_dataset_size, get_wds_dataset

    root = sample_build["root"]
    urls = _all_shards(root, "train")
    preprocess = transforms.Compose(
        [transforms.Resize(32), transforms.CenterCrop(32), transforms.ToTensor()]
    )
    args = Namespace(
        train_data="::".join(urls),
        train_data_upsampling_factors=None,
        train_num_samples=None,
        dataset_resampled=False,
        seed=0,
        batch_size=8,
        workers=0,
        world_size=1,
        distributed=False,
        rank=0,
    )
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    info = get_wds_dataset(args, preprocess, is_train=True, epoch=0, tokenizer=tokenizer)
    images, texts = next(iter(info.dataloader))
    assert images.shape == (8, 3, 32, 32)
    assert texts.shape[0] == 8 and texts.shape[1] == 77
    sizes = json.loads((root / "release" / "shards" / "train" / "sizes.json").read_text())
    n, n_shards = get_dataset_size("::".join(urls))
    assert (n, n_shards) == (sum(sizes.values()), len(urls))
    assert info.dataloader.num_batches == -(-n // 8)


def test_evalsets_in_clip_benchmark_layout(sample_build):
    root = sample_build["root"]
    for es in sample_build["cfg"].evalsets:
        d = root / "release" / "evalsets" / "wds" / es.name
        n = int((d / "test" / "nshards.txt").read_text())
        classes = (d / "classnames.txt").read_text().splitlines()
        templates = (d / "zeroshot_classification_templates.txt").read_text().splitlines()
        assert all("{c}" in t for t in templates)
        urls = [str(d / "test" / f"{i}.tar") for i in range(n)]
        labels = [int(s["cls"]) for s in wds.WebDataset(urls, shardshuffle=False)]
        assert labels and set(labels) <= set(range(len(classes)))
        assert len(set(labels)) == len(classes)
        # the set's hashes travel with it, one row per metadata row, keyed like the samples
        hashes = pl.read_parquet(d / "hashes.parquet")
        keys = {s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False)}
        assert keys <= set(hashes["wds_key"].to_list())
        ok = hashes.filter(pl.col("status") == "ok")
        assert ok.height == len(labels) and ok["phash"].null_count() == 0


def _tree_digest(root: Path) -> dict[str, str]:
    out = {}
    for sub in ("catalog", "images", "taxonomy", "hashes", "dedup", "release"):
        for p in sorted((root / sub).rglob("*")):
            if p.is_file() and not p.name.endswith(".status.parquet"):
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_rerun_from_the_cli_redoes_nothing_and_keeps_bytes(sample_build):
    root = sample_build["root"]
    before = _tree_digest(root)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "treeoflife.cli",
            "build",
            "--config",
            str(REPO / "configs" / "sample.yaml"),
            "--data-root",
            str(root),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "up to date" in proc.stdout
    assert " done " not in proc.stdout, proc.stdout
    assert "status:" in proc.stdout and "outputs:" in proc.stdout
    after = _tree_digest(root)
    assert after == before


def test_bad_config_fails_with_one_line_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("shards:\n  sample_per_shard: 3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "treeoflife.cli", "build", "--config", str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "sample_per_shard" in proc.stderr and "Traceback" not in proc.stderr
