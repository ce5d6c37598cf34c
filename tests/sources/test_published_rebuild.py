"""The sample world in TreeOfLife-10M's published layout, rebuilt end to end.

EOL images are fetched over real HTTP (a loopback mirror) or read from the image sets; iNat21
and BIOSCAN-1M images are matched in the sample's own archives. Every planted trouble
(`sample/published/expected.json`) must end as planned, the release must carry the published
ids, splits and labels, and a stock webdataset reader must read the shards.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.support.mirror_server import MirrorServer
from treeoflife import pipeline
from treeoflife.config import config_from_dict
from treeoflife.release.reproduction import reason_group
from treeoflife.sample import generate_sample
from treeoflife.sample.published import write_published_world
from treeoflife.sources.published.ingest import aside_path
from treeoflife.vocabulary import known_reason

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "sample-published.yaml"


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("published-sample")
    generate_sample(root / "sample")
    write_published_world(root / "sample")
    return root / "sample"


def _build(sample_dir: Path, root: Path, server_url: str | None = None, **published) -> dict:
    """Build configs/sample-published.yaml in `root` (a copy of the sample world)."""
    shutil.copytree(sample_dir, root / "sample")
    data = yaml.safe_load(CONFIG.read_text())
    data["data_root"] = str(root)
    data.pop("sample")  # the world is there already
    data["published"].update(published)
    if server_url:
        data["sources"]["eol"]["mirror"] = {"https://content.eol.org/data/media/": server_url + "/"}
        data["sources"]["eol"]["allow_hosts"] = ["127.0.0.1"]
    cfg = config_from_dict(data)
    return {"cfg": cfg, "result": pipeline.build(cfg)}


def _expected(sample_dir: Path) -> dict:
    return json.loads((sample_dir / "published" / "expected.json").read_text())


def _published_rows(sample_dir: Path) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    with open(sample_dir / "published" / "metadata" / "catalog.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            rows.setdefault(r["treeoflife_id"], []).append(r)
    return rows


def _catalog(root: Path) -> dict[str, dict]:
    return {
        r["treeoflife_id"]: r
        for r in pq.read_table(root / "release" / "catalog.parquet").to_pylist()
    }


@pytest.fixture(scope="module")
def by_url(sample_dir, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("published-url")
    with MirrorServer(sample_dir / "eol" / "mirror") as server:
        built = _build(sample_dir, root, server.url)
        built["hits"] = server.hits
    return {**built, "root": root}


def test_every_planted_trouble_ends_as_planned(by_url, sample_dir):
    catalog = _catalog(by_url["root"])
    plan = {
        r["treeoflife_id"]: r
        for r in pq.read_table(by_url["root"] / "published" / "plan.parquet").to_pylist()
    }
    outcomes = {t["trouble"]: (tid, t) for tid, t in _expected(sample_dir)["rows"].items()}

    tid, _ = outcomes["md5_changed"]
    row = catalog[tid]
    assert (row["status"], row["reason"]) == ("failed", "md5_mismatch")
    kept_aside = aside_path(by_url["cfg"], tid).read_bytes()  # the bytes, never used
    assert hashlib.md5(kept_aside).hexdigest() != plan[tid]["md5"]
    assert row["shard"] is None

    tid, _ = outcomes["full_size_url_gone"]  # served by the medium source URL instead
    assert catalog[tid]["status"] != "failed"
    assert catalog[tid]["source_url"] == plan[tid]["medium_source_url"]

    tid, _ = outcomes["url_gone"]
    assert catalog[tid]["status"] == "failed"
    assert reason_group(catalog[tid]["reason"]) == "url_gone"

    tid, _ = outcomes["inat21_file_absent"]
    assert (catalog[tid]["status"], catalog[tid]["reason"]) == ("failed", "file_absent")

    tid, t = outcomes["label_disagrees"]  # label mode published: the catalog's label, exactly
    assert catalog[tid]["family"] == t["published"] == "Wrongidae"
    assert catalog[tid]["family_provenance"] == "published"
    diff = pq.read_table(by_url["root"] / "release" / "label_diff.parquet").to_pylist()
    [change] = [d for d in diff if d["treeoflife_id"] == tid and d["rank"] == "family"]
    assert (change["published"], change["resolved"]) == ("Wrongidae", t["resolved"])
    assert change["rule"].startswith("gbif-backbone:")


def test_release_keeps_published_ids_splits_and_labels(by_url, sample_dir):
    published = _published_rows(sample_dir)
    catalog = _catalog(by_url["root"])
    kept = {tid: r for tid, r in catalog.items() if r["status"] == "kept"}
    assert kept and set(kept) <= set(published)
    assert all(known_reason(r["reason"]) for r in catalog.values() if r["reason"])
    for tid, r in kept.items():
        rows = published[tid]
        splits = {p["split"] for p in rows}
        assert r["split"] == ("val" if "val" in splits else "train")
        assert bool(r["in_train_small"]) == ("train_small" in splits)
        p = rows[0]
        for rank in ("kingdom", "phylum", "class", "order", "family", "genus", "species"):
            assert r[rank] == (p[rank] or None), (tid, rank)
        assert r["common_name"] == (p["common"] or None)


def test_shards_read_by_a_stock_webdataset_reader(by_url):
    import webdataset as wds

    release = by_url["root"] / "release"
    catalog = _catalog(by_url["root"])
    train = sorted((release / "shards" / "train").glob("shard-*.tar"))
    samples = list(wds.WebDataset([str(p) for p in train], shardshuffle=False))
    assert samples and all("txt" in s and "jpg" in s for s in samples)
    assert {s["__key__"] for s in samples} == {
        tid for tid, r in catalog.items() if r["status"] == "kept" and r["split"] == "train"
    }


def test_reproduction_report_counts_every_published_image(by_url, sample_dir):
    release = by_url["root"] / "release"
    report = json.loads((release / "reproduction.json").read_text())
    published = _published_rows(sample_dir)
    total = report["total"]
    assert total["published"] == len(published)
    catalog = _catalog(by_url["root"])
    failed = sum(1 for r in catalog.values() if r["status"] == "failed")
    assert total["missing"] == failed and total["found"] == len(published) - failed
    groups = {g for s in report["sources"].values() for g in s["missing_by_reason"]}
    assert {"md5_changed", "url_gone", "file_absent"} <= groups
    totals = _expected(sample_dir)["totals"]
    for name in ("eol", "inat21", "bioscan"):
        figure = report["card_totals"][name]
        assert figure["published"] == totals[name]
        assert figure["rebuilt"] == report["sources"][name]["found"]
    removed = pq.read_table(release / "published_dedup_removals.parquet").to_pylist()
    assert removed  # the sample plants copies of evaluation images and held-out species
    for r in removed:
        assert catalog[r["treeoflife_id"]]["status"] == "removed"
        assert {p["split"] for p in published[r["treeoflife_id"]]} & {"train", "train_small"}
    page = (release / "report" / "label_diff.html").read_text()
    assert "Wrongidae" in page
    index = (release / "report" / "index.html").read_text()
    assert "href='label_diff.html'" in index and "href='reproduction.html'" in index
    reproduction = (release / "report" / "reproduction.html").read_text()
    assert "<td>eol</td>" in reproduction and "md5_changed: md5_mismatch 1" in reproduction


def test_resolved_labels_and_image_sets(by_url, sample_dir, tmp_path):
    """Image sets instead of URLs (no request at all), labels from our taxonomy stage."""
    built = _build(
        sample_dir, tmp_path,
        image_sets=["sample/published/dataset/EOL/image_set_*.tar.gz"], label_mode="resolved",
    )  # fmt: skip
    catalog = _catalog(tmp_path)
    outcomes = {t["trouble"]: (tid, t) for tid, t in _expected(sample_dir)["rows"].items()}
    tid, _ = outcomes["absent_from_image_sets"]
    assert (catalog[tid]["status"], catalog[tid]["reason"]) == ("failed", "file_absent")
    tid, _ = outcomes["url_gone"]  # gone from the web, kept in the image sets
    assert catalog[tid]["status"] != "failed"
    tid, _ = outcomes["md5_changed"]
    assert catalog[tid]["reason"] == "md5_mismatch"
    tid, t = outcomes["label_disagrees"]
    assert catalog[tid]["family"] == t["resolved"] != "Wrongidae"
    assert catalog[tid]["family_provenance"] != "published"
    summary = json.loads((tmp_path / "release" / "label_diff.json").read_text())
    assert summary["changed_by_rank"]["family"] >= 1
    assert built["result"]["release"].summary["published"]["label_mode"] == "resolved"


def test_a_second_build_does_nothing(by_url):
    again = pipeline.build(by_url["cfg"])
    for stage in ("ingest-eol", "ingest-inat21", "ingest-bioscan", "taxonomy", "release"):
        assert again[stage].up_to_date, stage


def test_an_interrupted_ingest_resumes_to_the_same_release(by_url, sample_dir, tmp_path):
    """A part lost (as a kill before its write leaves it) is fetched again, alone."""
    root = tmp_path / "data"
    shutil.copytree(by_url["root"], root)
    lost = root / "catalog" / "eol" / "part-00001.parquet"
    lost.unlink()  # killed while writing the second EOL part: no stage marker written yet
    for marker in [
        *(root / "state").glob("ingest-*.done.json"),
        root / "published" / "ingest.done.json",
    ]:
        marker.unlink()
    with MirrorServer(sample_dir / "eol" / "mirror") as server:
        data = yaml.safe_load(CONFIG.read_text())
        data.pop("sample")
        data["data_root"] = str(root)
        data["sources"]["eol"]["mirror"] = {"https://content.eol.org/data/media/": server.url + "/"}
        data["sources"]["eol"]["allow_hosts"] = ["127.0.0.1"]
        pipeline.build(config_from_dict(data))
        fetched = sum(server.hits.values())
    assert 0 < fetched <= 100  # that part's 66 rows, fallbacks and retries: not the 166
    assert lost.exists()
    for name in ("catalog.parquet", "label_diff.parquet", "reproduction.json"):
        assert (root / "release" / name).read_bytes() == (
            by_url["root"] / "release" / name
        ).read_bytes(), name
