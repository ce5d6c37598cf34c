"""Incremental == fresh: a changed input gives exactly what a fresh build of it gives.

The sample is built once; then for each kind of change (tests/incremental/drift.py) the built
root is copied, the change applied to its inputs, and the copy rebuilt in place; the same
changed inputs are built from nothing in another root. The two releases must be byte-identical
(the HTML report aside: its plots carry renderer details), `verify` must pass, and the
summary's counts must be the catalog's. Small parts (test settings) make a change touch a part
among several, as in a real build.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import REPO
from tests.incremental.drift import CHANGES, Built
from treeoflife import pipeline
from treeoflife.config import BuildConfig, config_from_dict
from treeoflife.release.stage import verify_release

TEST_SETTINGS = {
    "sources": {
        "eol": {"rows_per_part": 40, "retries": 0},
        "bioscan": {"images_per_part": 30},
        "inat21": {"images_per_part": 40},
    },
    "dedup": {"hash_workers": 1},
}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def config(root: Path, overrides: dict | None = None) -> BuildConfig:
    data = yaml.safe_load((REPO / "configs" / "sample.yaml").read_text())
    data = _merge(_merge(data, TEST_SETTINGS), overrides or {})
    data["data_root"] = str(root)
    return config_from_dict(data)


def release_files(root: Path) -> dict[str, str]:
    """sha256 of every release file but the HTML report and the summary (they carry timings;
    the summary's counts are compared on their own)."""
    release = root / "release"
    return {
        str(p.relative_to(release)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(release.rglob("*"))
        if p.is_file()
        and p.suffix != ".html"
        and p.name != "summary.json"
        and "report" not in p.relative_to(release).parts
    }


def counts(root: Path) -> dict:
    summary = json.loads((root / "release" / "summary.json").read_text())
    return {k: v for k, v in summary.items() if k.startswith("by_") or k in ("images", "shards")}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    """The sample built at the path every case rebuilds at (stage fingerprints name paths, so
    a case restores this build there instead of building a copy elsewhere), kept pristine."""
    base = tmp_path_factory.mktemp("drift")
    root = base / "work" / "incremental"
    pipeline.build(config(root))
    shutil.copytree(root, base / "pristine", symlinks=True)
    return Built(base / "pristine", pq.read_table(root / "release" / "catalog.parquet"))


def _restore(built: Built) -> Path:
    """The built root, back at the path it was built at (mtimes kept)."""
    root = built.root.parent / "work" / "incremental"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(built.root, root, symlinks=True)
    return root


def test_a_restored_build_is_up_to_date(built):
    results = pipeline.build(config(_restore(built)))
    assert all(r.up_to_date or r.skipped for s, r in results.items() if s != "sample"), results


def _summary_matches_catalog(root: Path) -> None:
    summary = json.loads((root / "release" / "summary.json").read_text())
    catalog = pq.read_table(root / "release" / "catalog.parquet").to_pylist()
    assert summary["images"] == len(catalog)
    assert summary["by_status"] == dict(sorted(Counter(r["status"] for r in catalog).items()))
    by_source: dict = {}
    for r in catalog:
        by_source.setdefault(r["source"], Counter())[r["status"]] += 1
    assert summary["by_source"] == {s: dict(sorted(c.items())) for s, c in by_source.items()}
    kept = sum(r["status"] == "kept" for r in catalog)
    assert sum(v["samples"] for k, v in summary["shards"].items() if k != "train_small") == kept


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_incremental_build_equals_fresh_build(change, built):
    incremental, fresh = _restore(built), built.root.parent / "work" / "fresh"
    overrides = CHANGES[change](incremental / "sample", built)
    shutil.rmtree(fresh, ignore_errors=True)
    shutil.copytree(incremental / "sample", fresh / "sample", symlinks=True)

    cfg = config(incremental, overrides)
    pipeline.build(cfg)
    pipeline.build(config(fresh, overrides))

    assert release_files(incremental) == release_files(fresh)
    assert counts(incremental) == counts(fresh)
    assert verify_release(cfg)["ok"]
    _summary_matches_catalog(incremental)
    # nothing set aside for reuse stays once the new plan is written
    assert not list((incremental / "state" / "parts").glob("*/_previous"))
