"""The downloader's scheduler: one FIFO queue per host, hosts taking turns.

A request starts when its host is below its own limit (`HostLimit`, adaptive), all hosts
together are below `concurrency`, the bodies fetched but not yet handed back are below
`hold_limit`, and the host is not asked to wait (Retry-After, pacing). Hosts with work take
turns in a round-robin, so a slow or paused host never holds up the others (no head-of-line
blocking) and memory is one small record per host seen, whatever the number of URLs.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time

from treeoflife.sources.host_limit import HostLimit
from treeoflife.sources.host_stats import HostStats

FILE_HOST = "file://"  # the queue of local reads
FILE_READS_IN_FLIGHT = 16


class Host:
    """One host's queue of waiting attempts, its limit, its figures."""

    __slots__ = ("name", "queue", "in_flight", "limit", "not_before", "stats", "ready", "wake")

    def __init__(self, name: str, limit: HostLimit):
        self.name = name
        self.queue: collections.deque[asyncio.Future] = collections.deque()
        self.in_flight = 0
        self.limit = limit
        self.not_before = 0.0  # monotonic time before which nothing starts (Retry-After, pacing)
        self.stats = HostStats()
        self.ready = False  # in the scheduler's round-robin
        self.wake: asyncio.TimerHandle | None = None


class HostQueues:
    """Grants request slots per host; `acquire` waits for the host's turn."""

    def __init__(self, settings, hold_limit: int | None = None):
        self.settings = settings
        self.hold_limit = hold_limit
        self.hosts: dict[str, Host] = {}
        self._ready: collections.deque[Host] = collections.deque()
        self._total = 0  # requests in flight
        self._held = 0  # requests in flight + bodies not yet released
        self._interval = 1.0 / settings.per_host_rps if settings.per_host_rps > 0 else 0.0

    def close(self) -> None:
        for host in self.hosts.values():
            if host.wake is not None:
                host.wake.cancel()

    def host(self, name: str) -> Host:
        host = self.hosts.get(name)
        if host is None:
            s = self.settings
            if name == FILE_HOST:
                limit = HostLimit(0, min(s.concurrency, FILE_READS_IN_FLIGHT), adaptive=False)
            else:
                limit = HostLimit(
                    s.host_start_concurrency, s.per_host_concurrency, s.probe_after_s, s.adaptive
                )
            host = self.hosts[name] = Host(name, limit)
        return host

    def _mark_ready(self, host: Host) -> None:
        if not host.ready and host.queue:
            host.ready = True
            self._ready.append(host)

    def _pump(self) -> None:
        """Start what may start: hosts take turns, each within its own limit."""
        now = time.monotonic()
        ceiling = self.settings.concurrency
        while self._ready and self._total < ceiling:
            if self.hold_limit is not None and self._held >= self.hold_limit:
                return
            host = self._ready.popleft()
            host.ready = False
            while host.queue and host.queue[0].done():  # cancelled while waiting
                host.queue.popleft()
            if not host.queue or host.in_flight >= host.limit.slots:
                continue  # back in turn when one of its requests ends
            if host.not_before > now:
                if host.not_before != math.inf:  # inf: a paced request is on its way
                    self._sleep_until(host, host.not_before)
                continue
            waiter = host.queue.popleft()
            host.in_flight += 1
            self._total += 1
            self._held += 1
            if self._interval:  # paced: the next waits until this one has really started
                host.not_before = math.inf
            waiter.set_result(host.in_flight)
            self._mark_ready(host)

    def _sleep_until(self, host: Host, when: float) -> None:
        if host.wake is None and when != math.inf:
            loop = asyncio.get_running_loop()
            host.wake = loop.call_at(loop.time() + (when - time.monotonic()), self._wake, host)

    def _wake(self, host: Host) -> None:
        host.wake = None
        self._mark_ready(host)
        self._pump()

    async def acquire(self, host: Host) -> int:
        """Wait for the host's turn; returns its requests in flight (this one included)."""
        waiter = asyncio.get_running_loop().create_future()
        host.queue.append(waiter)
        self._mark_ready(host)
        self._pump()
        try:
            in_flight = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted, then cancelled
                self._paced_start(host)
                self.end_request(host, keep_body=False)
            raise
        self._paced_start(host)
        return in_flight

    def _paced_start(self, host: Host) -> None:
        """With pacing, the host's next start is one interval after this one's real start
        (not its grant: a busy loop would otherwise let two starts bunch up)."""
        if self._interval:
            host.not_before = time.monotonic() + self._interval
            self._sleep_until(host, host.not_before)

    def end_request(self, host: Host, keep_body: bool) -> None:
        host.in_flight -= 1
        self._total -= 1
        if not keep_body:
            self._held -= 1
        self._mark_ready(host)
        self._pump()

    def release_body(self) -> None:
        self._held -= 1
        self._pump()

    def pause(self, host: Host, seconds: float) -> None:
        """Nothing new starts to `host` for `seconds` (Retry-After)."""
        host.not_before = max(host.not_before, time.monotonic() + seconds)
        self._sleep_until(host, host.not_before)
