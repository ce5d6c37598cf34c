"""EOL ingest: manifests + pages, images from a local mirror folder and over real loopback HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support.mirror_server import HTML_ERROR_PAGE, Fault, MirrorServer
from treeoflife.config import config_from_dict
from treeoflife.schemas import SOURCE_CATALOG
from treeoflife.sources import ingest_eol
from treeoflife.sources.download import DownloadSettings
from treeoflife.sources.eol import STATUS_SCHEMA, rewrite_url

from .builders import (
    EOL_HEADER,
    PAGES_HEADER,
    jpeg,
    png_rgba,
    read_catalog,
    rows_of,
    snapshot,
    stored_bytes,
    write_csv,
)

EOL_PREFIX = "https://content.eol.org/data/media/"
USER_AGENT = "treeoflife-test/1.0 (+mailto:test@example.org)"


def manifest_line(content_id, page_id, name: str) -> list:
    return [
        content_id,
        page_id,
        f"https://www.flickr.com/photos/{content_id}",
        EOL_PREFIX + name,
        "cc-by-2.0",
        f"Owner {content_id}",
    ]


def write_pages(folder: Path) -> None:
    write_csv(
        folder / "pages.csv",
        PAGES_HEADER,
        [
            [1001, "Danaus plexippus", "Animalia", "Arthropoda", "Insecta", "Lepidoptera",
             "Nymphalidae", "Danaus", "Monarch"],
            [1002, "Quercus robur", "Plantae", "Tracheophyta", "Magnoliopsida", "Fagales",
             "Fagaceae", "Quercus", ""],
        ],
    )  # fmt: skip


def make_cfg(tmp_path: Path, folder: Path, mirror: str, manifests: list[str], **eol) -> object:
    section = {
        "manifests": manifests,
        "pages": str(folder / "pages.csv"),
        "mirror": {EOL_PREFIX: mirror},
        "rows_per_part": 3,
        "retries": 2,
        "timeout_s": 5.0,
        "user_agent": USER_AGENT,
        "allow_hosts": ["127.0.0.1"],  # the test's loopback mirror
        **eol,
    }
    return config_from_dict({"data_root": str(tmp_path / "data"), "sources": {"eol": section}})


FAST = {"backoff_base_s": 0.05, "backoff_max_s": 0.2}


def test_local_mirror_rows_names_and_failures(tmp_path):
    folder = tmp_path / "in"
    mirror = tmp_path / "data" / "mirror"
    mirror.mkdir(parents=True)
    payloads = {"a.jpg": jpeg(1), "b.png": png_rgba(2), "c.jpg": jpeg(3)}
    for name, data in payloads.items():
        (mirror / name).write_bytes(data)
    folder.mkdir()
    write_pages(folder)
    write_csv(
        folder / "m1.csv",
        EOL_HEADER,
        [
            manifest_line(11, 1001, "a.jpg"),
            manifest_line(12, 1002, "b.png"),
            manifest_line(13, 1003, "gone.jpg"),  # not in the mirror; page unknown
            ["x", 1001, "", EOL_PREFIX + "a.jpg", "", ""],  # content id not an integer
        ],
    )
    write_csv(
        folder / "m2.csv",
        EOL_HEADER,
        [
            manifest_line(11, 1001, "a.jpg"),  # duplicate key
            [14, 1001, "", "ftp://example.org/c.jpg", "cc-by", "o"],
            [15, 1001, "", "", "cc-by", "o"],
            manifest_line(16, 1002, "c.jpg"),
        ],
    )
    cfg = make_cfg(tmp_path, folder, "mirror/", [str(folder / "m1.csv"), str(folder / "m2.csv")])
    stats = ingest_eol(cfg, decode_workers=0)
    tables, parts = read_catalog(cfg.root, "eol")
    assert len(parts) == 3
    for p in parts:
        assert pq.read_schema(p).equals(SOURCE_CATALOG, check_metadata=True)
    rows = rows_of(tables)
    assert [(r["key"], r["status"], r["reason"]) for r in rows] == [
        ("eol/11_1001", "ok", None),
        ("eol/12_1002", "ok", None),
        ("eol/13_1003", "failed", "not_found"),
        ("eol/malformed/0:5", "failed", "malformed_row"),
        ("eol/11_1001#dup1", "failed", "duplicate_key"),
        ("eol/14_1001", "failed", "unsupported_scheme"),
        ("eol/15_1001", "failed", "no_url"),
        ("eol/16_1002", "ok", None),
    ]
    a = rows[0]
    assert (a["eol_content_id"], a["eol_page_id"]) == (11, 1001)
    assert a["verbatim_scientific_name"] == "Danaus plexippus"
    assert a["verbatim_order"] == "Lepidoptera" and a["verbatim_common_name"] == "Monarch"
    assert rows[1]["verbatim_common_name"] is None and rows[2]["verbatim_kingdom"] is None
    assert a["license"] == "cc-by-2.0" and a["rights_holder"] == "Owner 11"
    assert a["source_url"] == "https://www.flickr.com/photos/11"
    assert stored_bytes(cfg.root, a) == payloads["a.jpg"]
    assert stored_bytes(cfg.root, rows[7]) == payloads["c.jpg"]
    assert stored_bytes(cfg.root, rows[1])[:3] == b"\xff\xd8\xff"  # PNG re-encoded
    assert (stats.rows, stats.ok, stats.failed) == (8, 3, 5)
    status = pq.read_table(cfg.root / "catalog/eol/part-00000.status.parquet")
    assert status.schema.equals(STATUS_SCHEMA)
    s = status.to_pylist()
    assert s[0]["url"].startswith("file://") and s[0]["url"].endswith("/mirror/a.jpg")
    assert s[0]["attempts"] == 1 and s[0]["bytes"] == len(payloads["a.jpg"])
    assert s[2]["reason"] == "not_found"
    saved = json.loads((cfg.root / "catalog/eol/_stats.json").read_text())
    assert saved["rows"] == 8 and saved["reasons"]["not_found"] == 1
    # rerun: every part skipped, files unchanged (status files included: nothing rewritten)
    before = snapshot(cfg.root, exclude_suffix="-never-")
    again = ingest_eol(cfg, decode_workers=0)
    assert (again.parts_written, again.parts_skipped) == (0, 3)
    assert snapshot(cfg.root, exclude_suffix="-never-") == before


def test_rewrite_url_prefers_longest_prefix(tmp_path):
    cfg = config_from_dict({"data_root": str(tmp_path)})
    mirror = {"https://a.org/": "http://m/", "https://a.org/deep/": "local/"}
    assert rewrite_url("https://a.org/x.jpg", mirror, cfg) == "http://m/x.jpg"
    assert rewrite_url("https://a.org/deep/y.jpg", mirror, cfg) == (
        (tmp_path / "local").resolve().as_uri() + "/y.jpg"
    )
    assert rewrite_url("https://b.org/z.jpg", mirror, cfg) == "https://b.org/z.jpg"


FAULTS = {
    "/404.jpg": Fault(status=404),
    "/410.jpg": Fault(status=410),
    "/500-once.jpg": Fault(status=500, fail_first=1),
    "/503.jpg": Fault(status=503),
    "/429.jpg": Fault(status=429, retry_after="1", fail_first=1),
    "/html.jpg": Fault(body=HTML_ERROR_PAGE, content_type="image/jpeg"),
    "/cut.jpg": Fault(truncate_to=100),
    "/reset.jpg": Fault(reset_after=100),
    "/loop.jpg": Fault(redirect_to="/loop.jpg"),
    "/typed.jpg": Fault(content_type="text/html"),  # an image with a wrong type is fine
    "/slow.jpg": Fault(latency_s=1.5),
}

EXPECTED = {
    "ok.jpg": ("ok", None, 1),
    "404.jpg": ("failed", "http_404", 1),
    "410.jpg": ("failed", "http_410", 1),
    "500-once.jpg": ("ok", None, 2),
    "503.jpg": ("failed", "http_503", 3),
    "429.jpg": ("ok", None, 2),
    "html.jpg": ("failed", "not_an_image", 1),
    "cut.jpg": ("failed", "truncated_body", 3),
    "reset.jpg": ("failed", "truncated_body", 3),
    "loop.jpg": ("failed", "too_many_redirects", 1),
    "typed.jpg": ("ok", None, 1),
    "slow.jpg": ("failed", "timeout", 3),
    "absent.jpg": ("failed", "http_404", 1),
}


@pytest.fixture()
def http_mirror(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    for i, name in enumerate(EXPECTED):
        if name != "absent.jpg":
            (root / name).write_bytes(jpeg(100 + i, 64, 64))
    with MirrorServer(root, FAULTS) as server:
        yield server, root


def test_http_faults_give_exact_outcomes(tmp_path, http_mirror):
    server, root = http_mirror
    folder = tmp_path / "in"
    folder.mkdir()
    write_pages(folder)
    names = list(EXPECTED)
    write_csv(
        folder / "m.csv",
        EOL_HEADER,
        [manifest_line(100 + i, 1001, n) for i, n in enumerate(names)],
    )
    cfg = make_cfg(
        tmp_path, folder, server.url + "/", [str(folder / "m.csv")], rows_per_part=5, timeout_s=0.5
    )
    settings = DownloadSettings.from_config(cfg.sources.eol, **FAST)
    stats = ingest_eol(cfg, settings=settings, decode_workers=0)
    rows = rows_of(read_catalog(cfg.root, "eol")[0])
    status = [
        r
        for p in sorted((cfg.root / "catalog/eol").glob("part-?????.status.parquet"))
        for r in pq.read_table(p).to_pylist()
    ]
    got = {
        Path(s["url"]).name: (row["status"], row["reason"], s["attempts"])
        for row, s in zip(rows, status, strict=True)
    }
    assert got == EXPECTED
    assert [r["key"] for r in rows] == [f"eol/{100 + i}_1001" for i in range(len(names))]
    # permanent failures are not retried; transient ones are, up to `retries`
    assert server.hits["/404.jpg"] == 1 and server.hits["/loop.jpg"] >= 5
    assert server.hits["/503.jpg"] == 3 and server.hits["/500-once.jpg"] == 2
    t429 = server.hit_times["/429.jpg"]
    assert len(t429) == 2 and t429[1] - t429[0] >= 0.95  # Retry-After: 1 honoured
    assert server.user_agents == {USER_AGENT}
    ok_row = rows[names.index("ok.jpg")]
    assert stored_bytes(cfg.root, ok_row) == (root / "ok.jpg").read_bytes()
    assert stats.ok == 4 and stats.rows == len(names)
    assert status[names.index("404.jpg")]["http_status"] == 404


def test_http_catalog_is_byte_identical_across_runs_and_pools(tmp_path, http_mirror):
    server, _ = http_mirror
    folder = tmp_path / "in"
    folder.mkdir()
    write_pages(folder)
    names = ["ok.jpg", "500-once.jpg", "404.jpg", "html.jpg", "typed.jpg"]
    lines = [manifest_line(i, 1001, n) for i, n in enumerate(names)]
    write_csv(folder / "m.csv", EOL_HEADER, lines)
    snaps = []
    for run, workers in (("a", 0), ("b", None)):  # inline decode, then the process pool
        for path in FAULTS:
            server.hits.pop(path, None)  # fail-first-N counts again
        cfg = make_cfg(tmp_path / run, folder, server.url + "/", [str(folder / "m.csv")])
        ingest_eol(cfg, settings=DownloadSettings.from_config(cfg.sources.eol, **FAST),
                   decode_workers=workers)  # fmt: skip
        snaps.append(snapshot(cfg.root))
    assert snaps[0] == snaps[1]
    assert any(k.endswith(".tar") for k in snaps[0])
