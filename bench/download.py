"""EOL downloader vs img2dataset 1.47: the same URL list over loopback, the same output.

Builds (or reuses) a corpus of JPEGs cut from real photos (see `_corpus.py`), serves it with
nginx on a free loopback port (a Python server if nginx is absent; the report says which), and
in one run times on the same >= 10k URLs:

- img2dataset 1.47 (`--thread_count 32 --processes_count 2 --image_size 256 --resize_mode
  keep_ratio --resize_only_if_bigger True --output_format webdataset`), in its own venv under
  bench/.venvs/img2dataset (created here: it pins versions that conflict with ours), and
- ours: `ingest_eol` with `resize_mode: shorter_side, image_size: 256` (256 px shorter side,
  aspect kept, never enlarged; JPEGs in tar parts + catalog + status Parquet),

printing images/s, CPU seconds, peak RSS of each process tree and the ratios, plus the per-core
bound (decode with JPEG draft + resize + encode on one core) measured in the same run.

    .venv/bin/python bench/download.py [--images 3000] [--requests 12000] [--skip-img2dataset]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corpus import CACHE, SKIMAGE_VERSION, build_corpus, run_measured  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support.mirror_server, when nginx is absent
IMG2DATASET_VENV = Path(__file__).resolve().parent / ".venvs" / "img2dataset"
IMG2DATASET_VERSION = "1.47.0"
IMAGE_SIZE = 256
CONCURRENCY = 64  # img2dataset: 32 threads x 2 processes
EOL_HEADER = [
    "EOL content ID",
    "EOL page ID",
    "Medium Source URL",
    "EOL Full-Size Copy URL",
    "License Name",
    "Copyright Owner",
]


# ----------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """nginx (one worker) serving `root` on a loopback port, with its own config in a temp dir."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Nginx:
        t = self.tmp
        user = "user root;" if os.geteuid() == 0 else ""
        conf = f"""
{user}
worker_processes 1;
daemon off;
pid {t}/nginx.pid;
error_log {t}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {t}/body; proxy_temp_path {t}/proxy; fastcgi_temp_path {t}/fcgi;
  uwsgi_temp_path {t}/uwsgi; scgi_temp_path {t}/scgi;
  types {{ image/jpeg jpg; }}
  sendfile on; tcp_nopush on; keepalive_requests 1000000; keepalive_timeout 60;
  server {{ listen 127.0.0.1:{self.port}; root {self.root}; }}
}}
"""
        (t / "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen(["nginx", "-p", str(t), "-c", str(t / "nginx.conf")])
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not start: {(t / 'error.log').read_text()}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.tmp, ignore_errors=True)


def serve(root: Path):
    """nginx if installed, else our loopback server (stdlib); returns (context, name)."""
    if shutil.which("nginx"):
        return Nginx(root), "nginx (1 worker)"
    from tests.support.mirror_server import MirrorServer

    return MirrorServer(root), "tests.support.mirror_server.MirrorServer (stdlib, no nginx found)"


# ----------------------------------------------------------------------------- peers


def ensure_img2dataset() -> Path:
    exe = IMG2DATASET_VENV / "bin" / "img2dataset"
    if exe.exists():
        return exe
    subprocess.run([sys.executable, "-m", "venv", str(IMG2DATASET_VENV)], check=True)
    pip = IMG2DATASET_VENV / "bin" / "pip"
    subprocess.run(
        [str(pip), "install", "--quiet", f"img2dataset=={IMG2DATASET_VERSION}"], check=True
    )
    return exe


def run_img2dataset(urls_txt: Path, out: Path):
    shutil.rmtree(out, ignore_errors=True)
    argv = [
        str(ensure_img2dataset()),
        "--url_list", str(urls_txt),
        "--input_format", "txt",
        "--output_folder", str(out),
        "--thread_count", "32",
        "--processes_count", "2",
        "--image_size", str(IMAGE_SIZE),
        "--resize_mode", "keep_ratio",
        "--resize_only_if_bigger", "True",
        "--output_format", "webdataset",
    ]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled", "NO_ALBUMENTATIONS_UPDATE": "1"}
    result = run_measured(argv, env=env)
    ok = 0
    for stats in out.glob("*_stats.json"):
        ok += json.loads(stats.read_text()).get("successes", 0)
    return result, ok, sorted(out.glob("*.tar"))


def run_ours(manifest: Path, out: Path, processes: int):
    shutil.rmtree(out, ignore_errors=True)
    section = {
        "manifests": [str(manifest)],
        "rows_per_part": 2000,
        "concurrency": CONCURRENCY,
        "per_host_concurrency": CONCURRENCY,
        "retries": 0,
        "resize_mode": "shorter_side",
        "image_size": IMAGE_SIZE,
        "jpeg_quality": 95,  # img2dataset's default encode_quality
        "processes": processes,
        "allow_hosts": ["127.0.0.1"],  # the fetch policy refuses loopback unless allowed
    }
    cfg = {"data_root": str(out), "sources": {"eol": section}}
    argv = [sys.executable, __file__, "--ours-worker", json.dumps(cfg)]
    result = run_measured(argv, cwd=ROOT)
    stats = json.loads((out / "catalog" / "eol" / "_stats.json").read_text())
    return result, stats["ok"], sorted((out / "images" / "eol").glob("*.tar"))


def ours_worker(cfg_json: str) -> None:
    from treeoflife.config import config_from_dict
    from treeoflife.sources import ingest_eol

    ingest_eol(config_from_dict(json.loads(cfg_json)))


# ----------------------------------------------------------------------------- checks


def per_core_bound(files: list[Path], seconds: float = 8.0) -> float:
    """Images/s of decode (JPEG draft) + resize + encode on one core: our normalize_image."""
    from treeoflife.images import ResizePolicy, normalize_image

    policy = ResizePolicy("shorter_side", IMAGE_SIZE, 95)
    datas = [f.read_bytes() for f in files[:400]]
    n, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        normalize_image(datas[n % len(datas)], resize=policy)
        n += 1
    return n / (time.process_time() - start)


def check_tars(tars: list[Path], sample: int = 200) -> tuple[int, int]:
    """(JPEG members, members of the first `sample` whose shorter side is <= IMAGE_SIZE)."""
    n = good = 0
    for path in tars:
        with tarfile.open(path) as tar:
            for member in tar:
                if not member.name.endswith(".jpg"):
                    continue
                n += 1
                if n <= sample:
                    img = Image.open(io.BytesIO(tar.extractfile(member).read()))
                    good += min(img.size) <= IMAGE_SIZE
    return n, min(n, sample) - good


def mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=3000, help="distinct JPEGs in the corpus")
    ap.add_argument("--requests", type=int, default=12000, help="URLs fetched by each tool")
    ap.add_argument("--skip-img2dataset", action="store_true")
    ap.add_argument(
        "--processes", type=int, nargs="+", default=[1], help="ours: download process counts"
    )
    ap.add_argument("--results", default=str(ROOT / "bench" / "results" / "download.md"))
    ap.add_argument("--ours-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ours_worker:
        ours_worker(args.ours_worker)
        return

    work = CACHE / "download"
    files = build_corpus(work / "corpus", args.images)
    corpus_bytes = sum(f.stat().st_size for f in files)
    big = sum(1 for f in files if max(Image.open(f).size) > 500)
    run_dir = work / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()

    server, server_name = serve(work / "corpus")
    with server:
        urls = [f"{server.url}/img/{i % len(files):05d}.jpg?r={i}" for i in range(args.requests)]
        (run_dir / "urls.txt").write_text("\n".join(urls) + "\n")
        with open(run_dir / "manifest.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(EOL_HEADER)
            for i, url in enumerate(urls):
                w.writerow([i + 1, 1000 + i % 97, "", url, "cc-by", "bench"])
        bound = per_core_bound(files)
        # ours and the peer alternate (ours, peer, ours...) so load drift on a shared machine
        # hits both alike
        rows = []
        for i, procs in enumerate(args.processes):
            res, ok, tars = run_ours(run_dir / "manifest.csv", run_dir / "ours", procs)
            name = f"treeoflife ingest_eol (processes={procs})"
            rows.append((name, res, ok, *check_tars(tars)))
            if i == 0 and not args.skip_img2dataset:
                res, ok, tars = run_img2dataset(run_dir / "urls.txt", run_dir / "img2dataset")
                rows.insert(0, ("img2dataset 1.47", res, ok, *check_tars(tars)))
    load_after = os.getloadavg()

    lines = [
        f"corpus: {len(files)} JPEGs from scikit-image {SKIMAGE_VERSION} photos, "
        f"{big} with max side > 500 px, {mb(corpus_bytes)}; {args.requests} requests; "
        f"server: {server_name}",
        f"per-core bound (decode with draft + resize to {IMAGE_SIZE} + encode, one core): "
        f"{bound:.0f} images/s",
        "",
        "| tool | ok images | wall s | images/s | CPU s | CPU s / 1k images | peak RSS "
        "| JPEGs in tars | too big |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res, ok, n_jpg, bad in rows:
        lines.append(
            f"| {name} | {ok} | {res.wall_s:.1f} | {ok / res.wall_s:.0f} | {res.cpu_s:.1f} | "
            f"{1000 * res.cpu_s / max(ok, 1):.2f} | {mb(res.peak_rss)} | {n_jpg} | {bad} |"
        )
    lines.append("")
    peer = rows[0] if not args.skip_img2dataset else None
    cores = os.cpu_count() or 1
    for name, res, ok, _, _ in rows:
        if peer is not None and name == peer[0]:
            continue
        rate = ok / res.wall_s
        line = (
            f"{name}: {rate / bound:.2f}x the one-core bound "
            f"({rate / (bound * cores):.0%} of {cores} cores)"
        )
        if peer is not None:
            peer_rate = peer[2] / peer[1].wall_s
            line += (
                f"; vs img2dataset: {rate / peer_rate:.2f}x images/s, "
                f"{res.peak_rss / max(peer[1].peak_rss, 1):.2f}x peak RSS, "
                f"{(res.cpu_s / ok) / (peer[1].cpu_s / max(peer[2], 1)):.2f}x CPU per image"
            )
        lines.append(line)
    lines.append("")
    lines.append(
        f"load average before / after: {' '.join(f'{x:.2f}' for x in load_before)} / "
        f"{' '.join(f'{x:.2f}' for x in load_after)}"
    )
    report = "\n".join(lines)
    print(report)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "  .venv/bin/python bench/download.py " + " ".join(
        a for a in sys.argv[1:] if not a.startswith("--results")
    )
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(
        f"# download: EOL downloader vs img2dataset {IMG2DATASET_VERSION}\n\n"
        f"{when}, {cores} cores.\n\n```\n{cmd.rstrip()}\n```\n\n{report}\n"
    )


if __name__ == "__main__":
    main()
