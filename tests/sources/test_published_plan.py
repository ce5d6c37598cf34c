"""Planning a published catalog: the card's columns read exactly, train_small folded, every
row kept with its problem, and a clear error for a file that is not the published format."""

from __future__ import annotations

import csv

import pyarrow.parquet as pq
import pytest

from treeoflife.errors import InputError
from treeoflife.sources.published.plan import CATALOG_COLUMNS, LICENSE_COLUMNS, write_plan


def _write(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _cat(split, tid, eol=("", ""), bioscan=("", ""), inat=("", "", ""), ranks=("",) * 7, common=""):
    return [split, tid, *eol, *bioscan, *inat, *ranks, common]


MAGPIE = ("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Pica", "hudsonia")


def test_plan_folds_train_small_and_keeps_problems(tmp_path):
    catalog = _write(tmp_path / "catalog.csv", CATALOG_COLUMNS, [
        _cat("train", "t-eol", eol=("10", "20"), ranks=MAGPIE, common="black-billed magpie"),
        _cat("train_small", "t-eol", eol=("10", "20"), ranks=MAGPIE, common="black-billed magpie"),
        _cat("val", "t-inat", inat=("2bbc.jpg", "00001_Animalia_x", "1"), common="x"),
        _cat("train", "t-bio", bioscan=("5", "BIOUG1-A01.jpg"), common="Diptera"),
        _cat("test", "t-bad", eol=("11", "21")),
        _cat("train", "t-both", eol=("12", "22")),
        _cat("val", "t-both", eol=("12", "22")),
        _cat("train", "t-none"),
        _cat("train", "t-nolicense", eol=("13", "23")),
    ])  # fmt: skip
    licenses = _write(tmp_path / "licenses.csv", LICENSE_COLUMNS, [
        ["t-eol", "10", "20", "ABCDEF", "http://m/1", "http://f/1", "cc-by", "Owner, A", "", "a"],
        ["t-bad", "11", "21", "", "", "http://f/2", "cc-by", "", "", ""],
        ["t-both", "12", "22", "", "", "http://f/3", "cc-by", "", "", ""],
    ])  # fmt: skip
    counts = write_plan(catalog, licenses, tmp_path / "out" / "plan.parquet")
    rows = {
        r["treeoflife_id"]: r for r in pq.read_table(tmp_path / "out" / "plan.parquet").to_pylist()
    }
    assert counts["catalog_rows"] == 9 and counts["images"] == 7
    eol = rows["t-eol"]
    assert (eol["source"], eol["key"], eol["split"], eol["in_train_small"]) == (
        "eol", "eol/10_20", "train", True)  # fmt: skip
    assert eol["catalog_rows"] == 2 and eol["md5"] == "abcdef"
    assert eol["copyright_owner"] == "Owner, A" and eol["species"] == "hudsonia"
    assert eol["problem"] is None
    assert rows["t-inat"]["key"] == "inat21/2bbc" and rows["t-inat"]["split"] == "val"
    assert rows["t-bio"]["key"] == "bioscan/BIOUG1-A01" and rows["t-bio"]["bioscan_part"] == "5"
    assert rows["t-bad"]["problem"] == "unknown_split"
    assert rows["t-both"]["problem"] == "conflicting_splits"
    assert rows["t-none"]["problem"] == "no_source_id" and rows["t-none"]["source"] is None
    assert rows["t-nolicense"]["problem"] == "no_license_row"


def test_plan_refuses_a_file_without_the_published_columns(tmp_path):
    bad = _write(
        tmp_path / "catalog.csv", ["split", "treeoflife_id", "kingdom"], [["train", "a", "x"]]
    )
    with pytest.raises(InputError, match="missing column"):
        write_plan(bad, None, tmp_path / "plan.parquet")
    with pytest.raises(InputError, match="no such file"):
        write_plan(tmp_path / "nope.csv", None, tmp_path / "plan.parquet")


def test_plan_reads_the_columns_the_dataset_card_lists():
    from tests.conftest import REAL_FIXTURES

    card = REAL_FIXTURES / "treeoflife-10m-card"
    catalog = (card / "catalog.header.csv").read_text().strip().split(",")
    licenses = (card / "licenses.header.csv").read_text().strip().split(",")
    assert tuple(catalog) == CATALOG_COLUMNS
    assert tuple(licenses) == LICENSE_COLUMNS


def test_the_documented_configs_load():
    from tests.conftest import REPO
    from treeoflife.config import load_config

    real = load_config(REPO / "configs" / "tol10m-published.yaml")
    sample = load_config(REPO / "configs" / "sample-published.yaml")
    for cfg in (real, sample):
        assert cfg.published.configured and cfg.published.label_mode == "published"
    assert real.published.expected_totals["full_taxonomy"] == 8_455_243
    assert real.published.inat21_archives[0].startswith("https://")
