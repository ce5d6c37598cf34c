"""`splits.val_fraction: 0` is a legitimate setting: the release has an empty `val` split.

It used to crash the release stage after every earlier stage had run (filling shard locations
from an empty shard index took row 0 of an empty table). Chosen behaviour: the `val` folder is
still written, with `sizes.json` `{}`, a manifest of 0 samples and an empty index, so every
split of every release has the same files; `verify` accepts it; the dataset card declares no
`val` data files (a pattern matching no file would make `datasets` fail); stale `val` shards of
an earlier build with a validation share are removed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "treeoflife.cli", *args, "-q"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )


def _config(tmp_path: Path, val_fraction: float) -> Path:
    data = yaml.safe_load((REPO / "configs" / "sample.yaml").read_text())
    data["splits"]["val_fraction"] = val_fraction
    path = tmp_path / f"val-{val_fraction}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _release_files(root: Path) -> dict[str, bytes]:
    release = root / "release"
    return {str(p.relative_to(release)): p.read_bytes() for p in release.rglob("*") if p.is_file()}


def test_sample_builds_and_verifies_with_val_fraction_zero(tmp_path):
    root = tmp_path / "data"
    zero, tenth = _config(tmp_path, 0), _config(tmp_path, 0.1)
    done = _cli("build", "--config", str(zero), "--data-root", str(root))
    assert done.returncode == 0, done.stderr
    val = root / "release" / "shards" / "val"
    assert json.loads((val / "sizes.json").read_text()) == {}
    assert json.loads((val / "manifest.json").read_text())["samples"] == 0
    assert pq.read_table(val / "index.parquet").num_rows == 0
    assert not list(val.glob("*.tar"))
    catalog = pq.read_table(root / "release" / "catalog.parquet", columns=["split", "status"])
    splits = catalog.column("split").to_pylist()
    assert "val" not in splits and splits.count("train") == catalog.column(
        "status"
    ).to_pylist().count("kept")
    card = (root / "release" / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    declared = [f["split"] for c in front["configs"] for f in c["data_files"]]
    assert "train" in declared and "val" not in declared
    checked = _cli("verify", "--config", str(zero), "--data-root", str(root))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "val          ok     0 shard(s), 0 samples" in checked.stdout
    fresh = _release_files(root)

    # with a validation share the val shards appear; back to 0, they go, and the release is
    # the same bytes as the fresh build with 0
    assert _cli("build", "--config", str(tenth), "--data-root", str(root)).returncode == 0
    assert list(val.glob("*.tar"))
    assert _cli("build", "--config", str(zero), "--data-root", str(root)).returncode == 0
    assert not list(val.glob("*.tar"))
    assert _release_files(root) == fresh
