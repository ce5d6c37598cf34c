"""The hostile-fetch table: manifest rows that try to make the build read local files or the
machine's private network, each through the real EOL ingest.

Each case ingests a small manifest: clean rows plus one hostile row, from a local mirror folder
(`https://content.eol.org/data/media/` -> `mirror/`) and a loopback HTTP mirror
(`https://http.mirror/` -> our MirrorServer, the only host `allow_hosts` lets in). Beside them:
a secret folder outside the mirror and a secret server on another loopback port, both holding
a real JPEG that must never be published. A case passes when the hostile row fails with its
reason, every other row is stored, nothing reaches the secret server and no stored image is
the secret one. Connections to anything but loopback are refused at the socket edge during
the table (`no_traffic_beyond_loopback`), so no case ever sends a packet off this machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
from asyncio import selector_events
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from tests.sources.builders import EOL_HEADER, jpeg, write_csv
from tests.support.mirror_server import Fault, MirrorServer
from treeoflife.config import config_from_dict
from treeoflife.sources import ingest_eol
from treeoflife.sources.download import DownloadSettings

EOL_PREFIX = "https://content.eol.org/data/media/"
HTTP_PREFIX = "https://http.mirror/"
FAST = DownloadSettings(retries=0, timeout_s=10.0, connect_timeout_s=2.0)
N_CLEAN = 4
SECRET_JPEG = jpeg(4242, 24, 24)


@dataclass
class Place:
    """What a case's URL may name: the secret folder and the secret server's address."""

    secret_dir: Path
    secret_url: str  # http://127.0.0.1:<port>
    secret_port: int
    mirror_port: int  # the allowed HTTP mirror


@dataclass(frozen=True)
class HostileCase:
    name: str
    url: Callable[[Place], str]  # the hostile row's "EOL Full-Size Copy URL"
    reason: str | None  # the reason it must fail with (None: stored)
    redirect: Callable[[Place], str] | None = None  # the HTTP mirror answers 302 to this
    source_url: str = ""  # the row's "Medium Source URL"


@dataclass
class Outcome:
    rows: list[dict]  # catalog rows
    status: list[dict]  # status rows (EOL)
    secret_hits: int  # requests that reached the secret server
    secret_published: int  # stored images equal to the secret JPEG
    error: str | None = None


@contextlib.contextmanager
def no_traffic_beyond_loopback():
    """Refuse, at the socket edge, every connection that is not to a loopback address."""
    original = selector_events.BaseSelectorEventLoop.sock_connect

    async def guarded(self, sock, address):
        if not ipaddress.ip_address(address[0].split("%", 1)[0]).is_loopback:
            raise ConnectionRefusedError(f"test guard: no traffic to {address[0]}")
        return await original(self, sock, address)

    selector_events.BaseSelectorEventLoop.sock_connect = guarded
    try:
        yield
    finally:
        selector_events.BaseSelectorEventLoop.sock_connect = original


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - the catalog's md5


def run_case(case: HostileCase, folder: Path) -> Outcome:
    data = folder / "data"
    mirror = data / "mirror"
    secret = folder / "secret"
    mirror.mkdir(parents=True)
    secret.mkdir()
    for i in range(N_CLEAN):
        (mirror / f"{i}.jpg").write_bytes(jpeg(i, 16, 16))
    (secret / "s.jpg").write_bytes(SECRET_JPEG)
    os.symlink(secret / "s.jpg", mirror / "link.jpg")
    with MirrorServer(secret) as secret_server, MirrorServer(mirror) as server:
        port = int(secret_server.url.rsplit(":", 1)[1])
        place = Place(secret, secret_server.url, port, int(server.url.rsplit(":", 1)[1]))
        if case.redirect:
            server.set_fault("/hostile.jpg", Fault(redirect_to=case.redirect(place)))
        lines = [[1000 + i, 7, "", f"{EOL_PREFIX}{i}.jpg", "cc-by", "o"] for i in range(N_CLEAN)]
        lines.append([1, 7, case.source_url, case.url(place), "cc-by", "o"])
        manifest = folder / "media_manifest.csv"
        write_csv(manifest, EOL_HEADER, lines)
        section = {
            "manifests": [str(manifest)],
            "mirror": {EOL_PREFIX: "mirror/", HTTP_PREFIX: server.url + "/"},
            "allow_hosts": [server.url.split("//", 1)[1]],  # the HTTP mirror, nothing else
        }
        cfg = config_from_dict({"data_root": str(data), "sources": {"eol": section}})
        with no_traffic_beyond_loopback():
            try:
                ingest_eol(cfg, settings=FAST, decode_workers=0)
            except Exception as exc:  # noqa: BLE001 - what main did: one row ended the build
                return Outcome([], [], sum(secret_server.hits.values()), 0, repr(exc))
        hits = sum(secret_server.hits.values())
    rows = _read(data / "catalog" / "eol", "part-?????.parquet")
    status = _read(data / "catalog" / "eol", "part-?????.status.parquet")
    return Outcome(rows, status, hits, _published(data, rows))


def _read(folder: Path, pattern: str) -> list[dict]:
    return [r for p in sorted(folder.glob(pattern)) for r in pq.read_table(p).to_pylist()]


def _published(data: Path, rows: list[dict]) -> int:
    return sum(1 for r in rows if r["status"] == "ok" and r["md5"] == _md5(SECRET_JPEG))


def check(case: HostileCase, out: Outcome) -> None:
    assert out.error is None, f"{case.name}: the ingest failed: {out.error}"
    assert out.secret_hits == 0 and out.secret_published == 0, case.name
    by_key = {r["key"]: r for r in out.rows}
    assert len(by_key) == N_CLEAN + 1, case.name
    hostile = by_key["eol/1_7"]
    expected = ("ok", None) if case.reason is None else ("failed", case.reason)
    assert (hostile["status"], hostile["reason"]) == expected, (case.name, hostile)
    assert all(by_key[f"eol/{1000 + i}_7"]["status"] == "ok" for i in range(N_CLEAN))
    for row in [*out.rows, *out.status]:  # credentials are never written down
        for value in (row.get("source_url"), row.get("url")):
            assert value is None or "secret@" not in value, (case.name, value)


def _local(path: str) -> Callable[[Place], str]:
    return lambda p: path.format(
        secret=p.secret_dir.as_posix(), port=p.secret_port, mirror=p.mirror_port
    )


def _secret_http(template: str) -> Callable[[Place], str]:
    return lambda p: template.format(port=p.secret_port)


OUTSIDE = "file_outside_mirror"
NON_PUBLIC = "non_public_address"
REDIRECT = "redirect_unsupported_scheme"

CASES: list[HostileCase] = [
    # --- local files named by the manifest
    HostileCase("file_etc_passwd", _local("file:///etc/passwd"), OUTSIDE),
    HostileCase("file_proc_self_environ", _local("file:///proc/self/environ"), OUTSIDE),
    HostileCase("file_upper_case_scheme", _local("FILE:///etc/passwd"), OUTSIDE),
    HostileCase("file_localhost_host", _local("file://localhost/etc/passwd"), OUTSIDE),
    HostileCase("file_remote_host", _local("file://evil.example/etc/passwd"), OUTSIDE),
    HostileCase("file_one_slash", _local("file:/etc/passwd"), OUTSIDE),
    HostileCase("file_jpeg_outside_mirror", _local("file://{secret}/s.jpg"), OUTSIDE),
    # --- escapes out of the mirror folder through the rewrite
    HostileCase("mirror_dot_dot", _local(EOL_PREFIX + "../../secret/s.jpg"), OUTSIDE),
    HostileCase("mirror_encoded_dot_dot", _local(EOL_PREFIX + "%2e%2e/%2E%2E/secret/s.jpg"),
                OUTSIDE),
    HostileCase("mirror_symlink_out", _local(EOL_PREFIX + "link.jpg"), OUTSIDE),
    # --- manifest URLs to this machine or its network (SSRF)
    HostileCase("url_loopback_other_port", _secret_http("http://127.0.0.1:{port}/s.jpg"),
                NON_PUBLIC),
    HostileCase("url_localhost", _secret_http("http://localhost:{port}/s.jpg"), NON_PUBLIC),
    HostileCase("url_decimal_ip", _secret_http("http://2130706433:{port}/s.jpg"), NON_PUBLIC),
    HostileCase("url_ipv6_loopback", _secret_http("http://[::1]:{port}/s.jpg"), NON_PUBLIC),
    HostileCase("url_ipv4_mapped", _secret_http("http://[::ffff:127.0.0.1]:{port}/s.jpg"),
                NON_PUBLIC),
    HostileCase("url_private_10", _local("http://10.0.0.1/x.jpg"), NON_PUBLIC),
    HostileCase("url_private_192", _local("http://192.168.1.1/x.jpg"), NON_PUBLIC),
    HostileCase("url_metadata", _local("http://169.254.169.254/latest/meta-data/iam"), NON_PUBLIC),
    HostileCase("url_metadata_v6", _local("http://[fd00:ec2::254]/latest/meta-data/"), NON_PUBLIC),
    # --- redirects from an allowed mirror
    HostileCase("redirect_other_port", _local(HTTP_PREFIX + "hostile.jpg"), NON_PUBLIC,
                redirect=_secret_http("http://127.0.0.1:{port}/s.jpg")),
    HostileCase("redirect_localhost", _local(HTTP_PREFIX + "hostile.jpg"), NON_PUBLIC,
                redirect=_secret_http("http://localhost:{port}/s.jpg")),
    HostileCase("redirect_metadata", _local(HTTP_PREFIX + "hostile.jpg"), NON_PUBLIC,
                redirect=_local("http://169.254.169.254/latest/meta-data/")),
    HostileCase("redirect_ftp", _local(HTTP_PREFIX + "hostile.jpg"), REDIRECT,
                redirect=_local("ftp://ftp.example.org/s.jpg")),
    HostileCase("redirect_file", _local(HTTP_PREFIX + "hostile.jpg"), REDIRECT,
                redirect=_local("file:///etc/passwd")),
    HostileCase("redirect_file_secret_jpeg", _local(HTTP_PREFIX + "hostile.jpg"), REDIRECT,
                redirect=_local("file://{secret}/s.jpg")),
    # --- credentials in URLs are never published (the row itself is fine)
    HostileCase("credentials_in_urls", _local("http://user:secret@127.0.0.1:{mirror}/0.jpg"),
                None, source_url="https://user:secret@eol.org/a"),
]  # fmt: skip
