"""The downloader's per-host scheduling over real loopback servers: no head-of-line blocking,
a rate-limited host learns its level, Retry-After pauses the whole host, redirects go through
the fetch policy, bodies held back-pressure, and the per-host report."""

from __future__ import annotations

import asyncio
import json
import time

import pyarrow.parquet as pq

from tests.support.mirror_server import Fault, MirrorServer
from treeoflife.sources.download import Downloader, DownloadSettings
from treeoflife.sources.fetch_policy import FetchPolicy

from .builders import jpeg

LOOPBACK = FetchPolicy(allow=("127.0.0.1",))


def serve_files(folder, n: int, prefix: str = "") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{prefix}{i}.jpg" for i in range(n)]
    for i, name in enumerate(names):
        (folder / name).write_bytes(jpeg(i, 16, 16))
    return names


def test_a_slow_host_does_not_hold_up_the_others(tmp_path):
    slow_names = serve_files(tmp_path / "slow", 6)
    fast_names = serve_files(tmp_path / "fast", 20)
    settings = DownloadSettings(
        concurrency=4, per_host_concurrency=2, adaptive=False, retries=0, policy=LOOPBACK
    )
    done: list[str] = []

    async def run(slow_url, fast_url):
        async with Downloader(settings) as d:

            async def one(tag, url):
                result = await d.fetch(url)
                assert result.reason is None, result
                done.append(tag)

            # the slow host's URLs come first, as a manifest that starts with them would
            await asyncio.gather(
                *(one("slow", f"{slow_url}/{n}") for n in slow_names),
                *(one("fast", f"{fast_url}/{n}") for n in fast_names),
            )

    slow_fault = [(1.0, Fault(latency_s=1.0))]
    slow = MirrorServer(tmp_path / "slow", fractions=slow_fault)
    with slow, MirrorServer(tmp_path / "fast") as fast:
        asyncio.run(run(slow.url, fast.url))
    # 2 slow requests at a time, 1 s each: the fast host is done before the 3rd slow one
    # (behind a shared queue it would wait for the slow ones ahead of it)
    third_slow = [i for i, tag in enumerate(done) if tag == "slow"][2]
    assert "fast" not in done[third_slow:], done
    assert done.count("fast") == 20 and done.count("slow") == 6


def test_a_rate_limited_host_learns_the_level_it_accepts(tmp_path):
    names = serve_files(tmp_path / "www", 240)
    settings = DownloadSettings(retries=8, backoff_base_s=0.01, backoff_max_s=0.05, policy=LOOPBACK)
    latency = [(1.0, Fault(latency_s=0.03))]

    async def run(url):
        async with Downloader(settings) as d:
            results = await asyncio.gather(*(d.fetch(f"{url}/{n}") for n in names))
            return results, d.host_report()

    with MirrorServer(tmp_path / "www", fractions=latency, max_in_flight=4,
                      limit_retry_after="0") as server:  # fmt: skip
        results, report = asyncio.run(run(server.url))
        hits = sorted(t for ts in server.hit_times.values() for t in ts)
        limited = server.limited_times
    assert all(r.reason is None for r in results)  # every row stored in the end
    (row,) = report
    assert 1 <= row["learned_ceiling"] <= 4 and row["final_concurrency"] <= 4
    assert row["http_429"] == len(limited) and row["requests"] == len(hits)
    # after the first third of the requests the host hardly ever has to refuse one
    later = hits[len(hits) // 3]
    late_429 = sum(1 for t in limited if t > later)
    assert late_429 <= 0.03 * (len(hits) - len(hits) // 3), (late_429, len(limited), len(hits))


def test_retry_after_pauses_the_whole_host(tmp_path):
    names = serve_files(tmp_path / "www", 6)
    faults = {"/0.jpg": Fault(status=429, retry_after="1", fail_first=1)}
    settings = DownloadSettings(per_host_concurrency=1, adaptive=False, policy=LOOPBACK)

    async def run(url):
        async with Downloader(settings) as d:
            first = asyncio.ensure_future(d.fetch(f"{url}/{names[0]}"))
            await asyncio.sleep(0.2)  # the 429 has arrived: the others queue behind the pause
            rest = await asyncio.gather(*(d.fetch(f"{url}/{n}") for n in names[1:]))
            return [await first, *rest]

    with MirrorServer(tmp_path / "www", faults) as server:
        results = asyncio.run(run(server.url))
        t429 = server.hit_times["/0.jpg"][0]
        others = [server.hit_times[f"/{n}"][0] for n in names[1:]]
    assert all(r.reason is None for r in results) and results[0].attempts == 2
    assert min(others) - t429 >= 0.9  # nothing went to the host while it asked us to wait


def test_redirects_are_checked_hop_by_hop(tmp_path):
    names = serve_files(tmp_path / "www", 2)
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "s.jpg").write_bytes(jpeg(99, 16, 16))
    with MirrorServer(tmp_path / "secret") as secret:
        other = secret.url.rsplit(":", 1)[1]
        faults = {
            "/ftp.jpg": Fault(redirect_to="ftp://ftp.example.org/a.jpg"),
            "/file.jpg": Fault(redirect_to="file:///etc/passwd"),
            "/port.jpg": Fault(redirect_to=f"{secret.url}/s.jpg"),
            "/localhost.jpg": Fault(redirect_to=f"http://localhost:{other}/s.jpg"),
            "/meta.jpg": Fault(redirect_to="http://169.254.169.254/latest/meta-data/"),
            "/hop.jpg": Fault(redirect_to="/port.jpg"),  # allowed hop, then a refused one
            "/fine.jpg": Fault(redirect_to=f"/{names[0]}"),
        }
        with MirrorServer(tmp_path / "www", faults) as server:
            port = server.url.rsplit(":", 1)[1]
            policy = FetchPolicy(allow=(f"127.0.0.1:{port}",))  # this server only
            settings = DownloadSettings(retries=0, policy=policy)
            paths = [*faults, f"/{names[1]}"]
            cred = server.url.replace("http://", "http://user:secret@") + f"/{names[1]}"

            async def run():
                async with Downloader(settings) as d:
                    return await asyncio.gather(
                        *(d.fetch(server.url + p) for p in paths), d.fetch(cred)
                    )

            results = asyncio.run(run())
        assert sum(secret.hits.values()) == 0  # nothing reached the other port
    got = {p: r.reason for p, r in zip(paths, results, strict=False)}
    assert got == {
        "/ftp.jpg": "redirect_unsupported_scheme",
        "/file.jpg": "redirect_unsupported_scheme",
        "/port.jpg": "non_public_address",
        "/localhost.jpg": "non_public_address",
        "/meta.jpg": "non_public_address",
        "/hop.jpg": "non_public_address",
        "/fine.jpg": None,
        f"/{names[1]}": None,
    }
    assert results[-1].reason is None and "secret" not in results[-1].url


def test_held_bodies_hold_back_new_requests(tmp_path):
    names = serve_files(tmp_path / "www", 3)

    async def run(url):
        async with Downloader(DownloadSettings(policy=LOOPBACK), hold_limit=1) as d:
            async with d.fetching(f"{url}/{names[0]}") as first:
                assert first.data is not None
                second = asyncio.ensure_future(d.fetch(f"{url}/{names[1]}"))
                await asyncio.sleep(0.3)
                started_while_held = server.hits[f"/{names[1]}"]
            await second
            return started_while_held

    with MirrorServer(tmp_path / "www") as server:
        assert asyncio.run(run(server.url)) == 0
        assert server.hits[f"/{names[1]}"] == 1


def test_per_host_report_is_written_and_counts_each_kind(tmp_path):
    names = serve_files(tmp_path / "www", 3)
    faults = {"/gone.jpg": Fault(status=404), "/busy.jpg": Fault(status=503, fail_first=1)}
    (tmp_path / "www" / "busy.jpg").write_bytes(jpeg(5, 16, 16))
    report = tmp_path / "hosts.status.parquet"
    settings = DownloadSettings(retries=1, backoff_base_s=0.01, policy=LOOPBACK)

    async def run(url):
        async with Downloader(settings, report_to=report) as d:
            return await asyncio.gather(
                *(d.fetch(f"{url}/{n}") for n in [*names, "gone.jpg", "busy.jpg"])
            )

    start = time.monotonic()
    with MirrorServer(tmp_path / "www", faults) as server:
        results = asyncio.run(run(server.url))
        host = server.url.split("//", 1)[1]
    (row,) = pq.read_table(report).to_pylist()
    assert row["host"] == host
    assert (row["requests"], row["ok"]) == (6, 4)
    assert json.loads(row["errors"]) == {"http_404": 1, "http_503": 1}
    assert row["bytes"] == sum(r.nbytes for r in results)
    assert 0 < row["mean_latency_s"] <= row["p95_latency_s"] < time.monotonic() - start + 1
    assert row["final_concurrency"] >= 1 and row["peak_concurrency"] >= row["final_concurrency"]
