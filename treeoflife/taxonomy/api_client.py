"""A polite, cached JSON client for taxonomy web services (GBIF species match, ITIS).

Why our own aiohttp client rather than pygbif: pygbif's base URL is a module constant that each
submodule imports by name (and `/v2/species/match` is hard-coded to api.gbif.org), it calls
`requests` one name at a time, and it has no concurrency bound, rate limit, retry or cache. We
need all of these, and tests must point the client at a loopback server.

Every definitive answer (HTTP 200, or 400/404: the service says no) is stored in a DuckDB cache
keyed by path + sorted query, so no request is sent twice across runs; answers are written to
the cache chunk by chunk, so a killed run keeps what it fetched. Transient failures (connection
errors, timeouts, 429, 5xx) are retried with exponential backoff and jitter, honouring
Retry-After; what still fails is returned as an error and is not cached (the next run asks
again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import duckdb
import pyarrow as pa

from treeoflife.io import duckdb_writable
from treeoflife.progress import Progress, or_null

log = logging.getLogger(__name__)

DEFINITIVE = frozenset({200, 400, 404})
"""Statuses that are the service's answer (cached); anything else is retried."""

RETRY_AFTER_CAP_S = 60.0
CHUNK = 500  # requests per cache write


@dataclass(frozen=True)
class ApiSettings:
    base_url: str
    concurrency: int = 8  # requests in flight at once
    rate_per_s: float = 10.0  # request starts per second (GBIF asks for moderation)
    retries: int = 4  # extra attempts after the first, for transient failures only
    timeout_s: float = 30.0  # whole-request deadline
    backoff_s: float = 0.5  # first retry delay; doubles each attempt, with jitter
    user_agent: str = "treeoflife/0.1 (+https://github.com/treeoflife/treeoflife)"

    @classmethod
    def from_config(cls, tc, base_url: str) -> ApiSettings:
        """The settings of one service from the taxonomy config's shared `api_*` keys."""
        return cls(
            base_url=base_url,
            concurrency=tc.api_concurrency,
            rate_per_s=tc.api_rate_per_s,
            retries=tc.api_retries,
            timeout_s=tc.api_timeout_s,
            user_agent=tc.api_user_agent,
        )


@dataclass(frozen=True)
class ApiAnswer:
    """One request's outcome: the parsed body of a definitive answer, or an error."""

    request: str  # the cache key: path?sorted-query
    status: int | None  # HTTP status of the last attempt (None: no response)
    body: object | None  # parsed JSON (None when not JSON or no answer)
    error: str | None = None  # why there is no definitive answer
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


def request_key(path: str, params: dict) -> str:
    """A canonical request string: the same path and parameters give the same key."""
    clean = sorted((k, str(v)) for k, v in params.items() if v is not None)
    return f"{path}?{urlencode(clean)}" if clean else path


class ResponseCache:
    """Definitive API answers in a DuckDB file (owns the connection)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stack = contextlib.ExitStack()  # a `?` in the data root: a scratch copy
        self._con = duckdb.connect(self._stack.enter_context(duckdb_writable(self.path)))
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS api_cache "
            "(request VARCHAR PRIMARY KEY, status INTEGER, body VARCHAR, fetched_at DOUBLE)"
        )

    def get_many(self, keys: list[str]) -> dict[str, tuple[int, str]]:
        if not keys:
            return {}
        self._con.register("wanted_requests", pa.table({"request": sorted(set(keys))}))
        try:
            rows = self._con.execute(
                "SELECT c.request, c.status, c.body FROM api_cache c "
                "JOIN wanted_requests w USING (request)"
            ).fetchall()
        finally:
            self._con.unregister("wanted_requests")
        return {r: (s, b) for r, s, b in rows}

    def put_many(self, items: list[tuple[str, int, str]]) -> None:
        if not items:
            return
        latest = {k: (s, b) for k, s, b in items}  # one row per key (the last answer)
        batch = pa.table(
            {
                "request": list(latest),
                "status": pa.array([s for s, _ in latest.values()], pa.int32()),
                "body": [b for _, b in latest.values()],
                "fetched_at": pa.array([time.time()] * len(latest), pa.float64()),
            }
        )
        self._con.register("new_answers", batch)
        try:
            self._con.execute("INSERT OR REPLACE INTO api_cache SELECT * FROM new_answers")
        finally:
            self._con.unregister("new_answers")

    def __len__(self) -> int:
        return self._con.execute("SELECT count(*) FROM api_cache").fetchone()[0]

    def close(self) -> None:
        self._con.close()
        self._stack.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _RateLimiter:
    """Spaces request starts at least 1/rate apart (shared by every task)."""

    def __init__(self, rate_per_s: float):
        self.interval = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        loop = asyncio.get_running_loop()
        async with self._lock:
            now = loop.time()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


def _retry_after(headers) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), RETRY_AFTER_CAP_S)
    except ValueError:
        return None


async def _fetch_one(
    session: aiohttp.ClientSession,
    settings: ApiSettings,
    limiter: _RateLimiter,
    gate: asyncio.Semaphore,
    key: str,
    rng: random.Random,
) -> tuple[str, int | None, str | None, str | None]:
    """(key, status, body text, error) after up to 1 + retries attempts."""
    url = settings.base_url.rstrip("/") + "/" + key.lstrip("/")
    status: int | None = None
    error: str | None = None
    for attempt in range(settings.retries + 1):
        delay = None
        async with gate:
            await limiter.wait()
            try:
                async with session.get(url) as resp:
                    status = resp.status
                    text = await resp.text(errors="replace")
                    if status in DEFINITIVE:
                        return key, status, text, None
                    error = f"http_{status}"
                    delay = _retry_after(resp.headers)
            except (TimeoutError, aiohttp.ClientError) as exc:
                status, error = None, f"{type(exc).__name__}: {exc}".strip(": ")
        if attempt < settings.retries:
            if delay is None:
                delay = settings.backoff_s * (2**attempt) * (0.5 + rng.random())
            await asyncio.sleep(delay)
    return key, status, None, error


async def _fetch_all(keys: list[str], settings: ApiSettings, cache: ResponseCache, progress):
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
    headers = {"User-Agent": settings.user_agent, "Accept": "application/json"}
    connector = aiohttp.TCPConnector(limit=max(settings.concurrency, 1))
    limiter = _RateLimiter(settings.rate_per_s)
    gate = asyncio.Semaphore(max(settings.concurrency, 1))
    rng = random.Random(0)
    out: dict[str, tuple[int | None, str | None, str | None]] = {}
    async with aiohttp.ClientSession(
        timeout=timeout, headers=headers, connector=connector
    ) as session:
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            results = await asyncio.gather(
                *(_fetch_one(session, settings, limiter, gate, k, rng) for k in chunk)
            )
            cache.put_many([(k, s, b) for k, s, b, e in results if e is None])
            for k, s, b, e in results:
                out[k] = (s, b, e)
            progress.advance(len(chunk))
    return out


def _parse(text: str | None) -> object | None:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def fetch_json(
    requests: list[tuple[str, dict]],
    settings: ApiSettings,
    cache_path: Path,
    progress: Progress | None = None,
) -> list[ApiAnswer]:
    """GET every (path, params) as JSON, from the cache when answered before; answers in order.

    Duplicate requests are sent once. Never raises for a failed request: its answer carries
    `error` (and it is not cached).
    """
    progress = or_null(progress)
    keys = [request_key(p, params) for p, params in requests]
    with ResponseCache(cache_path) as cache:
        cached = cache.get_many(keys)
        missing = sorted(set(keys) - set(cached))
        progress.start("taxonomy.api", len(missing))
        fetched = asyncio.run(_fetch_all(missing, settings, cache, progress)) if missing else {}
        progress.finish()
    failures = sum(1 for s, b, e in fetched.values() if e is not None)
    log.info(
        "api %s: %d requests, %d from cache, %d fetched, %d failed",
        settings.base_url,
        len(set(keys)),
        len(set(keys)) - len(missing),
        len(missing),
        failures,
    )
    out = []
    for k in keys:
        if k in cached:
            status, body = cached[k]
            out.append(ApiAnswer(k, status, _parse(body), cached=True))
        else:
            status, body, error = fetched[k]
            parsed = _parse(body)
            if error is None and status == 200 and parsed is None:
                error = "not_json"
            out.append(ApiAnswer(k, status, parsed, error))
    return out
