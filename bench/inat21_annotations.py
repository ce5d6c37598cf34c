"""Memory of reading iNat21's annotations at full size (peer: json.load of the same file).

train.json has 2,686,843 images and as many annotations. Before its archive is streamed, the
ingest parses the JSON and keeps a plan: per image its key, file name, category, licence and
rights holder, plus a name -> image map. This benchmark writes a synthetic train.json with
iNat21's fields (every image field the real one has, 10,000 categories) and measures the peak
RSS of three processes on it:

- ours: `load_annotations` (streamed, images kept column-wise) + `plan_archive`;
- previous: the same two functions as they were at git HEAD (json.load, then a full catalog row
  dict per image) when HEAD still has them;
- peer: plain `json.load` of the file, what any COCO reader (torchvision, tfds) does first.

    .venv/bin/python bench/inat21_annotations.py [--images 300000 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corpus import CACHE, load_line, run_measured, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CATEGORIES = 10_000


def annotations(n: int) -> Path:
    """A train.json shaped like iNat21's, written as a stream (never built in memory)."""
    path = CACHE / "inat21_annotations" / f"train-{n}.json"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    cats = [
        {
            "id": c, "name": f"Genus{c // 3} species{c}", "common_name": f"Common thing {c}",
            "supercategory": "Plants", "kingdom": "Plantae", "phylum": "Tracheophyta",
            "class": "Magnoliopsida", "order": f"Order{c % 50}", "family": f"Family{c % 500}",
            "genus": f"Genus{c // 3}", "specific_epithet": f"species{c}",
            "image_dir_name": f"{c:05d}_Plantae_Tracheophyta_Magnoliopsida_Order{c % 50}_"
            f"Family{c % 500}_Genus{c // 3}_species{c}",
        }
        for c in range(CATEGORIES)
    ]  # fmt: skip
    with open(tmp, "w") as fh:
        fh.write('{"info": {"year": 2021}, "images": [')
        for i in range(n):
            c = i % CATEGORIES
            image = {
                "id": i, "width": 500, "height": 375,
                "file_name": f"train/{cats[c]['image_dir_name']}/"
                f"{i:08x}-{i % 65536:04x}-4{i % 4096:03x}-8000-{i * 7919:012x}.jpg",
                "license": 1 + i % 6, "rights_holder": f"observer name {i % 150_000}",
                "date": "2019-06-01 10:20:30+00:00", "latitude": 40.12345 + i % 97,
                "longitude": -10.5432 - i % 89, "location_uncertainty": 10 + i % 500,
            }  # fmt: skip
            fh.write(("," if i else "") + json.dumps(image))
        fh.write('], "categories": ' + json.dumps(cats) + ', "annotations": [')
        for i in range(n):
            ann = {"id": i, "image_id": i, "category_id": i % CATEGORIES}
            fh.write(("," if i else "") + json.dumps(ann))
        fh.write('], "licenses": [' + ",".join(
            json.dumps({"id": k, "name": f"License {k}", "url": ""}) for k in range(1, 7)
        ) + "]}")  # fmt: skip
    os.replace(tmp, path)
    return path


OURS = """
import sys
from treeoflife.config import config_from_dict
from treeoflife.sources.inat21_annotations import load_annotations
from treeoflife.sources.inat21_plan import plan_archive
cfg = config_from_dict({"data_root": "/tmp"})
from treeoflife.sources.seen import SeenKeys
data = load_annotations(sys.argv[1], cfg)
plan = plan_archive(data, 0, 0, 10000, SeenKeys(capacity=1024))
del data
assert plan.n_rows == int(sys.argv[2]) and len(plan.listed_rows) == int(sys.argv[2])
"""
PREVIOUS = """
import importlib.util, sys
from treeoflife.config import config_from_dict
spec = importlib.util.spec_from_file_location("inat21_previous", sys.argv[3])
mod = importlib.util.module_from_spec(spec)
sys.modules["inat21_previous"] = mod  # dataclasses look their module up
spec.loader.exec_module(mod)
cfg = config_from_dict({"data_root": "/tmp"})
data = mod.load_annotations(sys.argv[1], cfg)
plan = mod.plan_archive(data, 0, 0, 10000, {})
del data
assert len(plan.rows) == int(sys.argv[2])
"""
PEER = """
import json, sys
with open(sys.argv[1], "rb") as fh:
    data = json.load(fh)
assert len(data["images"]) == int(sys.argv[2])
"""


def previous_module() -> Path | None:
    """inat21.py as committed (the version before this benchmark's change), if it differs."""
    try:
        text = subprocess.run(
            ["git", "show", "HEAD:treeoflife/sources/inat21.py"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    if "object_hook=_compact" in text:  # HEAD already has the compact plan
        return None
    split = subprocess.run(  # the compact reader moved to its own module: nothing to compare
        ["git", "cat-file", "-e", "HEAD:treeoflife/sources/inat21_annotations.py"], cwd=ROOT
    )
    if split.returncode == 0:
        return None
    path = CACHE / "inat21_annotations" / "inat21_previous.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, nargs="+", default=[300_000, 1_000_000])
    ap.add_argument("--results", default=str(ROOT / "bench" / "results" / "inat21_annotations.md"))
    args = ap.parse_args()
    previous = previous_module()
    load_before = os.getloadavg()
    lines = [
        "| images | JSON size | ours: peak RSS | ours: wall s | previous: peak RSS | "
        "previous: wall s | peer (json.load): peak RSS | peer: wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in args.images:
        path = annotations(n)
        ours = run_measured([sys.executable, "-c", OURS, str(path), str(n)], cwd=ROOT)
        prev = None
        if previous is not None:
            argv = [sys.executable, "-c", PREVIOUS, str(path), str(n), str(previous)]
            prev = run_measured(argv, cwd=ROOT)
        peer = run_measured([sys.executable, "-c", PEER, str(path), str(n)], cwd=ROOT)
        if ours.returncode or peer.returncode or (prev and prev.returncode):
            raise SystemExit("a run failed")
        prev_cells = f"{prev.peak_rss / 2**20:,.0f} MB | {prev.wall_s:.1f}" if prev else "n/a | n/a"
        lines.append(
            f"| {n:,} | {path.stat().st_size / 2**20:,.0f} MB | {ours.peak_rss / 2**20:,.0f} MB "
            f"| {ours.wall_s:.1f} | {prev_cells} | {peer.peak_rss / 2**20:,.0f} MB "
            f"| {peer.wall_s:.1f} |"
        )
    load_after = os.getloadavg()
    lines += ["", load_line(load_before, load_after)]
    report = "\n".join(lines)
    print(report)
    write_results(
        args.results,
        "inat21_annotations: memory of planning an iNat21 archive from its JSON",
        "bench/inat21_annotations.py",
        report,
    )


if __name__ == "__main__":
    main()
