"""The downloader on its own, over a real loopback server and real files."""

from __future__ import annotations

import asyncio
import email.utils

from treeoflife.sources.download import Downloader, DownloadSettings, parse_retry_after
from treeoflife.testing.mirror_server import Fault, MirrorServer

from .builders import jpeg


def fetch_all(settings: DownloadSettings, urls: list[str]):
    async def run():
        async with Downloader(settings) as d:
            return await asyncio.gather(*(d.fetch(u) for u in urls))

    return asyncio.run(run())


def test_size_cap_scheme_and_file_urls(tmp_path):
    big = jpeg(1, 200, 200)
    (tmp_path / "big.jpg").write_bytes(big)
    (tmp_path / "small.jpg").write_bytes(b"x" * 10)
    settings = DownloadSettings(max_bytes=len(big) - 1, retries=2, backoff_base_s=0.01)
    with MirrorServer(tmp_path, {"/chunky.jpg": Fault(body=big)}) as server:
        results = fetch_all(
            settings,
            [
                server.url + "/big.jpg",  # Content-Length over the cap
                server.url + "/small.jpg",
                (tmp_path / "big.jpg").as_uri(),
                (tmp_path / "small.jpg").as_uri(),
                (tmp_path / "none.jpg").as_uri(),
                "ftp://example.org/a.jpg",
                "data:image/png;base64,AAAA",
                "",
            ],
        )
        assert server.hits["/big.jpg"] == 1  # a size failure is final
    reasons = [r.reason for r in results]
    assert reasons == [
        "too_large",
        None,
        "too_large",
        None,
        "not_found",
        "unsupported_scheme",
        "unsupported_scheme",
        "invalid_url",
    ]
    assert results[1].data == b"x" * 10 and results[1].http_status == 200
    assert results[3].data == b"x" * 10 and results[3].attempts == 1
    assert results[5].attempts == 0


def test_connection_refused_is_retried_then_recorded(tmp_path):
    with MirrorServer(tmp_path) as server:
        url = server.url + "/a.jpg"
    # the server is gone: nothing listens on that port any more
    (result,) = fetch_all(DownloadSettings(retries=1, backoff_base_s=0.01), [url])
    assert result.reason == "connection_error" and result.attempts == 2


def test_parse_retry_after():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    when = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(when, now=1_000_000) == 30.0
    assert parse_retry_after(email.utils.formatdate(10, usegmt=True), now=1_000) == 0.0
