"""`build --revalidate` asks with conditional requests whether a stored remote image changed.

A real loopback server honours If-None-Match / If-Modified-Since and counts the requests and
body bytes it sends: nothing changed -> every image answered 304, no body, the same bytes on
disk; one image changed -> only it comes again; one taken down -> its row fails; a server
without validators -> plain GETs as before. Each ends where a fresh build of that world ends.
"""

from __future__ import annotations

import email.utils
import hashlib
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow.parquet as pq
import pytest

from tests.support.fanout import map_out_of_order
from treeoflife.fanout import map_in_order
from treeoflife.sources import ingest_eol
from treeoflife.sources.eol_validators import validators_parquet

from .builders import EOL_HEADER, jpeg, snapshot, write_csv
from .test_eol_download_parts import eol_cfg

N = 9  # rows_per_part 4: three parts
EPOCH = 1_700_000_000


class ConditionalServer:
    """Serves `images` (path -> bytes, editable) on 127.0.0.1 with validators of the chosen
    kind ("etag", "last_modified", "both", "none"), answering 304 to a conditional request
    for an unchanged image (RFC 9110: If-None-Match first, else If-Modified-Since)."""

    def __init__(self, images: dict[str, bytes], validators: str = "both"):
        self.images = dict(images)
        self.modified = dict.fromkeys(self.images, EPOCH)
        self.validators = validators
        self.redirects: dict[str, str] = {}  # path -> Location of a 302
        self.requests: Counter[str] = Counter()
        self.conditional: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.body_bytes = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                server.answer(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def replace(self, path: str, data: bytes) -> None:
        with self.lock:
            self.images[path] = data
            self.modified[path] += 60

    def remove(self, path: str) -> None:
        with self.lock:
            del self.images[path]

    def reset_counts(self) -> None:
        with self.lock:
            self.requests.clear()
            self.conditional.clear()
            self.statuses.clear()
            self.body_bytes = 0

    def answer(self, h: BaseHTTPRequestHandler) -> None:
        with self.lock:
            body = self.images.get(h.path)
            modified = self.modified.get(h.path, EPOCH)
            self.requests[h.path] += 1
            inm, ims = h.headers.get("If-None-Match"), h.headers.get("If-Modified-Since")
            if inm or ims:
                self.conditional[h.path] += 1
        if h.path in self.redirects:
            return self._send(h, 302, b"", {"Location": self.redirects[h.path]})
        if body is None:
            return self._send(h, 404, b"not found\n", {})
        headers = {}
        etag = '"' + hashlib.md5(body).hexdigest() + '"'
        last_modified = email.utils.formatdate(modified, usegmt=True)
        if self.validators in ("etag", "both"):
            headers["ETag"] = etag
        if self.validators in ("last_modified", "both"):
            headers["Last-Modified"] = last_modified
        if "ETag" in headers and inm is not None:
            fresh = etag in [t.strip() for t in inm.split(",")]
        elif "Last-Modified" in headers and ims is not None:
            fresh = email.utils.parsedate_to_datetime(ims).timestamp() >= modified
        else:
            fresh = False
        if fresh:
            return self._send(h, 304, b"", headers)
        return self._send(h, 200, body, {**headers, "Content-Type": "image/jpeg"})

    def _send(self, h, status: int, body: bytes, headers: dict) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        if status != 304:
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
        with self.lock:
            self.statuses[status] += 1
            self.body_bytes += len(body)

    def __enter__(self) -> ConditionalServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def images() -> dict[str, bytes]:
    return {f"/{i}.jpg": jpeg(i, 40, 30) for i in range(N)}


def manifest(tmp_path, url: str, prefix: str = ""):
    m = tmp_path / "m.csv"
    rows = [[i + 1, 7, "", f"{url}{prefix}/{i}.jpg", "cc0", "o"] for i in range(N)]
    write_csv(m, EOL_HEADER, rows)
    return m


def fresh_build(tmp_path, m, **eol) -> dict[str, bytes]:
    cfg = eol_cfg(tmp_path / "fresh", m, rows_per_part=4, **eol)
    ingest_eol(cfg, decode_workers=0)
    return snapshot(cfg.root)


def host_rows(root) -> list[dict]:
    return pq.read_table(root / "catalog/eol/hosts.status.parquet").to_pylist()


def revalidated(unchanged=0, changed=0, gone=0, unconditional=0) -> dict[str, int]:
    counts = {"unchanged": unchanged, "changed": changed, "gone": gone}
    return {**counts, "unconditional": unconditional}


@pytest.mark.parametrize("kind", ["both", "etag", "last_modified"])
def test_nothing_changed_every_image_is_answered_304_without_a_body(tmp_path, kind):
    with ConditionalServer(images(), kind) as server:
        m = manifest(tmp_path, server.url)
        cfg = eol_cfg(tmp_path / "a", m, rows_per_part=4)
        ingest_eol(cfg, decode_workers=0)
        before = snapshot(cfg.root)
        assert sorted(p.name for p in (cfg.root / "state/parts/eol").glob("*.validators.*")) == [
            f"part-{i:05d}.validators.parquet" for i in range(3)
        ]
        server.reset_counts()
        stats = ingest_eol(eol_cfg(tmp_path / "a", m, rows_per_part=4, revalidate=True))
        assert server.statuses == {304: N} and server.body_bytes == 0
        assert server.conditional == server.requests == Counter(images().keys())
        assert stats.revalidated == revalidated(unchanged=N)
        assert stats.parts_written == 3 and stats.ok == N
        assert snapshot(cfg.root) == before
        (host,) = host_rows(cfg.root)
        assert (host["revalidated_unchanged"], host["revalidated_changed"]) == (N, 0)
        assert (host["requests"], host["bytes"]) == (N, 0)
        server.reset_counts()  # the 304s kept the validators: asked again, 304 again
        ingest_eol(eol_cfg(tmp_path / "a", m, rows_per_part=4, revalidate=True))
        assert server.statuses == {304: N}


def test_a_changed_image_alone_is_fetched_again(tmp_path):
    with ConditionalServer(images()) as server:
        m = manifest(tmp_path, server.url)
        cfg = eol_cfg(tmp_path / "a", m, rows_per_part=4)
        ingest_eol(cfg, decode_workers=0)
        new = jpeg(77, 50, 20)
        server.replace("/5.jpg", new)
        server.reset_counts()
        stats = ingest_eol(eol_cfg(tmp_path / "a", m, rows_per_part=4, revalidate=True))
        assert server.statuses == {304: N - 1, 200: 1} and server.body_bytes == len(new)
        assert stats.revalidated == revalidated(unchanged=N - 1, changed=1)
        (host,) = host_rows(cfg.root)
        assert (host["revalidated_unchanged"], host["revalidated_changed"]) == (N - 1, 1)
        changed = snapshot(cfg.root)
        server.reset_counts()
        assert changed == fresh_build(tmp_path, m)
        server.reset_counts()  # the new image's validators were kept with it
        ingest_eol(eol_cfg(tmp_path / "a", m, rows_per_part=4, revalidate=True))
        assert server.statuses == {304: N}
        assert snapshot(cfg.root) == changed


def test_an_image_taken_down_fails_its_row(tmp_path):
    with ConditionalServer(images()) as server:
        m = manifest(tmp_path, server.url)
        cfg = eol_cfg(tmp_path / "a", m, rows_per_part=4)
        ingest_eol(cfg, decode_workers=0)
        server.remove("/6.jpg")
        server.reset_counts()
        stats = ingest_eol(eol_cfg(tmp_path / "a", m, rows_per_part=4, revalidate=True))
        assert server.statuses == {304: N - 1, 404: 1}
        assert stats.revalidated == revalidated(unchanged=N - 1, gone=1)
        assert stats.reasons == {"http_404": 1}
        (host,) = host_rows(cfg.root)
        assert host["revalidated_gone"] == 1
        assert snapshot(cfg.root) == fresh_build(tmp_path, m)
        kept = pq.read_table(validators_parquet(cfg, 1)).column("key").to_pylist()
        assert "eol/7_7" not in kept and len(kept) == 3  # a failed row keeps no validators


def test_a_server_without_validators_gets_plain_gets(tmp_path):
    with ConditionalServer(images(), "none") as server:
        m = manifest(tmp_path, server.url)
        cfg = eol_cfg(tmp_path / "a", m, rows_per_part=4)
        ingest_eol(cfg, decode_workers=0)
        assert not list((cfg.root / "state/parts/eol").glob("*.validators.*"))
        before = snapshot(cfg.root)
        new = jpeg(78, 30, 30)
        server.replace("/2.jpg", new)
        server.reset_counts()
        stats = ingest_eol(eol_cfg(tmp_path / "a", m, rows_per_part=4, revalidate=True))
        assert server.conditional == Counter() and server.statuses == {200: N}
        assert stats.revalidated == revalidated(unconditional=N)
        after = snapshot(cfg.root)
        assert after != before and after == fresh_build(tmp_path, m)


def test_a_damaged_stored_image_is_fetched_with_a_plain_get(tmp_path):
    """Validators go only with the bytes they were answered for: a stored image whose bytes
    are not what its record says is fetched whole, never kept on a 304."""
    with ConditionalServer(images()) as server:
        m = manifest(tmp_path, server.url)
        cfg = eol_cfg(tmp_path / "a", m, rows_per_part=4)
        ingest_eol(cfg, decode_workers=0)
        before = snapshot(cfg.root)
        row = pq.read_table(cfg.root / "catalog/eol/part-00000.parquet").to_pylist()[1]
        store = cfg.root / row["image_file"]
        data = bytearray(store.read_bytes())
        data[row["image_offset"] + row["image_size"] // 2] ^= 0xFF
        store.write_bytes(bytes(data))
        server.reset_counts()
        stats = ingest_eol(eol_cfg(tmp_path / "a", m, rows_per_part=4, revalidate=True))
        assert server.requests["/1.jpg"] == 1 and server.conditional["/1.jpg"] == 0
        assert stats.revalidated == revalidated(unchanged=N - 1, unconditional=1)
        assert snapshot(cfg.root) == before


@pytest.mark.parametrize("runner", ["processes", "mapped"])
def test_other_runners_revalidate_and_count_alike(tmp_path, runner):
    eol = {"processes": 2} if runner == "processes" else {}
    mapper = {"map_parts": map_out_of_order} if runner == "mapped" else {}
    with ConditionalServer(images()) as server:
        m = manifest(tmp_path, server.url)
        cfg = eol_cfg(tmp_path / "a", m, rows_per_part=4, **eol)
        ingest_eol(cfg, decode_workers=0, **mapper)
        new = jpeg(79, 40, 40)
        server.replace("/0.jpg", new)
        server.remove("/8.jpg")
        server.reset_counts()
        again = eol_cfg(tmp_path / "a", m, rows_per_part=4, revalidate=True, **eol)
        stats = ingest_eol(again, decode_workers=0, **mapper)
        assert server.statuses == {304: N - 2, 200: 1, 404: 1}
        assert server.body_bytes == len(new) + len(b"not found\n")
        assert stats.revalidated == revalidated(unchanged=N - 2, changed=1, gone=1)
        assert snapshot(cfg.root) == fresh_build(tmp_path, m)


def test_redirects_are_followed_and_checked_as_strictly_when_revalidating(tmp_path):
    """The conditional headers go with each hop; each hop still passes the fetch policy (a
    redirect to a private address is refused, loopback only because allow_hosts names it)."""
    with ConditionalServer(images()) as server:
        server.redirects = {f"/r/{i}.jpg": f"/{i}.jpg" for i in range(N)}
        m = manifest(tmp_path, server.url, prefix="/r")
        cfg = eol_cfg(tmp_path / "a", m, rows_per_part=4)
        ingest_eol(cfg, decode_workers=0)
        before = snapshot(cfg.root)
        server.reset_counts()
        stats = ingest_eol(eol_cfg(tmp_path / "a", m, rows_per_part=4, revalidate=True))
        assert server.statuses == {302: N, 304: N} and server.body_bytes == 0
        assert stats.revalidated == revalidated(unchanged=N)
        assert snapshot(cfg.root) == before
        server.redirects["/r/3.jpg"] = "http://10.1.2.3/3.jpg"  # moved somewhere private
        server.reset_counts()
        stats = ingest_eol(eol_cfg(tmp_path / "a", m, rows_per_part=4, revalidate=True))
        assert stats.reasons == {"non_public_address": 1}
        assert server.statuses == {302: N, 304: N - 1}
        assert snapshot(cfg.root) == fresh_build(tmp_path, m)


def test_validators_survive_a_re_parting_that_leaves_a_part_without_remote_rows(tmp_path):
    """Every part's validators are read before the first part is rewritten: rows that moved
    from a part now holding only mirror files are still asked with their validators."""
    local = tmp_path / "local"
    local.mkdir()
    for i in range(4):
        (local / f"l{i}.jpg").write_bytes(jpeg(100 + i, 20, 20))
    mirror = {"https://mirror.example/": str(local)}
    with ConditionalServer(images()) as server:
        m = manifest(tmp_path, server.url)
        cfg = eol_cfg(tmp_path / "a", m, rows_per_part=4, mirror=mirror)
        ingest_eol(cfg, decode_workers=0)
        remote = [[i + 1, 7, "", f"{server.url}/{i}.jpg", "cc0", "o"] for i in range(N)]
        files = [[50 + i, 7, "", f"https://mirror.example/l{i}.jpg", "cc0", "o"] for i in range(4)]
        write_csv(m, EOL_HEADER, files + remote)  # part 0: mirror files only
        server.reset_counts()
        again = eol_cfg(tmp_path / "a", m, rows_per_part=4, mirror=mirror, revalidate=True)
        # one part after the other: part 0 is written before part 1 is planned
        stats = ingest_eol(again, decode_workers=0, map_parts=map_in_order)
        assert server.statuses == {304: N}
        assert stats.revalidated == revalidated(unchanged=N)
        assert not validators_parquet(cfg, 0).exists()
        assert snapshot(cfg.root) == fresh_build(tmp_path, m, mirror=mirror)
