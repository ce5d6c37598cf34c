"""A real HTTP server on 127.0.0.1 serving a folder, with faults injected per path.

Tests and benchmarks point the EOL mirror at it to exercise the downloader over real sockets:
status codes, 429 + Retry-After, fail-first-N-then-succeed, latency, cut bodies, wrong content
types, HTML error pages served as 200, redirect loops, connection resets mid-body and slow
drips, and a host that answers 429 above K requests in flight (`max_in_flight`). Faults are
given per path, or to a fraction of all paths (chosen by a stable hash of the
path and a seed, so a test knows which path got which fault: `server.fault_for(path)`).

    with MirrorServer(folder, faults={"/a.jpg": Fault(status=500, fail_first=1)}) as server:
        url = server.url + "/a.jpg"
    MirrorServer(folder, fractions=[(0.05, Fault(status=503)), (0.01, Fault(status=404))])
"""

from __future__ import annotations

import mimetypes
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from treeoflife.io import stable_hash64

HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Error</title></head>"
    b"<body><h1>Something went wrong</h1><p>Please try again later.</p></body></html>\n"
)


@dataclass(frozen=True)
class Fault:
    """What to do instead of (or on top of) serving the file at one path."""

    status: int | None = None  # answer with this status and a short body
    retry_after: str | None = None  # Retry-After header sent with `status`
    fail_first: int = 0  # >0: apply `status` / cuts only to the first N requests, then serve
    latency_s: float = 0.0  # sleep before answering
    truncate_to: int | None = None  # send only this many body bytes (Content-Length says all)
    content_type: str | None = None  # override the Content-Type header
    body: bytes | None = None  # serve these bytes instead of the file (e.g. HTML_ERROR_PAGE)
    redirect_to: str | None = None  # 302 to this path (itself: a redirect loop)
    reset_after: int | None = None  # send this many body bytes, then reset the connection
    drip_s: float = 0.0  # >0: send the body `drip_bytes` at a time, sleeping this long between
    drip_bytes: int = 256

    def applies(self, count: int) -> bool:
        """Whether the `count`-th request (1-based) gets the status / cut / drip."""
        return self.fail_first <= 0 or count <= self.fail_first


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - silence stderr logging
        pass

    def do_HEAD(self):  # noqa: N802
        self._respond(head=True)

    def do_GET(self):  # noqa: N802
        self._respond(head=False)

    def _respond(self, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        count = self.server.hit(path, self.headers.get("User-Agent"))
        if not self.server.enter():
            self.server.note_fault(path)
            self.server.note_limited()
            extra = {"Retry-After": self.server.limit_retry_after}
            self._send_simple(429, b"too many requests in flight\n", extra)
            return
        self._counted = True
        try:
            self._serve(path, count, head)
        finally:
            self._leave()

    def end_headers(self) -> None:
        # A request stops counting as in flight once its answer is on its way: the client may
        # have the whole answer and send its next request before this thread's finally runs
        # (a loaded machine), which would refuse a request the client had every right to send.
        self._leave()
        super().end_headers()

    def _leave(self) -> None:
        if getattr(self, "_counted", False):
            self._counted = False
            self.server.leave()

    def _serve(self, path: str, count: int, head: bool) -> None:
        fault = self.server.fault_for(path)
        if fault is not None and fault.latency_s:
            time.sleep(fault.latency_s)
        if fault is not None and fault.redirect_to is not None:
            self.server.note_fault(path)
            self._send_simple(302, b"", extra={"Location": fault.redirect_to})
            return
        failing = fault is not None and fault.status is not None
        if failing and fault.applies(count):
            self.server.note_fault(path)
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._send_simple(fault.status, f"status {fault.status}\n".encode(), extra)
            return
        if fault is not None and fault.body is not None:
            self.server.note_fault(path)
            body = fault.body
            ctype = fault.content_type or "text/html; charset=utf-8"
        else:
            file = self.server.resolve(path)
            if file is None:
                self._send_simple(404, b"not found\n")
                return
            body = file.read_bytes()
            ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            if fault is not None and fault.content_type:
                ctype = fault.content_type
        etag = f'"{len(body):x}-{hash(body) & 0xFFFFFFFF:x}"'
        start = _range_start(self.headers.get("Range"), len(body))
        if_range = self.headers.get("If-Range")
        if start is not None and (if_range is None or if_range == etag):
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            body = body[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        cut = None
        if fault is not None and fault.applies(count):
            cut = fault.truncate_to if fault.truncate_to is not None else fault.reset_after
        if cut is not None:
            self.server.note_fault(path)
            self.send_header("Connection", "close")
        self.end_headers()
        if head:
            return
        if cut is None and fault is not None and fault.drip_s > 0 and fault.applies(count):
            self.server.note_fault(path)
            step = max(1, fault.drip_bytes)
            for i in range(0, len(body), step):
                self.wfile.write(body[i : i + step])
                self.wfile.flush()
                time.sleep(fault.drip_s)
            return
        if cut is None:
            self.wfile.write(body)
            return
        self.wfile.write(body[:cut])
        self.wfile.flush()
        self.close_connection = True
        if fault.reset_after is not None and fault.truncate_to is None:
            # SO_LINGER 0: close() sends RST instead of FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _send_simple(self, status: int, body: bytes, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _range_start(value: str | None, size: int) -> int | None:
    """The start of a `bytes=N-` range inside the body (other range forms are ignored)."""
    if not value or not value.startswith("bytes=") or not value.endswith("-"):
        return None
    try:
        start = int(value[6:-1])
    except ValueError:
        return None
    return start if 0 <= start < size else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops connections when a client opens dozens at once
    # (the client then waits for a response that never comes): not a fault we mean to inject
    request_queue_size = 256

    def __init__(
        self,
        root: Path,
        faults: dict[str, Fault],
        fractions: Sequence[tuple[float, Fault]] = (),
        seed: int = 0,
        max_in_flight: int | None = None,
        limit_retry_after: str = "1",
    ):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.max_in_flight = max_in_flight
        self.limit_retry_after = limit_retry_after
        self.in_flight = 0
        self.peak_in_flight = 0
        self.limited_times: list[float] = []
        self.root = root.resolve()
        self.faults = faults
        self.fractions = list(fractions)
        self.seed = seed
        if sum(f for f, _ in self.fractions) > 1.0:
            raise ValueError("fault fractions add up to more than 1")
        self.hits: Counter[str] = Counter()
        self.hit_times: dict[str, list[float]] = {}
        self.user_agents: set[str] = set()
        self.faulted: Counter[str] = Counter()
        self._lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:
        # a client that gave up (timeout on a drip, reset) is expected here: no traceback
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)

    def enter(self) -> bool:
        """Count a request in flight; False (not counted) when that would exceed the limit."""
        with self._lock:
            if self.max_in_flight is not None and self.in_flight >= self.max_in_flight:
                return False
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            return True

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def note_limited(self) -> None:
        with self._lock:
            self.limited_times.append(time.monotonic())

    def note_fault(self, path: str) -> None:
        with self._lock:
            self.faulted[path] += 1

    def hit(self, path: str, user_agent: str | None) -> int:
        with self._lock:
            self.hits[path] += 1
            self.hit_times.setdefault(path, []).append(time.monotonic())
            if user_agent:
                self.user_agents.add(user_agent)
            return self.hits[path]

    def fault_for(self, path: str) -> Fault | None:
        """The path's own fault, else the fraction fault its stable hash falls in, else None."""
        fault = self.faults.get(path)
        if fault is not None or not self.fractions:
            return fault
        u = stable_hash64(str(self.seed), path) / 2**64
        edge = 0.0
        for fraction, candidate in self.fractions:
            edge += fraction
            if u < edge:
                return candidate
        return None

    def resolve(self, path: str) -> Path | None:
        candidate = (self.root / path.lstrip("/")).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate


class MirrorServer:
    """Serve `root` on a free loopback port from a background thread (a context manager)."""

    def __init__(
        self,
        root: str | Path,
        faults: dict[str, Fault] | None = None,
        fractions: Sequence[tuple[float, Fault]] = (),
        seed: int = 0,
        max_in_flight: int | None = None,
        limit_retry_after: str = "1",
    ):
        """`max_in_flight`: a rate-limited host, answering 429 + Retry-After
        (`limit_retry_after`) to a request that arrives while that many are being served."""
        self._server = _Server(
            Path(root), dict(faults or {}), fractions, seed, max_in_flight, limit_retry_after
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="mirror-server", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def hits(self) -> Counter[str]:
        """Requests received per path."""
        return self._server.hits

    @property
    def hit_times(self) -> dict[str, list[float]]:
        """time.monotonic() of each request per path."""
        return self._server.hit_times

    @property
    def faulted(self) -> Counter[str]:
        """Requests per path that got a fault (status, cut, drip, body or redirect) instead of
        the plain file; latency and Content-Type overrides alone do not count."""
        return self._server.faulted

    @property
    def limited_times(self) -> list[float]:
        """time.monotonic() of each 429 sent for `max_in_flight`."""
        return self._server.limited_times

    @property
    def peak_in_flight(self) -> int:
        return self._server.peak_in_flight

    @property
    def user_agents(self) -> set[str]:
        return self._server.user_agents

    def fault_for(self, path: str) -> Fault | None:
        """The fault a request for `path` gets (per-path first, then by fraction)."""
        return self._server.fault_for(path)

    def set_fault(self, path: str, fault: Fault | None) -> None:
        if fault is None:
            self._server.faults.pop(path, None)
        else:
            self._server.faults[path] = fault

    def start(self) -> MirrorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MirrorServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
