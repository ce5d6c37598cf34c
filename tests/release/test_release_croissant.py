import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from treeoflife.release.card import write_licenses_csv
from treeoflife.release.catalog import write_catalog
from treeoflife.release.croissant import CONFORMS_TO, croissant_document, write_croissant
from treeoflife.schemas import CATALOG

from .conftest import catalog_table

mlc = pytest.importorskip("mlcroissant", reason="mlcroissant (dev dependency) not installed")


SUMMARY = {"by_status": {"kept": 15}, "pretty_name": "TreeOfLife test"}


@pytest.fixture
def release(tmp_path):
    release = tmp_path / "release"
    table = catalog_table(30)
    write_catalog(table, release / "catalog.parquet")
    public = pq.read_table(release / "catalog.parquet")
    write_licenses_csv(public, release / "licenses.csv")
    train = release / "shards" / "train"
    train.mkdir(parents=True)
    (train / "sizes.json").write_text('{"shard-000000.tar": 3}\n')
    (train / "manifest.json").write_text('{"samples": 3, "shards": {}}\n')
    write_croissant(release, SUMMARY)
    return release


def test_mlcroissant_validate_accepts_it(release):
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("mlcroissant")),
            "validate",
            "--jsonld",
            str(release / "croissant.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "error" not in proc.stderr.lower()


def test_mlcroissant_loads_every_catalog_and_licence_record(release):
    dataset = mlc.Dataset(jsonld=release / "croissant.json")
    catalog = pq.read_table(release / "catalog.parquet").to_pylist()
    records = list(dataset.records(record_set="catalog"))
    assert len(records) == len(catalog) == 30

    def text(value):
        return value.decode() if isinstance(value, bytes) else value

    assert [text(r["catalog/key"]) for r in records] == [r["key"] for r in catalog]
    first = records[0]
    assert text(first["catalog/status"]) == catalog[0]["status"]
    assert int(first["catalog/phash"]) == catalog[0]["phash"]  # uint64 survives
    licences = list(dataset.records(record_set="licenses"))
    kept = sorted(r["key"] for r in catalog if r["status"] == "kept")
    assert sorted(text(r["licenses/key"]) for r in licences) == kept


def test_document_describes_files_and_every_column(release):
    doc = json.loads((release / "croissant.json").read_text())
    assert doc["conformsTo"] == CONFORMS_TO and doc["@type"] == "sc:Dataset"
    files = {d["@id"]: d for d in doc["distribution"]}
    assert {"catalog.parquet", "licenses.csv", "shards-train"} <= set(files)
    assert files["shards-train"]["includes"] == "shards/train/shard-*.tar"
    assert len(files["catalog.parquet"]["sha256"]) == 64
    fields = doc["recordSet"][0]["field"]
    assert [f["name"] for f in fields] == CATALOG.names
    assert all(f["description"] for f in fields)
    types = {f["name"]: f["dataType"] for f in fields}
    assert types["phash"] == "sc:Integer" and types["in_train_small"] == "sc:Boolean"
    # Reproducible: no dates or machine paths in it.
    assert (
        croissant_document(release, {"by_status": {"kept": 15}, "pretty_name": "TreeOfLife test"})
        == doc
    )
    assert str(release) not in (release / "croissant.json").read_text()


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def test_mlcroissant_loads_the_image_samples_of_a_built_release(built_sample):
    """The sample build's croissant.json: `samples` yields every image of the train and val
    shards with its caption and the catalog key; `captions` every caption member."""
    import webdataset as wds

    release = built_sample["release"]
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("mlcroissant")),
            "validate",
            "--jsonld",
            str(release / "croissant.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    dataset = mlc.Dataset(jsonld=release / "croissant.json")
    records = {_text(r["samples/treeoflife_id"]): r for r in dataset.records(record_set="samples")}

    catalog = pq.read_table(release / "catalog.parquet").to_pylist()
    shipped = {
        r["treeoflife_id"]: r
        for r in catalog
        if r["status"] == "kept" and r["split"] != "train_small"
    }
    assert set(records) == set(shipped) and len(records) == 385
    urls = sorted(str(p) for s in ("train", "val") for p in (release / "shards" / s).glob("*.tar"))
    members = {s["__key__"]: s for s in wds.WebDataset(urls, shardshuffle=False)}
    for tid, record in records.items():
        row = shipped[tid]
        assert _text(record["samples/key"]) == row["key"]  # joins the catalog
        assert _text(record["samples/split"]) == row["split"]
        assert _text(record["samples/scientific_name"]) == row["scientific_name"]
        assert _text(record["samples/txt"]) == members[tid]["txt"].decode()
        image = record["samples/image"]
        assert image.mode == "RGB" and min(image.size) == 64  # the shard's JPEG (image_size 64)
    captions = list(dataset.records(record_set="captions"))
    assert len(captions) == 11 * len(records)
    one = next(iter(records))
    mine = {
        _text(c["captions/member"]).lower(): _text(c["captions/text"])
        for c in captions
        if _text(c["captions/treeoflife_id"]) == one
    }
    # webdataset lower-cases member suffixes (taxontag.txt)
    assert mine == {k: v.decode() for k, v in members[one].items() if k.endswith("txt")}
