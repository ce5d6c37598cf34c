"""Memory of the EOL downloader as the manifest grows: 100k and 1M http URLs over many hosts.

Every row goes through the whole ingest path over real HTTP (manifest streaming, duplicate
check, the per-host scheduler and adaptive limits, status, host report and catalog parts):
nginx answers on `--hosts` loopback ports (each a host to the downloader) with a 404 at once,
so the run measures the downloader's bookkeeping, not image decoding. Peak RSS is of the whole
process tree, with the default settings (only the loopback allowance of the fetch policy set).

    .venv/bin/python bench/download_memory.py [--rows 100000 1000000] [--hosts 50]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corpus import CACHE, load_line, run_measured, write_results  # noqa: E402
from download import EOL_HEADER, free_port  # noqa: E402
from download_wan import ensure_nginx  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


class NotFoundHosts:
    """nginx answering 404 on `n` loopback ports."""

    def __init__(self, n: int):
        self.ports = [free_port() for _ in range(n)]
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-dlmem-"))
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> NotFoundHosts:
        t = self.tmp
        (t / "www").mkdir()
        servers = "".join(f"server {{ listen 127.0.0.1:{p}; root {t}/www; }}\n" for p in self.ports)
        user = "user root;" if os.geteuid() == 0 else ""
        conf = (
            f"{user}\nworker_processes 1;\ndaemon off;\npid {t}/nginx.pid;\n"
            f"error_log {t}/error.log crit;\nevents {{ worker_connections 8192; }}\nhttp {{\n"
            f"  access_log off; log_not_found off; client_body_temp_path {t}/b;\n"
            f"  proxy_temp_path {t}/p; fastcgi_temp_path {t}/f; uwsgi_temp_path {t}/u;\n"
            f"  scgi_temp_path {t}/s; keepalive_requests 1000000;\n{servers}}}\n"
        )
        (t / "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen(["nginx", "-p", str(t), "-c", str(t / "nginx.conf")])
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.ports[-1]), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.tmp, ignore_errors=True)


def manifest(n: int, ports: list[int]) -> Path:
    path = CACHE / "download_memory" / f"manifest-{n}-{len(ports)}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(EOL_HEADER)
        for i in range(n):
            url = f"http://127.0.0.1:{ports[i % len(ports)]}/eol/media/{i}.jpg"
            w.writerow([i + 1, 1000 + i % 9973, "", url, "cc-by-nc-sa-2.0", "bench"])
    return path


def worker(cfg_json: str) -> None:
    from treeoflife.config import config_from_dict
    from treeoflife.sources import ingest_eol

    ingest_eol(config_from_dict(json.loads(cfg_json)), decode_workers=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--results", default=str(ROOT / "bench" / "results" / "download_memory.md"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker)
        return
    ensure_nginx()
    load_before = os.getloadavg()
    lines = [
        f"{args.hosts} hosts (nginx on loopback ports, every URL a 404); default settings.",
        "",
        "| manifest rows | peak RSS | wall s | rows/s | CPU s |",
        "|---|---|---|---|---|",
    ]
    with NotFoundHosts(args.hosts) as hosts:
        for n in args.rows:
            path = manifest(n, hosts.ports)
            out = CACHE / "download_memory" / f"root-{n}"
            shutil.rmtree(out, ignore_errors=True)
            section = {"manifests": [str(path)], "allow_hosts": ["127.0.0.1"], "retries": 0}
            cfg = {"data_root": str(out), "sources": {"eol": section}}
            res = run_measured([sys.executable, __file__, "--worker", json.dumps(cfg)], cwd=ROOT)
            stats = json.loads((out / "catalog" / "eol" / "_stats.json").read_text())
            assert stats["rows"] == n, stats
            lines.append(
                f"| {n:,} | {res.peak_rss / 2**20:.0f} MB | {res.wall_s:.0f} | "
                f"{n / res.wall_s:,.0f} | {res.cpu_s:.0f} |"
            )
            print(lines[-1], flush=True)
            shutil.rmtree(out, ignore_errors=True)
            path.unlink()
    report = "\n".join(lines) + "\n\n" + load_line(load_before, os.getloadavg())
    print(report)
    write_results(args.results, "download_memory: EOL downloader memory vs manifest size",
                  "bench/download_memory.py", report)  # fmt: skip


if __name__ == "__main__":
    main()
