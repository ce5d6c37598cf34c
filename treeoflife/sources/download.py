"""The EOL image downloader: adaptive per host, polite, bounded, retrying, default deny.

One aiohttp session (keep-alive, DNS cache) and a scheduler with one queue per host
(host_queues.py, `host:port`): a request starts when its host is below its adaptive limit
(host_limit.py), all hosts together are below `concurrency`, and the bodies fetched but not
yet handed back by the caller are below `hold_limit`; hosts with work take turns, so a slow
host never holds up the others and a host told to wait (Retry-After, pacing) waits alone.
Connect / read / whole-attempt timeouts, a response size cap, redirects followed one
hop at a time through the fetch policy (fetch_policy.py: no local files outside the mirrors,
no private addresses, no redirect to another scheme). Transient failures (connection errors,
timeouts, cut bodies, 5xx, 429) are retried with exponential backoff and jitter (429 / 503
honour Retry-After, for the whole host); 4xx are final (`http_<code>`). A fetch given the
validators of a stored copy is conditional (download_validators.py): a 304 answer is a result
without a body. Per-host figures go to `hosts.status.parquet` (host_stats.py). Outcomes depend
only on what the servers answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import os
import random
import stat
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from treeoflife.config import EOLConfig
from treeoflife.sources.download_validators import (
    Validators,
    describe_revalidated,
    report_columns,
    revalidation_outcome,
    write_host_report,
)
from treeoflife.sources.fetch_policy import (
    AddressRefused,
    FetchPolicy,
    public_url,
)
from treeoflife.sources.host_queues import FILE_HOST, Host, HostQueues
from treeoflife.sources.host_stats import describe, report_row
from treeoflife.vocabulary import Reason, http_reason

log = logging.getLogger(__name__)

# Failures a later run may not repeat (429 and 5xx: see is_transient).
_TRANSIENT = frozenset(
    {
        Reason.TIMEOUT,
        Reason.CONNECTION_ERROR,
        Reason.TRUNCATED_BODY,
        Reason.HTTP_ERROR,
        http_reason(429),
    }
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
LOG_EVERY_S = 60.0


def is_transient(reason: str | None) -> bool:
    """Whether a failure may succeed later (a next run fetches such rows again)."""
    if reason is None:
        return False
    return reason in _TRANSIENT or (reason.startswith("http_5") and reason[5:].isdigit())


@dataclass(frozen=True)
class DownloadSettings:
    concurrency: int = 256  # ceiling: requests in flight, all hosts together
    per_host_concurrency: int = 64  # ceiling per host (the adaptive limit never exceeds it)
    adaptive: bool = True  # False: every host gets per_host_concurrency from the start
    host_start_concurrency: int = 4  # adaptive: requests in flight to a new host
    probe_after_s: float = 30.0  # adaptive: a rate-limited host is probed higher this often
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
    policy: FetchPolicy = field(default_factory=FetchPolicy)

    @classmethod
    def from_config(cls, ecfg: EOLConfig, **overrides) -> DownloadSettings:
        values = dict(
            concurrency=ecfg.concurrency,
            per_host_concurrency=ecfg.per_host_concurrency,
            adaptive=ecfg.adaptive_concurrency,
            host_start_concurrency=ecfg.host_start_concurrency,
            per_host_rps=ecfg.per_host_rps,
            timeout_s=ecfg.timeout_s,
            connect_timeout_s=ecfg.connect_timeout_s,
            read_timeout_s=ecfg.read_timeout_s,
            retries=ecfg.retries,
            max_bytes=ecfg.max_bytes,
            max_redirects=ecfg.max_redirects,
            user_agent=ecfg.user_agent,
            policy=FetchPolicy(allow=tuple(ecfg.allow_hosts)),
        )
        values.update(overrides)
        return cls(**values)


@dataclass
class FetchResult:
    url: str | None  # as fetched, credentials removed
    data: bytes | None  # the body when the fetch succeeded
    reason: str | None  # why it failed (None when data is set)
    http_status: int | None  # last HTTP status seen
    attempts: int
    elapsed: float  # seconds, retries and waits included (not reproducible)
    nbytes: int = 0
    validators: Validators | None = None  # the answer's ETag / Last-Modified (http(s) only)
    conditional: bool = False  # asked with a stored copy's validators
    not_modified: bool = False  # 304 to the conditional request: the stored copy is current


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


class Downloader:
    """Owns the HTTP session and the per-host scheduler; `fetch` / `fetching` from many tasks.

    `hold_limit`: at most this many bodies between "request started" and "released by the
    caller" (`fetching` releases when its block ends): back-pressure when the network outruns
    the decoders, without blocking any host's queue. `report_to`: where the per-host figures
    are written (on exit, and every minute while running).
    """

    def __init__(
        self,
        settings: DownloadSettings,
        hold_limit: int | None = None,
        report_to: Path | None = None,
    ):
        self.settings = settings
        self.policy = settings.policy
        self.hold_limit = hold_limit
        self.report_to = report_to
        self._session: aiohttp.ClientSession | None = None
        self._rng = random.Random()
        self._queues = HostQueues(settings, hold_limit)
        self._ticker: asyncio.Task | None = None
        self._revalidated: dict[str, Counter] = {}  # host -> answers to conditional requests

    async def __aenter__(self) -> Downloader:
        s = self.settings
        connector = aiohttp.TCPConnector(
            limit=s.concurrency,
            limit_per_host=s.per_host_concurrency,
            ttl_dns_cache=300,
            keepalive_timeout=30,
            resolver=self.policy.resolver(),
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
        self._ticker = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self._queues.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.log_hosts(logging.INFO)
        self.write_report()

    # ------------------------------------------------------------------ figures

    def host_report(self) -> list[dict]:
        """One row per host seen: requests, ok, bytes, errors by kind, latency, concurrency,
        answers to conditional requests."""
        return [
            report_row(h.name, h.stats, h.limit) | report_columns(self._revalidated.get(h.name))
            for h in self._queues.hosts.values()
        ]

    def write_report(self) -> None:
        if self.report_to is not None and self._queues.hosts:
            write_host_report(self.report_to, self.host_report())

    def log_hosts(self, level: int, top: int = 20) -> None:
        rows = sorted(self.host_report(), key=lambda r: -r["requests"])
        for row in rows[:top]:
            log.log(level, "download %s%s", describe(row), describe_revalidated(row))
        if len(rows) > top:
            log.log(level, "download: %d more hosts", len(rows) - top)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(LOG_EVERY_S)
            self.log_hosts(logging.INFO, top=5)
            await asyncio.to_thread(self.write_report)

    # ------------------------------------------------------------------ fetching

    def _backoff(self, attempt: int) -> float:
        s = self.settings
        ceiling = min(s.backoff_max_s, s.backoff_base_s * (2 ** (attempt - 1)))
        return ceiling * self._rng.uniform(0.5, 1.0)

    async def fetch(self, url: str | None, validators: Validators | None = None) -> FetchResult:
        """Fetch one URL; the body is the caller's at once (no hold)."""
        async with self.fetching(url, validators) as result:
            return result

    @contextlib.asynccontextmanager
    async def fetching(self, url: str | None, validators: Validators | None = None):
        """Fetch one URL; its body counts against `hold_limit` until the block ends. With
        `validators` (a stored copy's) an http(s) fetch is conditional: a 304 answer gives
        `not_modified` and no body."""
        result, held = await self._fetch(url, validators)
        try:
            yield result
        finally:
            if held:
                self._queues.release_body()

    async def _fetch(
        self, url: str | None, validators: Validators | None = None
    ) -> tuple[FetchResult, bool]:
        start = time.monotonic()
        shown = public_url(url)
        if not url:
            return FetchResult(shown, None, Reason.INVALID_URL, None, 0, 0.0), False
        try:
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            hostname = parts.hostname
            port = parts.port
        except ValueError:
            return FetchResult(shown, None, Reason.INVALID_URL, None, 0, 0.0), False
        if scheme == "file":
            return await self._fetch_file(url, shown, start)
        if scheme not in ("http", "https"):
            return FetchResult(shown, None, Reason.UNSUPPORTED_SCHEME, None, 0, 0.0), False
        if not hostname:
            return FetchResult(shown, None, Reason.INVALID_URL, None, 0, 0.0), False
        refusal = self.policy.url_refusal(url)
        if refusal is not None:
            return FetchResult(shown, None, refusal, None, 0, 0.0), False
        host = self._queues.host(f"{hostname.lower()}:{port or (443 if scheme == 'https' else 80)}")
        headers = validators.request_headers() if validators else {}
        attempts = 0

        def failed(exc: _Final | _Transient) -> FetchResult:
            elapsed = time.monotonic() - start
            result = FetchResult(
                shown, None, exc.reason, exc.status, attempts, elapsed, conditional=bool(headers)
            )
            return self._counted(host, result)

        while True:
            attempts += 1
            in_flight = await self._queues.acquire(host)
            began = time.monotonic()
            try:
                data, status, answer = await self._get(url, host, began, in_flight, headers)
            except _Final as exc:
                self._queues.end_request(host, keep_body=False)
                return failed(exc), False
            except _Transient as exc:
                self._queues.end_request(host, keep_body=False)
                if attempts > self.settings.retries:
                    return failed(exc), False
                delay = exc.delay if exc.delay is not None else self._backoff(attempts)
                log.debug("retry %s in %.2fs after %s", shown, delay, exc.reason)
                await asyncio.sleep(delay)
                continue
            except BaseException:
                self._queues.end_request(host, keep_body=False)
                raise
            self._queues.end_request(host, keep_body=data is not None)
            result = FetchResult(
                shown, data, None, status, attempts, time.monotonic() - start,
                len(data) if data is not None else 0, answer, bool(headers), data is None,
            )  # fmt: skip
            return self._counted(host, result), data is not None

    def _counted(self, host: Host, result: FetchResult) -> FetchResult:
        """Count the answer to a conditional request in the host's figures."""
        if result.conditional:
            outcome = revalidation_outcome(result.http_status, result.reason)
            if outcome is not None:
                self._revalidated.setdefault(host.name, Counter())[outcome] += 1
        return result

    async def _get(
        self, url: str, host: Host, began: float, in_flight: int, headers: dict[str, str]
    ) -> tuple[bytes | None, int, Validators | None]:
        """One attempt (redirects followed hop by hop); records the host's figures."""
        stats, limit = host.stats, host.limit
        stats.requests += 1
        try:
            data, status, answer = await self._request(url, host, began, in_flight, headers)
        except (_Final, _Transient) as exc:
            stats.error(exc.reason)
            rate_limited = exc.reason == http_reason(429) or (
                exc.reason == http_reason(503)
                and isinstance(exc, _Transient)
                and exc.delay is not None
            )
            if isinstance(exc, _Transient) and not rate_limited:
                limit.on_failure(began, time.monotonic())
            raise
        stats.ok += 1
        stats.bytes += len(data) if data is not None else 0
        limit.on_success(began, time.monotonic())
        return data, status, answer

    async def _request(
        self, url: str, host: Host, began: float, in_flight: int, headers: dict[str, str]
    ) -> tuple[bytes | None, int, Validators | None]:
        """(body, status, the answer's validators); body None: 304 to a conditional request.
        `headers` (the conditional ones) go with every hop; each hop passes the policy."""
        s = self.settings
        assert self._session is not None, "use Downloader as an async context manager"
        current = URL(url, encoded=False)
        try:
            for _hop in range(s.max_redirects + 1):
                async with self._session.get(
                    current, allow_redirects=False, headers=headers
                ) as resp:
                    status = resp.status
                    ttfb = time.monotonic() - began
                    host.stats.answered(ttfb)
                    host.limit.on_latency(ttfb, limited=status == 429)
                    if status in _REDIRECTS:
                        current = self._redirect_target(resp, status)
                        continue
                    wait = parse_retry_after(resp.headers.get("Retry-After"))
                    if status == 429 or (status == 503 and wait is not None):
                        about_host = host.limit.on_rate_limited(began, time.monotonic(), in_flight)
                        if wait is not None:
                            wait = min(wait, s.max_retry_after_s)
                            if about_host:  # RFC 6585: no new request before it
                                self._queues.pause(host, wait)
                        raise _Transient(http_reason(status), status, wait)
                    if status >= 500:
                        raise _Transient(http_reason(status), status)
                    if status == 304 and headers:  # the stored copy is current: no body
                        return None, status, Validators.from_headers(resp.headers)
                    if status >= 300:
                        raise _Final(http_reason(status), status)
                    length = resp.content_length
                    if length is not None and length > s.max_bytes:
                        raise _Final(Reason.TOO_LARGE, status)
                    chunks: list[bytes] = []
                    total = 0
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        total += len(chunk)
                        if total > s.max_bytes:
                            raise _Final(Reason.TOO_LARGE, status)
                        chunks.append(chunk)
                    return b"".join(chunks), status, Validators.from_headers(resp.headers)
            raise _Final(Reason.TOO_MANY_REDIRECTS, status)
        except (_Final, _Transient):
            raise
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.os_error, AddressRefused):
                raise _Final(Reason.NON_PUBLIC_ADDRESS) from None
            raise _Transient(Reason.CONNECTION_ERROR) from None
        except (aiohttp.InvalidURL, aiohttp.RedirectClientError, ValueError) as exc:
            raise _Final(Reason.INVALID_URL) from exc
        except TimeoutError:
            raise _Transient(Reason.TIMEOUT) from None
        except aiohttp.ClientPayloadError:
            raise _Transient(Reason.TRUNCATED_BODY) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionError, OSError):
            raise _Transient(Reason.CONNECTION_ERROR) from None
        except aiohttp.ClientResponseError as exc:
            raise _Transient(Reason.HTTP_ERROR, exc.status or None) from None

    def _redirect_target(self, resp: aiohttp.ClientResponse, status: int) -> URL:
        """The next hop, if the policy lets us go there."""
        location = resp.headers.get("Location")
        if not location:
            raise _Final(http_reason(status), status)
        try:
            target = resp.url.join(URL(location))
        except ValueError:
            raise _Final(Reason.INVALID_URL, status) from None
        if target.scheme not in ("http", "https") or not target.host:
            raise _Final(Reason.REDIRECT_UNSUPPORTED_SCHEME, status)
        refusal = self.policy.url_refusal(str(target))
        if refusal is not None:
            raise _Final(refusal, status)
        return target

    async def _fetch_file(self, url: str, shown: str | None, start: float):
        path, refusal = self.policy.local_path(url)
        if path is None:
            return FetchResult(shown, None, refusal, None, 0, 0.0), False
        max_bytes = self.settings.max_bytes

        def read() -> tuple[bytes | None, str | None]:
            try:
                # O_NOFOLLOW: the checked real path, not a symlink swapped in since;
                # O_NONBLOCK: opening a FIFO must not wait for a writer; only regular files
                # are read, and never more than max_bytes + 1 (a file may grow meanwhile)
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
                with os.fdopen(fd, "rb") as fh:
                    info = os.fstat(fh.fileno())
                    if not stat.S_ISREG(info.st_mode):
                        return None, Reason.NOT_FOUND
                    if info.st_size > max_bytes:
                        return None, Reason.TOO_LARGE
                    data = fh.read(max_bytes + 1)
                if len(data) > max_bytes:
                    return None, Reason.TOO_LARGE
                return data, None
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                return None, Reason.NOT_FOUND
            except OSError as exc:
                log.warning("cannot read %s: %s", path, exc)
                return None, Reason.CONNECTION_ERROR

        host = self._queues.host(FILE_HOST)
        await self._queues.acquire(host)
        try:
            data, reason = await asyncio.to_thread(read)
        except BaseException:
            self._queues.end_request(host, keep_body=False)
            raise
        self._queues.end_request(host, keep_body=data is not None)
        elapsed = time.monotonic() - start
        result = FetchResult(shown, data, reason, None, 1, elapsed, len(data) if data else 0)
        return result, data is not None
