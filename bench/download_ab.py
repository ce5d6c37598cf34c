"""The EOL downloader of this checkout against another checkout's (e.g. main), interleaved.

The loopback benchmark's work (bench/download.py: 12000 URLs from nginx, 64 in flight, resize
to 256 px shorter side) run by this checkout's code and by `--other`'s, alternating for
`--rounds` rounds so a shared machine's load drift hits both alike: images/s, CPU ms per image
and peak RSS of each run. A regression check for changes to the downloader.

    .venv/bin/python bench/download_ab.py --other /path/to/main/checkout [--rounds 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corpus import CACHE, build_corpus, run_measured  # noqa: E402
from download import EOL_HEADER, IMAGE_SIZE, serve  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--other", help="another treeoflife checkout (none: nothing to compare)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--requests", type=int, default=12000)
    args = ap.parse_args()
    if not args.other:
        print("download_ab: no --other checkout given, nothing to compare")
        return
    work = CACHE / "download"
    files = build_corpus(work / "corpus", 3000)
    run = work / "ab"
    run.mkdir(parents=True, exist_ok=True)
    checkouts = {"this": ROOT, "other": Path(args.other).resolve()}
    server, _ = serve(work / "corpus")
    with server:
        with open(run / "m.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(EOL_HEADER)
            for i in range(args.requests):
                url = f"{server.url}/img/{i % len(files):05d}.jpg?r={i}"
                w.writerow([i + 1, 1000 + i % 97, "", url, "cc-by", "bench"])
        for rnd in range(args.rounds):
            for name, path in checkouts.items():
                out = run / name
                shutil.rmtree(out, ignore_errors=True)
                section = {
                    "manifests": [str(run / "m.csv")],
                    "concurrency": 64,
                    "per_host_concurrency": 64,
                    "retries": 0,
                    "resize_mode": "shorter_side",
                    "image_size": IMAGE_SIZE,
                    "jpeg_quality": 95,
                }
                if "allow_hosts" in (path / "treeoflife" / "config.py").read_text():
                    section["allow_hosts"] = ["127.0.0.1"]  # a checkout with the fetch policy
                cfg = json.dumps({"data_root": str(out), "sources": {"eol": section}})
                argv = [sys.executable, str(ROOT / "bench" / "download.py"), "--ours-worker", cfg]
                res = run_measured(argv, env={**os.environ, "PYTHONPATH": str(path)}, cwd=path)
                ok = json.loads((out / "catalog" / "eol" / "_stats.json").read_text())["ok"]
                print(
                    f"round {rnd + 1} {name} ({path}): {ok} ok, {ok / res.wall_s:.0f} images/s, "
                    f"{1000 * res.cpu_s / max(ok, 1):.2f} ms CPU / image, "
                    f"{res.peak_rss / 2**20:.0f} MB, load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
