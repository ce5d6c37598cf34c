"""Planning a published TreeOfLife-10M rebuild at full size, and its label diff at scale.

Generates a catalog.csv in the dataset card's layout (default 10M images: 66% EOL, 27% iNat21,
7% BIOSCAN-1M; 10% of train also listed as train_small, as the card says) and its
licenses.csv (one row per EOL image), then times `write_plan` (DuckDB: fold train_small,
join licences, keys, problems) in its own process, peak RSS of the process tree. Peer: what a
load-it-all script does, polars reading both CSVs whole and joining them. The label diff
(`release/label_diff.py`) runs over a synthetic joined table of `--diff-rows` images.

    .venv/bin/python bench/published_plan.py [--rows 1000000 10000000] [--diff-rows 1000000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corpus import CACHE, load_line, run_measured, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# One DuckDB statement per file: ids and labels are pure functions of the row number.
_IMAGES = """
SELECT i,
  substr(md5(i::VARCHAR), 1, 8) || '-' || substr(md5(i::VARCHAR), 9, 4) || '-4' ||
  substr(md5(i::VARCHAR), 14, 3) || '-8' || substr(md5(i::VARCHAR), 18, 3) || '-' ||
  substr(md5(i::VARCHAR), 21, 12) AS treeoflife_id,
  CASE WHEN i % 100 < 66 THEN 'eol' WHEN i % 100 < 93 THEN 'inat21' ELSE 'bioscan' END AS src,
  CASE WHEN i % 50 = 0 THEN 'val' ELSE 'train' END AS split
FROM range({n}) t(i)
"""
_CATALOG = """
COPY (
  WITH img AS ({images}), listed AS (
    SELECT * FROM img UNION ALL
    SELECT i, treeoflife_id, src, 'train_small' FROM img WHERE split = 'train' AND i % 10 = 3
  )
  SELECT split, treeoflife_id,
    CASE WHEN src = 'eol' THEN (20000000 + i)::VARCHAR END AS eol_content_id,
    CASE WHEN src = 'eol' THEN (1000 + i % 400000)::VARCHAR END AS eol_page_id,
    CASE WHEN src = 'bioscan' THEN (1 + i % 113)::VARCHAR END AS bioscan_part,
    CASE WHEN src = 'bioscan' THEN 'BIOUG' || i || '-A01.jpg' END AS bioscan_filename,
    CASE WHEN src = 'inat21' THEN md5('f' || i) || '.jpg' END AS inat21_filename,
    CASE WHEN src = 'inat21' THEN lpad((i % 10000)::VARCHAR, 5, '0') || '_Animalia_x' END
      AS inat21_cls_name,
    CASE WHEN src = 'inat21' THEN (i % 10000)::VARCHAR END AS inat21_cls_num,
    ['Animalia', 'Plantae', 'Fungi', 'Chromista', 'Protozoa'][1 + i % 5] AS kingdom,
    'Phylum' || (i % 97) AS phylum, 'Class' || (i % 997) AS class, 'Order' || (i % 4999) AS "order",
    'Family' || (i % 19997) AS family, 'Genus' || (i % 99991) AS genus,
    CASE WHEN i % 7 <> 0 THEN 'epithet' || (i % 454000) END AS species,
    'common name ' || (i % 454000) AS common
  FROM listed ORDER BY i, split
) TO '{path}' (HEADER, DELIMITER ',')
"""
_LICENSES = """
COPY (
  SELECT treeoflife_id, (20000000 + i)::VARCHAR AS eol_content_id,
    (1000 + i % 400000)::VARCHAR AS eol_page_id, md5('image' || i) AS md5,
    'https://farm' || (i % 9) || '.staticflickr.com/' || i || '_o.jpg' AS medium_source_url,
    'https://content.eol.org/data/media/' || substr(md5(i::VARCHAR), 1, 2) || '/' || i || '.jpg'
      AS eol_full_size_copy_url,
    'cc-by-nc-4.0' AS license_name, 'Photographer ' || (i % 9973) AS copyright_owner,
    'https://creativecommons.org/licenses/by-nc/4.0/' AS license_link, 'not provided' AS title
  FROM ({images}) WHERE src = 'eol'
) TO '{path}' (HEADER, DELIMITER ',')
"""


def published_files(n: int) -> tuple[Path, Path]:
    import duckdb

    folder = CACHE / "published" / f"{n}"
    catalog, licenses = folder / "catalog.csv", folder / "licenses.csv"
    if catalog.exists() and licenses.exists():
        return catalog, licenses
    folder.mkdir(parents=True, exist_ok=True)
    images = _IMAGES.format(n=n)
    con = duckdb.connect()
    con.execute(_CATALOG.format(images=images, path=str(catalog) + ".tmp"))
    con.execute(_LICENSES.format(images=images, path=str(licenses) + ".tmp"))
    os.replace(str(catalog) + ".tmp", catalog)
    os.replace(str(licenses) + ".tmp", licenses)
    return catalog, licenses


OURS = """
import sys
from pathlib import Path
from treeoflife.sources.published.plan import write_plan
counts = write_plan(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[5])
assert counts["images"] == int(sys.argv[4]), counts
"""
PEER = """
import sys, polars as pl
cat = pl.read_csv(sys.argv[1], infer_schema_length=0)
lic = pl.read_csv(sys.argv[2], infer_schema_length=0)
plan = cat.unique("treeoflife_id").join(lic, on="treeoflife_id", how="left")
assert plan.height == int(sys.argv[4]), plan.height
"""
DIFF = """
import sys, time
import pyarrow as pa, pyarrow.compute as pc
from treeoflife.release.label_diff import label_diff
from treeoflife.schemas import RANKS

n = int(sys.argv[1])
i = pa.array(range(n), pa.int64())


def s(prefix, mask):
    return pc.binary_join_element_wise(prefix, pc.cast(pc.bit_wise_and(i, mask), pa.string()), "")


def same(value):
    return pa.array([value] * n, pa.string())


keys = pc.binary_join_element_wise("eol/", pc.cast(i, pa.string()), "")
labels = {r: s(r, 1023) for r in RANKS}
plan = pa.table({"key": keys, "treeoflife_id": keys, **labels, "common": s("c", 4095)})
resolved = {**labels, "species": s("species", 511)}  # half the species differ
joined = pa.table({
    "key": keys, "source": same("eol"), "status": same("ok"), **resolved,
    "common_name": s("c", 4095), "match_type": same("exact"),
    **{f"{r}_provenance": same("gbif-backbone") for r in RANKS},
    **{f"{r}_match_type": same("exact") for r in RANKS},
})
t = time.monotonic()
diff, compared = label_diff(joined, plan)
assert compared == n and abs(diff.num_rows - n // 2) <= 512, (diff.num_rows, compared)
print(f"label diff of {n} images: {diff.num_rows} changes in {time.monotonic() - t:.1f} s")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--memory-limit", default="1GB", help="DuckDB's memory_limit for the plan")
    ap.add_argument("--peer-max", type=int, default=1_000_000, help="largest size the peer runs")
    ap.add_argument("--diff-rows", type=int, nargs="*", default=[1_000_000])
    ap.add_argument("--results", default=str(ROOT / "bench" / "results" / "published_plan.md"))
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = os.getloadavg()
    lines = [
        "| images | catalog.csv rows | ours: wall s | ours: CPU s | ours: peak RSS "
        "| peer (polars whole): wall s | peer: CPU s | peer: peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in args.rows:
        catalog, licenses = published_files(n)
        with open(catalog, "rb") as fh:
            csv_rows = sum(buf.count(b"\n") for buf in iter(lambda: fh.read(1 << 24), b"")) - 1
        out = CACHE / "published" / f"plan-{n}"
        shutil.rmtree(out, ignore_errors=True)
        argv = [str(catalog), str(licenses), str(out / "plan.parquet"), str(n)]
        ours = run_measured(
            [sys.executable, "-c", OURS, *argv, args.memory_limit], env=env, cwd=ROOT
        )
        peer = None
        if n <= args.peer_max:
            peer = run_measured([sys.executable, "-c", PEER, *argv], env=env, cwd=ROOT)
        if ours.returncode or (peer and peer.returncode):
            raise SystemExit(
                f"a run failed: ours {ours.returncode}, peer {peer and peer.returncode}"
            )
        peer_cells = (
            f"{peer.wall_s:.1f} | {peer.cpu_s:.1f} | {peer.peak_rss / 2**20:,.0f} MB"
            if peer
            else "not run | - | -"
        )
        print(
            f"{n:,} images: ours {ours.wall_s:.1f} s, {ours.peak_rss / 2**20:,.0f} MB", flush=True
        )
        lines.append(
            f"| {n:,} | {csv_rows:,} | {ours.wall_s:.1f} | {ours.cpu_s:.1f} "
            f"| {ours.peak_rss / 2**20:,.0f} MB "
            f"| {peer_cells} |"
        )
        shutil.rmtree(out, ignore_errors=True)
    if args.diff_rows:
        lines += ["", "| label diff: images | changed (rank, image) rows | wall s | peak RSS |",
                  "|---|---|---|---|"]  # fmt: skip
        for n in args.diff_rows:
            res = run_measured([sys.executable, "-c", DIFF, str(n)], env=env, cwd=ROOT)
            if res.returncode:
                raise SystemExit(f"label diff at {n} failed")
            lines.append(f"| {n:,} | ~{n // 2:,} (species) | {res.wall_s:.1f} | "
                         f"{res.peak_rss / 2**20:,.0f} MB |")  # fmt: skip
    lines += ["", load_line(before, os.getloadavg())]
    report = "\n".join(lines)
    print(report)
    write_results(
        args.results,
        "published_plan: planning a published rebuild",
        "bench/published_plan.py",
        report,
    )


if __name__ == "__main__":
    main()
