"""The EOL image downloader: polite, bounded, retrying HTTP(S) and file:// fetches.

One aiohttp session (keep-alive, DNS cache) with a global request limit, a per-host connection
limit and optional per-host pacing (requests started per second), connect / read / whole-attempt
timeouts, a response size cap and a redirect limit; only http, https and file URLs. Transient
failures (connection errors, timeouts, cut bodies, 5xx, 429) are retried with exponential
backoff and jitter (429 honours Retry-After); 4xx are final (`http_<code>`). Outcomes depend
only on what the servers answer, never on timing luck beyond the configured retries.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp

from treeoflife.config import EOLConfig

log = logging.getLogger(__name__)

# Reason codes of failed fetches.
REASON_UNSUPPORTED_SCHEME = "unsupported_scheme"
REASON_INVALID_URL = "invalid_url"
REASON_NOT_FOUND = "not_found"  # file:// target missing
REASON_TIMEOUT = "timeout"
REASON_CONNECTION = "connection_error"
REASON_TRUNCATED_BODY = "truncated_body"
REASON_TOO_LARGE = "too_large"
REASON_TOO_MANY_REDIRECTS = "too_many_redirects"
REASON_HTTP_ERROR = "http_error"


@dataclass(frozen=True)
class DownloadSettings:
    concurrency: int = 32
    per_host_concurrency: int = 8
    per_host_rps: float = 0.0  # 0: no pacing
    timeout_s: float = 30.0  # whole attempt
    connect_timeout_s: float = 15.0
    read_timeout_s: float = 30.0
    retries: int = 3  # extra attempts after the first, for transient failures only
    max_bytes: int = 50_000_000
    user_agent: str = "treeoflife/0.1"
    max_redirects: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 300.0  # a longer Retry-After is capped to this

    @classmethod
    def from_config(cls, ecfg: EOLConfig, **overrides) -> DownloadSettings:
        values = dict(
            concurrency=ecfg.concurrency,
            per_host_concurrency=ecfg.per_host_concurrency,
            per_host_rps=ecfg.per_host_rps,
            timeout_s=ecfg.timeout_s,
            connect_timeout_s=ecfg.connect_timeout_s,
            read_timeout_s=ecfg.read_timeout_s,
            retries=ecfg.retries,
            max_bytes=ecfg.max_bytes,
            max_redirects=ecfg.max_redirects,
            user_agent=ecfg.user_agent,
        )
        values.update(overrides)
        return cls(**values)


@dataclass
class FetchResult:
    url: str | None
    data: bytes | None  # the body when the fetch succeeded
    reason: str | None  # why it failed (None when data is set)
    http_status: int | None  # last HTTP status seen
    attempts: int
    elapsed: float  # seconds, retries and waits included (not reproducible)
    nbytes: int = 0


class _Transient(Exception):  # noqa: N818 - control flow inside fetch
    def __init__(self, reason: str, status: int | None = None, delay: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.delay = delay


class _Final(Exception):  # noqa: N818
    def __init__(self, reason: str, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now_dt = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    return max(0.0, (when - now_dt).total_seconds())


class HostPacer:
    """Spaces request starts to each host at least 1/rps seconds apart (0 rps: no pacing).

    Reservations are taken in call order, so concurrent callers queue fairly instead of bursting
    when a slot frees; the map holds one float per host seen.
    """

    def __init__(self, rps: float):
        self.interval = 1.0 / rps if rps > 0 else 0.0
        self._next: dict[str, float] = {}

    async def wait(self, host: str) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        slot = max(now, self._next.get(host, now))
        self._next[host] = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


def file_url_path(url: str) -> Path:
    parts = urlsplit(url)
    return Path(unquote(parts.path))


class Downloader:
    """Owns the HTTP session; `fetch` one URL at a time from many tasks."""

    def __init__(self, settings: DownloadSettings):
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None
        self._pacer = HostPacer(settings.per_host_rps)
        self._rng = random.Random()

    async def __aenter__(self) -> Downloader:
        s = self.settings
        connector = aiohttp.TCPConnector(
            limit=s.concurrency,
            limit_per_host=s.per_host_concurrency,
            ttl_dns_cache=300,
            keepalive_timeout=30,
        )
        timeout = aiohttp.ClientTimeout(
            total=s.timeout_s,
            sock_connect=min(s.timeout_s, s.connect_timeout_s),
            sock_read=min(s.timeout_s, s.read_timeout_s),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers={"User-Agent": s.user_agent},
            trust_env=False,
        )
        self._slots = asyncio.Semaphore(s.concurrency)
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _backoff(self, attempt: int) -> float:
        s = self.settings
        ceiling = min(s.backoff_max_s, s.backoff_base_s * (2 ** (attempt - 1)))
        return ceiling * self._rng.uniform(0.5, 1.0)

    async def fetch(self, url: str | None) -> FetchResult:
        start = time.monotonic()
        if not url:
            return FetchResult(url, None, REASON_INVALID_URL, None, 0, 0.0)
        try:
            parts = urlsplit(url)
        except ValueError:
            return FetchResult(url, None, REASON_INVALID_URL, None, 0, 0.0)
        scheme = parts.scheme.lower()
        if scheme == "file":
            return await self._fetch_file(url, start)
        if scheme not in ("http", "https"):
            return FetchResult(url, None, REASON_UNSUPPORTED_SCHEME, None, 0, 0.0)
        if not parts.hostname:
            return FetchResult(url, None, REASON_INVALID_URL, None, 0, 0.0)
        host = parts.hostname.lower()
        attempts = 0
        status: int | None = None
        while True:
            attempts += 1
            try:
                assert self._slots is not None, "use Downloader as an async context manager"
                await self._pacer.wait(host)  # before taking a slot: other hosts go on
                async with self._slots:
                    data, status = await self._get(url)
                return FetchResult(
                    url, data, None, status, attempts, time.monotonic() - start, len(data)
                )
            except _Final as exc:
                return FetchResult(
                    url, None, exc.reason, exc.status, attempts, time.monotonic() - start
                )
            except _Transient as exc:
                status = exc.status
                if attempts > self.settings.retries:
                    return FetchResult(
                        url, None, exc.reason, exc.status, attempts, time.monotonic() - start
                    )
                delay = exc.delay if exc.delay is not None else self._backoff(attempts)
                log.debug("retry %s in %.2fs after %s", url, delay, exc.reason)
                await asyncio.sleep(delay)

    async def _get(self, url: str) -> tuple[bytes, int]:
        s = self.settings
        assert self._session is not None
        try:
            async with self._session.get(
                url, allow_redirects=True, max_redirects=s.max_redirects
            ) as resp:
                status = resp.status
                if status == 429:
                    wait = parse_retry_after(resp.headers.get("Retry-After"))
                    if wait is not None:
                        wait = min(wait, s.max_retry_after_s)
                    raise _Transient("http_429", status, wait)
                if status >= 500:
                    raise _Transient(f"http_{status}", status)
                if status >= 300:
                    raise _Final(f"http_{status}", status)
                length = resp.content_length
                if length is not None and length > s.max_bytes:
                    raise _Final(REASON_TOO_LARGE, status)
                chunks: list[bytes] = []
                total = 0
                async for chunk in resp.content.iter_chunked(1 << 16):
                    total += len(chunk)
                    if total > s.max_bytes:
                        raise _Final(REASON_TOO_LARGE, status)
                    chunks.append(chunk)
                return b"".join(chunks), status
        except (_Final, _Transient):
            raise
        except aiohttp.TooManyRedirects as exc:
            raise _Final(REASON_TOO_MANY_REDIRECTS, exc.status or None) from None
        except (aiohttp.InvalidURL, ValueError) as exc:
            raise _Final(REASON_INVALID_URL) from exc
        except TimeoutError:
            raise _Transient(REASON_TIMEOUT) from None
        except aiohttp.ClientPayloadError:
            raise _Transient(REASON_TRUNCATED_BODY) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionError, OSError):
            raise _Transient(REASON_CONNECTION) from None
        except aiohttp.ClientResponseError as exc:
            raise _Transient(REASON_HTTP_ERROR, exc.status or None) from None

    async def _fetch_file(self, url: str, start: float) -> FetchResult:
        path = file_url_path(url)
        max_bytes = self.settings.max_bytes

        def read() -> tuple[bytes | None, str | None]:
            try:
                # O_NONBLOCK: opening a FIFO must not wait for a writer; only regular files
                # are read, and never more than max_bytes + 1 (a file may grow meanwhile)
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                with os.fdopen(fd, "rb") as fh:
                    info = os.fstat(fh.fileno())
                    if not stat.S_ISREG(info.st_mode):
                        return None, REASON_NOT_FOUND
                    if info.st_size > max_bytes:
                        return None, REASON_TOO_LARGE
                    data = fh.read(max_bytes + 1)
                if len(data) > max_bytes:
                    return None, REASON_TOO_LARGE
                return data, None
            except FileNotFoundError:
                return None, REASON_NOT_FOUND
            except IsADirectoryError:
                return None, REASON_NOT_FOUND
            except OSError as exc:
                log.warning("cannot read %s: %s", path, exc)
                return None, REASON_CONNECTION

        assert self._slots is not None
        async with self._slots:
            data, reason = await asyncio.to_thread(read)
        elapsed = time.monotonic() - start
        return FetchResult(url, data, reason, None, 1, elapsed, len(data) if data else 0)
