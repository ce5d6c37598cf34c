"""A real HTTP server on 127.0.0.1 serving a folder, with faults injected per path.

Tests and benchmarks point the EOL mirror at it to exercise the downloader over real sockets:
status codes, 429 + Retry-After, fail-first-N-then-succeed, latency, cut bodies, wrong content
types, HTML error pages served as 200, redirect loops and connection resets mid-body.

    with MirrorServer(folder, faults={"/a.jpg": Fault(status=500, fail_first=1)}) as server:
        url = server.url + "/a.jpg"
"""

from __future__ import annotations

import mimetypes
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Error</title></head>"
    b"<body><h1>Something went wrong</h1><p>Please try again later.</p></body></html>\n"
)


@dataclass(frozen=True)
class Fault:
    """What to do instead of (or on top of) serving the file at one path."""

    status: int | None = None  # answer with this status and a short body
    retry_after: str | None = None  # Retry-After header sent with `status`
    fail_first: int = 0  # >0: apply `status` only to the first N requests, then serve the file
    latency_s: float = 0.0  # sleep before answering
    truncate_to: int | None = None  # send only this many body bytes (Content-Length says all)
    content_type: str | None = None  # override the Content-Type header
    body: bytes | None = None  # serve these bytes instead of the file (e.g. HTML_ERROR_PAGE)
    redirect_to: str | None = None  # 302 to this path (itself: a redirect loop)
    reset_after: int | None = None  # send this many body bytes, then reset the connection


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
        fault = self.server.faults.get(path)
        if fault is not None and fault.latency_s:
            time.sleep(fault.latency_s)
        if fault is not None and fault.redirect_to is not None:
            self._send_simple(302, b"", extra={"Location": fault.redirect_to})
            return
        failing = fault is not None and fault.status is not None
        if failing and (fault.fail_first <= 0 or count <= fault.fail_first):
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._send_simple(fault.status, f"status {fault.status}\n".encode(), extra)
            return
        if fault is not None and fault.body is not None:
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
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        cut = None
        if fault is not None:
            cut = fault.truncate_to if fault.truncate_to is not None else fault.reset_after
        if cut is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if head:
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, root: Path, faults: dict[str, Fault]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root.resolve()
        self.faults = faults
        self.hits: Counter[str] = Counter()
        self.hit_times: dict[str, list[float]] = {}
        self.user_agents: set[str] = set()
        self._lock = threading.Lock()

    def hit(self, path: str, user_agent: str | None) -> int:
        with self._lock:
            self.hits[path] += 1
            self.hit_times.setdefault(path, []).append(time.monotonic())
            if user_agent:
                self.user_agents.add(user_agent)
            return self.hits[path]

    def resolve(self, path: str) -> Path | None:
        candidate = (self.root / path.lstrip("/")).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate


class MirrorServer:
    """Serve `root` on a free loopback port from a background thread (a context manager)."""

    def __init__(self, root: str | Path, faults: dict[str, Fault] | None = None):
        self._server = _Server(Path(root), dict(faults or {}))
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
    def user_agents(self) -> set[str]:
        return self._server.user_agents

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
