"""Streaming a remote archive: HTTP Range resume after drops, and iNat21 ingest from URLs."""

from __future__ import annotations

import hashlib

import pytest

from tests.support.mirror_server import Fault, MirrorServer
from treeoflife.config import config_from_dict
from treeoflife.errors import InputError
from treeoflife.sources import ingest_inat21
from treeoflife.sources.remote import RangeReader, RemoteReadError

from .builders import make_inat, read_catalog, rows_of, snapshot


def test_range_reader_resumes_after_resets_and_cuts(tmp_path):
    blob = bytes(range(256)) * 4000  # 1 MB
    (tmp_path / "blob.bin").write_bytes(blob)
    (tmp_path / "cut.bin").write_bytes(blob)
    faults = {
        "/blob.bin": Fault(reset_after=300_000, fail_first=2),  # two drops, then whole answers
        "/cut.bin": Fault(truncate_to=100_000, fail_first=1),
    }
    with MirrorServer(tmp_path, faults) as server:
        with RangeReader(server.url + "/blob.bin", backoff_s=0.01) as r:
            got = b"".join(iter(lambda: r.read(65536), b""))
        assert got == blob and r.reconnects == 2 and server.hits["/blob.bin"] == 3
        with RangeReader(server.url + "/cut.bin", backoff_s=0.01) as r:
            assert r.read() == blob and r.reconnects == 1


def test_range_reader_gives_up_after_max_reconnects(tmp_path):
    (tmp_path / "bad.bin").write_bytes(b"x" * 200_000)
    with MirrorServer(tmp_path, {"/bad.bin": Fault(reset_after=1000)}) as server:
        r = RangeReader(server.url + "/bad.bin", backoff_s=0.001, max_reconnects=3)
        with pytest.raises(RemoteReadError, match="gave up after 3"):
            r.read()
        with pytest.raises(RemoteReadError, match="HTTP 404"):
            RangeReader(server.url + "/absent.bin")


def test_range_reader_refuses_to_splice_a_file_that_changed(tmp_path):
    blob = bytes(range(256)) * 1000
    (tmp_path / "f.bin").write_bytes(blob)
    with MirrorServer(tmp_path, {"/f.bin": Fault(reset_after=100_000, fail_first=1)}) as server:
        r = RangeReader(server.url + "/f.bin", backoff_s=0.001)
        assert r.read(50_000) == blob[:50_000]
        (tmp_path / "f.bin").write_bytes(blob[::-1])  # replaced on the server mid-download
        with pytest.raises(RemoteReadError, match="did not resume at byte"):
            while r.read(65536):
                pass
        assert server.hits["/f.bin"] == 2


def test_inat21_from_urls_with_drops_equals_local_ingest(tmp_path):
    archive, _ = make_inat(tmp_path / "in", n=9, missing=(4,))
    tar = tmp_path / "in" / "train.tar.gz"
    md5 = hashlib.md5(tar.read_bytes()).hexdigest()
    size = tar.stat().st_size
    faults = {"/train.tar.gz": Fault(reset_after=size // 3, fail_first=1)}
    with MirrorServer(tmp_path / "in", faults) as server:
        remote = {
            "images": server.url + "/train.tar.gz",
            "annotations": server.url + "/train.json",
            "md5": md5,
        }
        runs = {}
        for name, spec in (("local", {**archive, "md5": md5}), ("remote", remote)):
            cfg = config_from_dict(
                {
                    "data_root": str(tmp_path / name),
                    "sources": {"inat21": {"archives": [spec], "images_per_part": 4}},
                }
            )
            stats = ingest_inat21(cfg)
            runs[name] = snapshot(cfg.root)
        assert server.hits["/train.tar.gz"] == 2  # one drop, one resumed request
        rows = rows_of(read_catalog(cfg.root, "inat21")[0])
        assert stats.rows == 9 and [r["reason"] for r in rows].count("missing_in_archive") == 1
        # _stats.json and the archive marker name the inputs: paths here, URLs there
        named = ("catalog/inat21/_stats.json", "catalog/inat21/_archive-00.json")
        for name in named:
            local = runs["local"].pop(name)
            for path, url in ((tar, remote["images"]), (tar.with_suffix("").with_suffix(".json"),
                              remote["annotations"])):  # fmt: skip
                local = local.replace(str(path).encode(), url.encode())
            assert local == runs["remote"][name]
        assert runs["local"] == {k: v for k, v in runs["remote"].items() if k not in named}
        bad = {**remote, "md5": "0" * 32}
        cfg = config_from_dict(
            {"data_root": str(tmp_path / "bad"), "sources": {"inat21": {"archives": [bad]}}}
        )
        with pytest.raises(InputError, match="md5"):
            ingest_inat21(cfg)


def test_range_reader_follows_redirects_only_where_the_policy_lets_it(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"a" * 1000)
    with MirrorServer(tmp_path) as other:
        faults = {
            "/same.bin": Fault(redirect_to="/a.bin"),  # the configured host itself: fine
            "/ftp.bin": Fault(redirect_to="ftp://ftp.example.org/a.bin"),
            "/port.bin": Fault(redirect_to=f"{other.url}/a.bin"),  # another loopback port
        }
        with MirrorServer(tmp_path, faults) as server:
            with RangeReader(f"{server.url}/same.bin") as reader:
                assert reader.read() == b"a" * 1000
            for path, why in (("/ftp.bin", "redirect_unsupported_scheme"),
                              ("/port.bin", "non_public_address")):  # fmt: skip
                with pytest.raises(RemoteReadError, match=why):
                    RangeReader(f"{server.url}{path}")
        assert sum(other.hits.values()) == 0
