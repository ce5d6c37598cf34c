"""Damage after a build is repaired by the next build, exactly (issue 14).

The bundled sample is built once; each case works on a copy of that data root (copied with its
times, so the copy is up to date), deletes / truncates / alters one kind of recorded output,
checks that `verify` finds it, runs the build again and checks that the release (and the
damaged file) are byte for byte those of the untouched build and that `verify` passes. Then
evaluation-set images that appear or change after a build: they are hashed, and dedup removes
the training image they copy.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.conftest import REPO
from treeoflife import pipeline
from treeoflife.cli import app
from treeoflife.config import load_config
from treeoflife.io import read_image_bytes
from treeoflife.layout import Layout

pytestmark = pytest.mark.slow

CONFIG = REPO / "configs" / "sample.yaml"
# Built by every stage; files that carry timings or retry counters are not compared.
COMPARED = ("catalog", "images", "hashes", "dedup", "release")


def _timing(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return (
        name.endswith(".status.parquet")
        or rel == "release/summary.json"
        or name.endswith(".html")
        or rel.startswith("release/report")
    )


def _digests(root: Path) -> dict[str, str]:
    out = {}
    for sub in COMPARED:
        for p in sorted((root / sub).rglob("*")):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and not _timing(rel):
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _build(root: Path) -> dict:
    return pipeline.build(load_config(CONFIG, data_root=str(root)))


def _verify(root: Path):
    args = ["verify", "--config", str(CONFIG), "--data-root", str(root), "-q"]
    return CliRunner().invoke(app, args)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("repair") / "data"
    _build(root)
    return {"root": root, "digests": _digests(root)}


@pytest.fixture
def copy(built, tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(built["root"], root, symlinks=True)
    return root


# --------------------------------------------------------------------------- damage


def _delete(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def _truncate(path: Path) -> None:
    target = _first_file(path)
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])


def _alter(path: Path) -> None:
    target = _first_file(path)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01  # one byte, same size
    target.write_bytes(bytes(data))


def _first_file(path: Path) -> Path:
    """A folder's first tar (else first file); a file itself."""
    if not path.is_dir():
        return path
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return next((p for p in files if p.suffix == ".tar"), files[0])


DAMAGES = {"delete": _delete, "truncate": _truncate, "alter": _alter}

OUTPUTS = {  # kind -> (path under the data root, the stage that repairs it)
    "train-shard": ("release/shards/train/shard-000001.tar", "release"),
    "val-shard": ("release/shards/val/shard-000000.tar", "release"),
    "catalog": ("release/catalog.parquet", "release"),
    "image-store-part": ("images/eol/part-00000.tar", "ingest-eol"),
    "hash-part": ("hashes/inat21/part-00001.parquet", "hashes"),
    "evalset-wds": ("release/evalsets/wds/rare_species", "release"),
    "shard-manifest": ("release/shards/train/manifest.json", "release"),
    "shard-index": ("release/shards/train/index.parquet", "release"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.parametrize("kind", list(OUTPUTS))
def test_damaged_output_is_repaired_by_the_next_build(built, copy, kind, damage):
    rel, stage = OUTPUTS[kind]
    assert (copy / rel).exists(), f"the sample build has no {rel}"
    assert all(r.up_to_date for r in _build(copy).values())  # a copy is up to date

    DAMAGES[damage](copy / rel)
    found = _verify(copy)
    assert found.exit_code == 1, found.output
    assert "Traceback" not in found.output
    assert found.output.rstrip().endswith("run `treeoflife build` to repair")

    results = _build(copy)
    assert not results[stage].up_to_date, f"{stage} did not run again"
    assert _digests(copy) == built["digests"]  # every file as the untouched build wrote it
    passed = _verify(copy)
    assert passed.exit_code == 0, passed.output
    assert all(r.up_to_date for r in _build(copy).values())  # and recorded as done again


def test_verify_lists_a_corrupt_catalog_and_still_reads_the_shards(copy):
    _truncate(copy / "release" / "catalog.parquet")
    _truncate(copy / "release" / "shards" / "val" / "shard-000000.tar")
    found = _verify(copy)
    assert found.exit_code == 1 and "Traceback" not in found.output
    assert "release      FAILED catalog.parquet: cannot read it" in found.output
    assert "val          FAILED" in found.output and "shard-000000.tar" in found.output
    assert "train        ok" in found.output
    assert "release/catalog.parquet:" in found.output  # and as a changed recorded output


# --------------------------------------------------------------------------- evaluation sets


def _kept_training_image(root: Path) -> tuple[str, bytes]:
    """A kept training row of the release and its image bytes as ingested."""
    catalog = pq.read_table(root / "release" / "catalog.parquet")
    kept = catalog.filter(pc.equal(catalog["status"], "kept"))
    kept = kept.filter(pc.equal(kept["split"], "train")).sort_by("key")
    key = kept["key"][0].as_py()
    source = key.split("/", 1)[0]
    for part in sorted(Layout(root).catalog_dir(source).glob("part-*[0-9].parquet")):
        rows = pq.read_table(part).filter(pc.equal(pq.read_table(part)["key"], key))
        if rows.num_rows:
            r = rows.to_pylist()[0]
            return key, read_image_bytes(root, r["image_file"], r["image_offset"], r["image_size"])
    raise AssertionError(f"{key} not in the source catalog")


def _status(root: Path, key: str) -> tuple[str, str | None]:
    path = root / "release" / "catalog.parquet"
    catalog = pq.read_table(path, columns=["key", "status", "reason"])
    row = catalog.filter(pc.equal(catalog["key"], key)).to_pylist()[0]
    return row["status"], row["reason"]


def _seen_species(root: Path) -> Path:
    return root / "sample" / "evalsets" / "seen_species"


def test_an_evaluation_image_added_after_a_build_is_hashed_and_deduplicated(copy):
    key, data = _kept_training_image(copy)
    assert _status(copy, key) == ("kept", None)
    folder = _seen_species(copy)
    with open(folder / "metadata.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    planted = {**rows[0], "filepath": f"{rows[0]['filepath'].split('/')[0]}/planted.jpg"}
    (folder / planted["filepath"]).write_bytes(data)
    with open(folder / "metadata.csv", "a", newline="") as fh:
        csv.DictWriter(fh, fieldnames=list(rows[0])).writerow(planted)

    results = _build(copy)
    assert not results["evalset-hashes"].up_to_date and not results["dedup"].up_to_date
    assert results["evalset-hashes"].summary["evalset/seen_species"] == len(rows) + 1
    hashes = pq.read_table(copy / "hashes" / "evalsets" / "seen_species.parquet")
    assert planted["filepath"] in hashes["eval_key"].to_pylist()
    assert _status(copy, key) == ("removed", "exact_eval_duplicate")
    assert _verify(copy).exit_code == 0


def test_an_evaluation_image_changed_after_a_build_is_hashed_again(copy):
    key, data = _kept_training_image(copy)
    folder = _seen_species(copy)
    with open(folder / "metadata.csv", newline="") as fh:
        first = next(csv.DictReader(fh))["filepath"]
    (folder / first).write_bytes(data)  # same name, the list file untouched

    results = _build(copy)
    assert results["taxonomy"].up_to_date  # names did not change
    assert not results["evalset-hashes"].up_to_date and not results["dedup"].up_to_date
    hashes = pq.read_table(copy / "hashes" / "evalsets" / "seen_species.parquet").to_pylist()
    md5 = hashlib.md5(data).hexdigest()
    assert [r["md5"] for r in hashes if r["eval_key"] == first] == [md5]
    assert _status(copy, key) == ("removed", "exact_eval_duplicate")
    assert _verify(copy).exit_code == 0
