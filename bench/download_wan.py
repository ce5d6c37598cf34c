"""EOL downloader vs img2dataset 1.47 against WAN-like hosts: latency, 404s, a rate limit, a drip.

nginx (Debian's `nginx-light` + `libnginx-mod-http-echo` for `echo_sleep`, installed here with
apt-get when missing) serves the real-photo corpus (`_corpus.py`) on several loopback ports,
each a separate host with its own time to first byte:

| host | share of URLs | time to first byte | behaviour |
|---|---|---|---|
| dominant | 50% | 80 ms | the content.eol.org of this job |
| near | 10% | 30 ms | |
| far | 10% | 200 ms | |
| farther | 10% | 400 ms | |
| limited | 12% | 100 ms | 429 + `Retry-After: 1` when more than K=6 of its requests are in flight |
| drip | 8% | 100 ms | sends 64 KiB/s per connection (a ~90 KB image takes ~1.5 s) |

3% of each host's URLs are 404s; the URL order is a seeded shuffle (hosts interleaved).
In one run, each against a fresh nginx (its own access log): ours with **default settings**
(only the work is set: resize to 256 px shorter side, and the loopback allowance the fetch
policy needs), ours tuned, and img2dataset 1.47 with its documented settings (README: "set
the processes_count as the number of cores"; thread_count its default 256; timeout 10 s and
retries 0, its defaults; resize 256 keep_ratio; webdataset). Prints images/s, CPU seconds, peak
RSS of each process tree, requests and 429s per host from nginx's log, and the share of 429s
the rate-limited host sent after the first 30 s of each run.

    .venv/bin/python bench/download_wan.py [--requests 15000] [--images 3000] [--skip-img2dataset]
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _corpus import CACHE, build_corpus, load_line, run_measured, write_results  # noqa: E402
from download import (  # noqa: E402
    EOL_HEADER,
    IMAGE_SIZE,
    IMG2DATASET_VERSION,
    ensure_img2dataset,
    free_port,
)

ROOT = Path(__file__).resolve().parent.parent
ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")
LIMIT_K = 6
RETRY_AFTER_S = 1
FIRST_S = 30.0  # 429s are counted after this many seconds of each run
NOT_FOUND_SHARE = 0.03
TUNED = {
    "concurrency": 512,
    "per_host_concurrency": 128,
    "host_start_concurrency": 16,
    "parts_in_flight": 6,
}


@dataclass(frozen=True)
class Host:
    name: str
    share: float
    ttfb_s: float
    limited: bool = False
    drip: bool = False


HOSTS = (
    Host("dominant", 0.50, 0.08),
    Host("near", 0.10, 0.03),
    Host("far", 0.10, 0.20),
    Host("farther", 0.10, 0.40),
    Host("limited", 0.12, 0.10, limited=True),
    Host("drip", 0.08, 0.10, drip=True),
)


def ensure_nginx() -> None:
    """nginx-light and the echo module, from Debian, where missing."""
    if shutil.which("nginx") and ECHO_MODULE.exists():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "nginx-light", "libnginx-mod-http-echo"],
        check=True,
        env=env,
    )


class WanNginx:
    """One nginx, one server block (port) per host, an access log with times and statuses."""

    def __init__(self, root: Path, ports: dict[str, int]):
        self.root = root
        self.ports = ports
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-wan-"))
        self.log = self.tmp / "access.log"
        self.proc: subprocess.Popen | None = None

    def _server(self, host: Host) -> str:
        port = self.ports[host.name]
        sleep = f"echo_sleep {host.ttfb_s}; echo_exec @file;"
        extra = ""
        if host.limited:
            extra = f"limit_conn inflight {LIMIT_K}; limit_conn_status 429;"
            sleep = f"add_header Retry-After {RETRY_AFTER_S} always; {sleep}"
        if host.drip:
            extra = "limit_rate 64k;"
        return (
            f"server {{ listen 127.0.0.1:{port}; root {self.root}; {extra}\n"
            f"  location /img/ {{ {sleep} }}\n  location @file {{ }}\n}}\n"
        )

    def __enter__(self) -> WanNginx:
        t = self.tmp
        user = "user root;" if os.geteuid() == 0 else ""
        conf = (
            f"load_module {ECHO_MODULE};\n{user}\nworker_processes 1;\ndaemon off;\n"
            f"pid {t}/nginx.pid;\nerror_log {t}/error.log warn;\n"
            "events { worker_connections 8192; }\nhttp {\n"
            "  log_format timed '$msec $server_port $status';\n"
            f"  access_log {self.log} timed buffer=256k flush=1s;\n"
            f"  client_body_temp_path {t}/body; proxy_temp_path {t}/proxy;\n"
            f"  fastcgi_temp_path {t}/fcgi; uwsgi_temp_path {t}/uwsgi; scgi_temp_path {t}/scgi;\n"
            "  types { image/jpeg jpg; }\n"
            "  sendfile on; tcp_nopush on; keepalive_requests 1000000; keepalive_timeout 60;\n"
            "  limit_conn_zone $server_port zone=inflight:1m;\n"
            + "".join(self._server(h) for h in HOSTS)
            + "}\n"
        )
        (t / "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen(["nginx", "-p", str(t), "-c", str(t / "nginx.conf")])
        for port in self.ports.values():
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                raise RuntimeError(f"nginx did not start: {(t / 'error.log').read_text()}")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def entries(self) -> list[tuple[float, int, int]]:
        """(time, port, status) of every request nginx answered."""
        out = []
        for line in self.log.read_text().splitlines():
            t, port, status = line.split()
            out.append((float(t), int(port), int(status)))
        return out

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def make_urls(n: int, n_files: int, ports: dict[str, int], seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    names = [h.name for h in HOSTS]
    weights = [h.share for h in HOSTS]
    urls = []
    for i in range(n):
        host = rng.choices(names, weights)[0]
        missing = rng.random() < NOT_FOUND_SHARE
        path = f"/img/missing-{i}.jpg" if missing else f"/img/{rng.randrange(n_files):05d}.jpg"
        urls.append(f"http://127.0.0.1:{ports[host]}{path}?r={i}")
    return urls


# ----------------------------------------------------------------------------- tools


def run_ours(manifest: Path, out: Path, ports: dict[str, int], tuned: bool):
    shutil.rmtree(out, ignore_errors=True)
    section = {
        "manifests": [str(manifest)],
        "resize_mode": "shorter_side",
        "image_size": IMAGE_SIZE,
        "jpeg_quality": 95,  # img2dataset's default encode_quality
        "allow_hosts": [f"127.0.0.1:{p}" for p in ports.values()],  # the policy, not tuning
        **(TUNED if tuned else {}),
    }
    cfg = {"data_root": str(out), "sources": {"eol": section}}
    argv = [sys.executable, __file__, "--ours-worker", json.dumps(cfg)]
    result = run_measured(argv, cwd=ROOT)
    stats = json.loads((out / "catalog" / "eol" / "_stats.json").read_text())
    return result, stats["ok"]


def ours_worker(cfg_json: str) -> None:
    import logging

    from treeoflife.config import config_from_dict
    from treeoflife.sources import ingest_eol

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("treeoflife.sources.download").setLevel(logging.INFO)
    ingest_eol(config_from_dict(json.loads(cfg_json)))


def run_img2dataset(urls_txt: Path, out: Path):
    shutil.rmtree(out, ignore_errors=True)
    argv = [
        str(ensure_img2dataset()),
        "--url_list", str(urls_txt),
        "--input_format", "txt",
        "--output_folder", str(out),
        "--processes_count", str(os.cpu_count() or 1),
        "--thread_count", "256",
        "--image_size", str(IMAGE_SIZE),
        "--resize_mode", "keep_ratio",
        "--resize_only_if_bigger", "True",
        "--output_format", "webdataset",
        "--enable_wandb", "False",
    ]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled", "NO_ALBUMENTATIONS_UPDATE": "1"}
    result = run_measured(argv, env=env)
    ok = sum(json.loads(p.read_text()).get("successes", 0) for p in out.glob("*_stats.json"))
    return result, ok


def host_figures(entries, ports: dict[str, int], t0: float) -> dict[str, dict]:
    by_port = {p: n for n, p in ports.items()}
    out: dict[str, dict] = {n: collections.Counter() for n in ports}
    for t, port, status in entries:
        c = out[by_port[port]]
        c["requests"] += 1
        c[f"s{status}"] += 1
        if t >= t0 + FIRST_S:
            c["late"] += 1
            c["late429"] += status == 429
    return {n: dict(c) for n, c in out.items()}


def host_report(out: Path) -> dict[str, dict]:
    path = out / "catalog" / "eol" / "hosts.status.parquet"
    if not path.exists():
        return {}
    return {r["host"]: r for r in pq.read_table(path).to_pylist()}


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=3000, help="distinct JPEGs in the corpus")
    ap.add_argument("--requests", type=int, default=15000, help="URLs fetched by each tool")
    ap.add_argument("--skip-img2dataset", action="store_true")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results" / "download_wan.md"))
    ap.add_argument("--ours-worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ours_worker:
        ours_worker(args.ours_worker)
        return

    ensure_nginx()
    work = CACHE / "download"
    files = build_corpus(work / "corpus", args.images)
    run_dir = work / "wan"
    run_dir.mkdir(parents=True, exist_ok=True)
    ports = {h.name: free_port() for h in HOSTS}
    urls = make_urls(args.requests, len(files), ports)
    (run_dir / "urls.txt").write_text("\n".join(urls) + "\n")
    with open(run_dir / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(EOL_HEADER)
        for i, url in enumerate(urls):
            w.writerow([i + 1, 1000 + i % 97, "", url, "cc-by", "bench"])
    expected_ok = sum("/missing-" not in u for u in urls)
    load_before = os.getloadavg()

    tools = [("treeoflife, default settings", "default")]
    if not args.skip_img2dataset:
        tools.append((f"img2dataset {IMG2DATASET_VERSION} (2 x 256 threads)", "img2dataset"))
    tools.append(("treeoflife, tuned", "tuned"))
    rows = []
    for name, kind in tools:
        server = WanNginx(work / "corpus", ports)
        with server:
            t0 = time.time()
            if kind == "img2dataset":
                res, ok = run_img2dataset(run_dir / "urls.txt", run_dir / "img2dataset")
                report = {}
            else:
                out = run_dir / kind
                res, ok = run_ours(run_dir / "manifest.csv", out, ports, kind == "tuned")
                report = host_report(out)
            time.sleep(1.2)  # the access log flushes every second
        figures = host_figures(server.entries(), ports, t0)
        server.cleanup()
        rows.append((name, res, ok, figures, report))
        print(name, f"{ok} ok in {res.wall_s:.1f} s", json.dumps(figures["limited"]), flush=True)
    load_after = os.getloadavg()

    report = render(args, rows, expected_ok, ports)
    report += "\n\n" + load_line(load_before, load_after)
    print(report)
    write_results(
        args.results,
        f"download_wan: EOL downloader vs img2dataset {IMG2DATASET_VERSION}, WAN-like hosts",
        "bench/download_wan.py",
        report,
    )


def render(args, rows, expected_ok: int, ports) -> str:
    hosts = ", ".join(
        f"{h.name} {h.share:.0%} {int(h.ttfb_s * 1000)} ms"
        + (f" (429 above {LIMIT_K} in flight, Retry-After {RETRY_AFTER_S})" if h.limited else "")
        + (" (64 KiB/s drip)" if h.drip else "")
        for h in HOSTS
    )
    lines = [
        f"{args.requests} URLs over {len(HOSTS)} loopback hosts (nginx-light + echo_sleep): "
        f"{hosts}; {NOT_FOUND_SHARE:.0%} 404s; {expected_ok} URLs can succeed. Ours tuned: "
        f"{json.dumps(TUNED)}.",
        "",
        "| tool | ok images | wall s | images/s | CPU s | peak RSS | limited host: requests "
        f"| 429s | 429s after {FIRST_S:.0f} s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res, ok, fig, _ in rows:
        lim = fig["limited"]
        late = lim.get("late", 0)
        late429 = lim.get("late429", 0)
        share = f"{late429}/{late} ({late429 / late:.1%})" if late else "no requests"
        lines.append(
            f"| {name} | {ok} | {res.wall_s:.1f} | {ok / res.wall_s:.0f} | {res.cpu_s:.1f} | "
            f"{res.peak_rss / 2**20:.0f} MB | {lim.get('requests', 0)} | "
            f"{lim.get('s429', 0)} | {share} |"
        )
    lines += ["", "Requests (429s) per host, from nginx's log:", ""]
    lines.append("| tool | " + " | ".join(h.name for h in HOSTS) + " |")
    lines.append("|---|" + "---|" * len(HOSTS))
    for name, _, _, fig, _ in rows:
        cells = [f"{fig[h.name].get('requests', 0)} ({fig[h.name].get('s429', 0)})" for h in HOSTS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, _, _, _, report in rows:
        if not report:
            continue
        lines += ["", f"{name}: the downloader's own per-host report (hosts.status.parquet):", ""]
        lines.append(
            "| host | requests | ok | errors | mean / p95 latency s | final / peak concurrency "
            "| learned ceiling |"
        )
        lines.append("|---|---|---|---|---|---|---|")
        by_port = {f"127.0.0.1:{p}": n for n, p in ports.items()}
        for key, r in sorted(report.items(), key=lambda kv: -kv[1]["requests"]):
            mean, p95 = r["mean_latency_s"] or 0.0, r["p95_latency_s"] or 0.0
            lines.append(
                f"| {by_port.get(key, key)} | {r['requests']} | {r['ok']} | {r['errors']} | "
                f"{mean:.3f} / {p95:.3f} | {r['final_concurrency']} / {r['peak_concurrency']} | "
                f"{r['learned_ceiling']} |"
            )
    peer = next((r for r in rows if r[0].startswith("img2dataset")), None)
    if peer is not None:
        lines.append("")
        peer_rate = peer[2] / peer[1].wall_s
        for name, res, ok, _, _ in rows:
            if name == peer[0]:
                continue
            lines.append(
                f"{name}: {ok / res.wall_s / peer_rate:.2f}x img2dataset's images/s, "
                f"{res.peak_rss / max(peer[1].peak_rss, 1):.2f}x its peak RSS, "
                f"{(res.cpu_s / max(ok, 1)) / (peer[1].cpu_s / max(peer[2], 1)):.2f}x its CPU "
                "per image"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
