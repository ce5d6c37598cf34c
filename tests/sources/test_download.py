"""The downloader on its own, over a real loopback server and real files."""

from __future__ import annotations

import asyncio
import email.utils

from tests.support.mirror_server import Fault, MirrorServer
from treeoflife.sources.download import Downloader, DownloadSettings, parse_retry_after
from treeoflife.sources.fetch_policy import FetchPolicy

from .builders import jpeg

LOOPBACK = FetchPolicy(allow=("127.0.0.1",))  # our test servers; nothing else non-public


def fetch_all(settings: DownloadSettings, urls: list[str]):
    async def run():
        async with Downloader(settings) as d:
            return await asyncio.gather(*(d.fetch(u) for u in urls))

    return asyncio.run(run())


def test_size_cap_scheme_and_file_urls(tmp_path):
    big = jpeg(1, 200, 200)
    (tmp_path / "big.jpg").write_bytes(big)
    (tmp_path / "small.jpg").write_bytes(b"x" * 10)
    policy = FetchPolicy(file_roots=(str(tmp_path),), allow=("127.0.0.1",))
    settings = DownloadSettings(
        max_bytes=len(big) - 1, retries=2, backoff_base_s=0.01, policy=policy
    )
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
    (result,) = fetch_all(DownloadSettings(retries=1, backoff_base_s=0.01, policy=LOOPBACK), [url])
    assert result.reason == "connection_error" and result.attempts == 2


def test_parse_retry_after():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    when = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(when, now=1_000_000) == 30.0
    assert parse_retry_after(email.utils.formatdate(10, usegmt=True), now=1_000) == 0.0


def test_each_fault_gives_its_exact_outcome(tmp_path):
    body = jpeg(7, 64, 64)
    faults = {
        "/403.jpg": Fault(status=403),
        "/429-always.jpg": Fault(status=429, retry_after="0"),
        "/502-once.jpg": Fault(status=502, fail_first=1),
        "/drip.jpg": Fault(drip_s=0.8, drip_bytes=64),  # every read waits longer than allowed
        "/latency.jpg": Fault(latency_s=2.0),  # headers later than the whole-attempt deadline
        "/reset.jpg": Fault(reset_after=10),
        "/typed.jpg": Fault(content_type="application/octet-stream"),
        "/moved.jpg": Fault(redirect_to="/ok.jpg"),
    }
    names = ["ok.jpg", *(p.lstrip("/") for p in faults)]
    for name in names:
        (tmp_path / name).write_bytes(body)
    # generous deadlines: the machine may be busy; the faults overshoot them by far
    settings = DownloadSettings(
        retries=1,
        backoff_base_s=0.01,
        backoff_max_s=0.02,
        timeout_s=1.5,
        read_timeout_s=0.4,
        policy=LOOPBACK,
    )
    with MirrorServer(tmp_path, faults) as server:
        results = fetch_all(settings, [f"{server.url}/{n}" for n in names])
        hits = {n: server.hits[f"/{n}"] for n in names}
    got = {n: (r.reason, r.attempts, r.http_status) for n, r in zip(names, results, strict=True)}
    assert got == {
        "ok.jpg": (None, 1, 200),
        "403.jpg": ("http_403", 1, 403),  # permanent: no retry
        "429-always.jpg": ("http_429", 2, 429),  # transient: retried, then recorded
        "502-once.jpg": (None, 2, 200),
        "drip.jpg": ("timeout", 2, None),
        "latency.jpg": ("timeout", 2, None),
        "reset.jpg": ("truncated_body", 2, None),
        "typed.jpg": (None, 1, 200),  # the bytes decide, not the Content-Type
        "moved.jpg": (None, 1, 200),
    }
    assert results[names.index("moved.jpg")].data == body
    assert hits["403.jpg"] == 1 and hits["429-always.jpg"] == 2 and hits["ok.jpg"] == 2


def test_fraction_faults_are_stable_and_reported(tmp_path):
    for i in range(200):
        (tmp_path / f"{i}.jpg").write_bytes(b"x")
    fractions = [(0.25, Fault(status=503)), (0.25, Fault(status=404))]
    with MirrorServer(tmp_path, fractions=fractions, seed=3) as server:
        paths = [f"/{i}.jpg" for i in range(200)]
        kinds = [server.fault_for(p) for p in paths]
        results = fetch_all(
            DownloadSettings(retries=0, policy=LOOPBACK), [server.url + p for p in paths]
        )
    n503 = sum(1 for k in kinds if k is not None and k.status == 503)
    n404 = sum(1 for k in kinds if k is not None and k.status == 404)
    assert 25 <= n503 <= 75 and 25 <= n404 <= 75  # ~50 each
    for kind, result in zip(kinds, results, strict=True):
        expected = None if kind is None else f"http_{kind.status}"
        assert result.reason == expected
    again = MirrorServer(tmp_path, fractions=fractions, seed=3)
    assert [again.fault_for(p) for p in paths] == kinds


def test_per_host_pacing_spaces_requests(tmp_path):
    for i in range(6):
        (tmp_path / f"{i}.jpg").write_bytes(b"x")
    settings = DownloadSettings(
        per_host_rps=10.0, concurrency=8, per_host_concurrency=8, policy=LOOPBACK
    )
    with MirrorServer(tmp_path) as server:
        fetch_all(settings, [f"{server.url}/{i}.jpg" for i in range(6)])
        times = sorted(t for ts in server.hit_times.values() for t in ts)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(times) == 6 and min(gaps) >= 0.08  # 10 requests/s: one every 0.1 s
