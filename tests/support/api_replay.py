"""A real loopback HTTP server that replays recorded API responses (VCR cassettes) or answers
through a function, for tests and benchmarks of the taxonomy web-service clients.

Reads both cassette dialects: Python vcrpy (`interactions`, `response.body.string`,
`response.status.code`) and R vcr (`http_interactions`, `response.body.string`,
`response.status.status_code`). A request matches a recording by path and query parameters,
ignoring paging/verbosity switches (`limit`, `offset`, `strict`, `verbose`); unmatched requests
get 404. Faults: answer the first N requests of a path with a status (and Retry-After), and a
fixed latency per request. The server counts requests, user agents and peak concurrency.

    with ApiReplayServer(cassettes=[path]) as server:
        url = server.url
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import yaml

IGNORED_PARAMS = frozenset({"limit", "offset", "strict", "verbose"})

Handler = Callable[[str, dict[str, str]], tuple[int, object]]
"""(path, params) -> (status, JSON-serialisable body)."""


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    params: tuple[tuple[str, str], ...]
    status: int
    body: bytes
    content_type: str


def _match_params(params: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in params.items() if k not in IGNORED_PARAMS))


def _header(headers: dict, name: str) -> str | None:
    for k, v in (headers or {}).items():
        if k.lower() == name:
            return v[0] if isinstance(v, list) else v
    return None


def load_cassette(path: str | Path) -> list[Recorded]:
    """Every recorded interaction of a vcrpy or R-vcr YAML cassette."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    out = []
    for item in data.get("interactions") or data.get("http_interactions") or []:
        req, resp = item["request"], item["response"]
        parts = urlsplit(req["uri"])
        status = resp["status"].get("code") or resp["status"].get("status_code")
        body = resp["body"].get("string") or ""
        ctype = _header(resp.get("headers"), "content-type") or "application/json"
        out.append(
            Recorded(
                method=str(req.get("method", "GET")).upper(),
                path=parts.path,
                params=_match_params(dict(parse_qsl(parts.query, keep_blank_values=True))),
                status=int(status),
                body=body.encode("utf-8") if isinstance(body, str) else bytes(body),
                content_type=ctype,
            )
        )
    return out


@dataclass(frozen=True)
class FailFirst:
    """Answer the first `n` requests of a path with `status` (then behave normally)."""

    status: int
    n: int
    retry_after: str | None = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - silence stderr logging
        pass

    def setup(self):
        super().setup()  # headers and body go out in separate writes: no Nagle delay
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):  # noqa: N802
        parts = urlsplit(self.path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        srv = self.server
        count = srv.enter(parts.path, self.path, self.headers.get("User-Agent"))
        try:
            if srv.latency_s:
                time.sleep(srv.latency_s)
            fault = srv.fail_first.get(parts.path)
            if fault is not None and count <= fault.n:
                extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                self._send(fault.status, b'{"error": "injected"}', "application/json", extra)
                return
            if srv.handler is not None:
                status, body = srv.handler(parts.path, params)
                self._send(status, json.dumps(body).encode(), "application/json")
                return
            rec = srv.recorded.get((parts.path, _match_params(params)))
            if rec is None:
                self._send(404, b'{"error": "no recorded response"}', "application/json")
                return
            self._send(rec.status, rec.body, rec.content_type)
        finally:
            srv.leave()

    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, recorded, handler, latency_s, fail_first):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.recorded = {(r.path, r.params): r for r in recorded}
        self.handler = handler
        self.latency_s = latency_s
        self.fail_first = dict(fail_first or {})
        self.hits: Counter[str] = Counter()
        self.requests: list[str] = []
        self.user_agents: set[str] = set()
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()

    def enter(self, path: str, full: str, user_agent: str | None) -> int:
        with self._lock:
            self.hits[path] += 1
            self.requests.append(full)
            if user_agent:
                self.user_agents.add(user_agent)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            return self.hits[path]

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


class ApiReplayServer:
    """Serve recorded or computed JSON answers on a free loopback port (a context manager)."""

    def __init__(
        self,
        cassettes: list[str | Path] = (),
        handler: Handler | None = None,
        latency_s: float = 0.0,
        fail_first: dict[str, FailFirst] | None = None,
    ):
        recorded = [r for c in cassettes for r in load_cassette(c)]
        self._server = _Server(recorded, handler, latency_s, fail_first)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="api-replay", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def hits(self) -> Counter[str]:
        return self._server.hits

    @property
    def requests(self) -> list[str]:
        return self._server.requests

    @property
    def user_agents(self) -> set[str]:
        return self._server.user_agents

    @property
    def peak_in_flight(self) -> int:
        return self._server.peak_in_flight

    def __enter__(self) -> ApiReplayServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
