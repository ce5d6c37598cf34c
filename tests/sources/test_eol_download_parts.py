"""EOL ingest at scale: status table per manifest row, resize on the way in, parts in flight,
and resume after kill -9 giving exactly what an uninterrupted run gives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from tests.support.mirror_server import Fault, MirrorServer
from treeoflife.config import config_from_dict
from treeoflife.sources import ingest_eol
from treeoflife.sources.download import DownloadSettings

from .builders import EOL_HEADER, jpeg, read_catalog, rows_of, snapshot, stored_bytes, write_csv

REPO = Path(__file__).resolve().parents[2]


def eol_cfg(tmp_path: Path, manifest: Path, **eol) -> object:
    section = {
        "manifests": [str(manifest)],
        "rows_per_part": 4,
        "retries": 1,
        "allow_hosts": ["127.0.0.1"],  # the test's loopback mirror
        **eol,
    }
    return config_from_dict({"data_root": str(tmp_path / "data"), "sources": {"eol": section}})


def status_rows(data_root: Path) -> list[dict]:
    return [
        r
        for p in sorted((data_root / "catalog/eol").glob("part-?????.status.parquet"))
        for r in pq.read_table(p).to_pylist()
    ]


def test_status_has_every_row_once_with_ok_failed_skipped(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    big = jpeg(5, 900, 600)
    (served / "big.jpg").write_bytes(big)
    (served / "small.jpg").write_bytes(jpeg(6, 120, 80))
    lines = [
        [1, 10, "", "{u}/big.jpg", "cc-by", "a"],
        [2, 10, "", "{u}/small.jpg", "cc-by", "a"],
        [3, 10, "", "", "cc-by", "a"],  # no URL: skipped
        [1, 10, "", "{u}/big.jpg", "cc-by", "a"],  # repeated key: skipped
        [4, 10, "", "{u}/missing.jpg", "cc-by", "a"],
        ["x", 10, "", "{u}/big.jpg", "cc-by", "a"],  # malformed: failed
    ]
    with MirrorServer(served) as server:
        manifest = tmp_path / "m.csv"
        write_csv(manifest, EOL_HEADER, [[str(v).format(u=server.url) for v in ln] for ln in lines])
        cfg = eol_cfg(
            tmp_path, manifest, resize_mode="shorter_side", image_size=200, rows_per_part=2
        )
        ingest_eol(cfg, decode_workers=0)
        assert server.hits["/big.jpg"] == 1  # the repeated key is never fetched
    status = status_rows(cfg.root)
    assert [(s["key"], s["status"], s["reason"]) for s in status] == [
        ("eol/1_10", "ok", None),
        ("eol/2_10", "ok", None),
        ("eol/3_10", "skipped", "no_url"),
        ("eol/1_10#dup1", "skipped", "duplicate_key"),
        ("eol/4_10", "failed", "http_404"),
        ("eol/malformed/0:7", "failed", "malformed_row"),
    ]
    assert (status[0]["width"], status[0]["height"], status[0]["bytes"]) == (300, 200, len(big))
    assert (status[1]["width"], status[1]["height"]) == (120, 80)  # never enlarged
    rows = rows_of(read_catalog(cfg.root, "eol")[0])
    assert [r["key"] for r in rows] == [s["key"] for s in status]
    stored = stored_bytes(cfg.root, rows[0])
    assert rows[0]["md5"] == status[0]["md5"]
    from io import BytesIO

    assert Image.open(BytesIO(stored)).size == (300, 200)
    stats = json.loads((cfg.root / "catalog/eol/_stats.json").read_text())
    assert stats["rows"] == 6 and stats["ok"] == 2


def test_parts_in_flight_give_the_same_bytes_as_one_at_a_time(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    faults = {}
    for i in range(12):
        (served / f"{i}.jpg").write_bytes(jpeg(i, 40, 30))
        if i % 4 == 0:  # the first row of each part is slow: later parts finish first
            faults[f"/{i}.jpg"] = Fault(latency_s=0.4)
    with MirrorServer(served, faults) as server:
        manifest = tmp_path / "m.csv"
        write_csv(
            manifest,
            EOL_HEADER,
            [[i + 1, 7, "", f"{server.url}/{i}.jpg", "cc0", "o"] for i in range(12)],
        )
        snaps = {}
        elapsed = {}
        runs = {
            "serial": {"parts_in_flight": 1},
            "overlap": {"parts_in_flight": 3},
            "processes": {"processes": 2, "resize_mode": "none"},
        }
        for run, options in runs.items():
            cfg = eol_cfg(tmp_path / run, manifest, **options)
            start = time.monotonic()
            ingest_eol(cfg, decode_workers=0)
            elapsed[run] = time.monotonic() - start
            snaps[run] = snapshot(cfg.root)
    assert snaps["serial"] == snaps["overlap"] == snaps["processes"]
    assert len([k for k in snaps["serial"] if k.endswith(".tar")]) == 3
    assert elapsed["overlap"] < elapsed["serial"]  # overlapping parts hide each slow row


WORKER = """
import json, sys
from treeoflife.config import config_from_dict
from treeoflife.sources import ingest_eol
ingest_eol(config_from_dict(json.loads(sys.argv[1])), decode_workers=0)
"""


def test_kill_9_then_rerun_equals_an_uninterrupted_run(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    n = 24
    for i in range(n):
        (served / f"{i}.jpg").write_bytes(jpeg(100 + i, 48, 32))
    faults = {f"/{i}.jpg": Fault(latency_s=0.1) for i in range(n)}
    faults["/3.jpg"] = Fault(status=404)
    with MirrorServer(served, faults) as server:
        manifest = tmp_path / "m.csv"
        write_csv(
            manifest,
            EOL_HEADER,
            [[i + 1, 9, "", f"{server.url}/{i}.jpg", "cc0", "o"] for i in range(n)],
        )
        section = {
            "manifests": [str(manifest)],
            "rows_per_part": 3,
            "parts_in_flight": 1,
            "concurrency": 2,
            "retries": 0,
            "allow_hosts": ["127.0.0.1"],
        }
        killed = {"data_root": str(tmp_path / "killed"), "sources": {"eol": section}}
        proc = subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(killed)], cwd=REPO)
        catalog = tmp_path / "killed" / "catalog" / "eol"
        deadline = time.monotonic() + 60
        # a part is done once its record (key + image ids, sources.partstore) is written
        records = tmp_path / "killed" / "state" / "parts" / "eol"
        while len(list(records.glob("part-?????.parquet"))) < 2:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done_before = sorted(p.name for p in records.glob("part-?????.parquet"))
        assert 2 <= len(done_before) < n // 3
        # nothing incomplete under a final name: every visible part reads in full
        for p in catalog.glob("part-?????.parquet"):
            assert pq.read_table(p).num_rows == 3
        resumed_cfg = config_from_dict(killed)
        hits_before = sum(server.hits.values())
        stats = ingest_eol(resumed_cfg, decode_workers=0)
        assert stats.parts_skipped >= len(done_before)
        assert sum(server.hits.values()) - hits_before <= n - 3 * len(done_before)
        clean = {"data_root": str(tmp_path / "clean"), "sources": {"eol": section}}
        ingest_eol(config_from_dict(clean), decode_workers=0)
    assert snapshot(tmp_path / "killed") == snapshot(tmp_path / "clean")
    assert len(status_rows(tmp_path / "killed")) == n
    assert [s["status"] for s in status_rows(tmp_path / "killed")].count("failed") == 1


def test_download_settings_follow_the_config(tmp_path):
    cfg = eol_cfg(
        tmp_path, tmp_path / "m.csv", per_host_rps=2.5, connect_timeout_s=3, max_redirects=2
    )
    s = DownloadSettings.from_config(cfg.sources.eol)
    assert (s.per_host_rps, s.connect_timeout_s, s.max_redirects) == (2.5, 3.0, 2)
