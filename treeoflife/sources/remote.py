"""Read a large remote file (an iNat21 archive) as one forward stream that survives drops.

`RangeReader` is a read-only file object over an HTTP(S) URL: when the connection drops or the
body ends short, it reconnects with `Range: bytes=<offset>-` (and `If-Range` with the ETag or
Last-Modified it first saw, so a file that changed on the server is an error, not a silent
splice) and goes on from the same byte. Nothing is written to disk: the archive is streamed
once, whatever its size. Used through `open_stream`, which also opens local paths.

The URL comes from the config (trusted); the redirects come from the server and go through the
fetch policy: http(s) only (urllib would follow ftp://), and to a non-public address only when
it is the configured URL's own host:port or an allowed host.
"""

from __future__ import annotations

import http.client
import logging
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from treeoflife.sources.fetch_policy import FetchPolicy

log = logging.getLogger(__name__)

USER_AGENT = "treeoflife/0.1 (+https://github.com/treeoflife/treeoflife)"


class RemoteReadError(OSError):
    """The remote file could not be read to its end (after the allowed reconnects)."""


class _PolicyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only where the fetch policy lets it go."""

    def __init__(self, origin: str, policy: FetchPolicy):
        parts = urlsplit(origin)
        self._origin = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        self._policy = policy

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        why = redirect_refusal(newurl, self._origin, self._policy)
        if why is not None:
            raise RemoteReadError(f"{req.full_url}: redirect to {newurl} refused ({why})")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def redirect_refusal(url: str, origin: tuple, policy: FetchPolicy) -> str | None:
    """Why a redirect of the stream may not be followed (None: it may)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "redirect_unsupported_scheme"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if (parts.hostname, port) == origin:
        return None
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except OSError:
        return None  # unresolvable: the request itself fails with a clear error
    if all(policy.address_allowed(parts.hostname, info[4][0], port) for info in infos):
        return None
    return "non_public_address"


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


class RangeReader:
    """A forward-only binary stream over a URL, resuming with HTTP Range after a drop."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 60.0,
        max_reconnects: int = 20,
        backoff_s: float = 1.0,
        user_agent: str = USER_AGENT,
        policy: FetchPolicy | None = None,
    ):
        self.url = url
        self._opener = urllib.request.build_opener(_PolicyRedirects(url, policy or FetchPolicy()))
        self.timeout_s = timeout_s
        self.max_reconnects = max_reconnects
        self.backoff_s = backoff_s
        self.user_agent = user_agent
        self.offset = 0
        self.size: int | None = None
        self.reconnects = 0
        self._validator: str | None = None
        self._resp: http.client.HTTPResponse | None = None
        self._open()

    def _open(self) -> None:
        headers = {"User-Agent": self.user_agent, "Accept-Encoding": "identity"}
        if self.offset:
            headers["Range"] = f"bytes={self.offset}-"
            if self._validator:
                headers["If-Range"] = self._validator
        req = urllib.request.Request(self.url, headers=headers)
        try:
            resp = self._opener.open(req, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            raise RemoteReadError(f"{self.url}: HTTP {exc.code}") from None
        if self.offset:
            if resp.status != 206:
                resp.close()
                raise RemoteReadError(
                    f"{self.url}: the server did not resume at byte {self.offset} "
                    f"(HTTP {resp.status}; no Range support, or the file changed)"
                )
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != self.offset:
                resp.close()
                raise RemoteReadError(f"{self.url}: resumed at {start}, not {self.offset}")
            if self.size is not None and total is not None and total != self.size:
                resp.close()
                raise RemoteReadError(
                    f"{self.url}: the file changed size on the server ({self.size} -> {total})"
                )
        else:
            length = resp.headers.get("Content-Length")
            self.size = int(length) if length and length.isdigit() else None
            self._validator = _strong_validator(resp.headers)
        self._resp = resp

    def _reconnect(self, why: str) -> None:
        self.close()
        if self.reconnects >= self.max_reconnects:
            raise RemoteReadError(
                f"{self.url}: {why} at byte {self.offset}; gave up after {self.reconnects} "
                "reconnects"
            )
        self.reconnects += 1
        delay = min(60.0, self.backoff_s * 2 ** (self.reconnects - 1))
        log.warning("%s: %s at byte %d; resuming in %.1fs", self.url, why, self.offset, delay)
        time.sleep(delay)
        try:
            self._open()
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, RemoteReadError) and ("did not resume" in str(exc)
                                                     or "refused (" in str(exc)):  # fmt: skip
                raise
            self._reconnect(f"reconnect failed ({exc})")

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            chunks = []
            while chunk := self.read(1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        while True:
            if self._resp is None:
                if self.size is not None and self.offset >= self.size:
                    return b""
                self._reconnect("connection lost")
            try:
                data = self._resp.read(n)
            except (OSError, http.client.HTTPException) as exc:
                self._reconnect(f"read failed ({type(exc).__name__})")
                continue
            if data:
                self.offset += len(data)
                return data
            if n == 0 or self.size is None or self.offset >= self.size:
                return b""
            self._reconnect("body ended short")

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    def __enter__(self) -> RangeReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _strong_validator(headers) -> str | None:
    """What If-Range may carry: a strong ETag, else Last-Modified (RFC 9110 13.1.5 forbids weak
    ETags there; a server would answer a weak one with the whole file)."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of "bytes 100-999/1000" (total None when "*")."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[6:].partition("/")
    try:
        start = int(span.split("-", 1)[0])
    except ValueError:
        return None, None
    return start, int(total) if total.isdigit() else None


def open_stream(spec: str, local: Path | None = None, **kwargs):
    """A binary stream of a URL (resuming) or of a local file (`local`, already resolved)."""
    if is_url(spec):
        return RangeReader(spec, **kwargs)
    assert local is not None
    return open(local, "rb")  # noqa: SIM115 - the caller closes it
