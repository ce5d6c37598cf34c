"""How many requests one host gets at once: adaptive, like TCP congestion control.

Each host starts with a few requests in flight and grows: by one per answer while below its
slow-start threshold (doubling every round trip), then by 1/limit per answer (one per round
trip) while its time to first byte stays near the lowest seen lately. It backs off:

- on 429 (or 503) from a request that started with `n` in flight: the host told us `n` is too
  many, so the limit drops to `n - 1` and that level becomes a learned ceiling; the ceiling is
  probed one step higher only after `probe_after_s` without a rate limit (so a host that
  limits at K in flight sees about one 429 per probe period, not one per growth cycle);
- on timeouts, connection errors and other 5xx: multiplicative decrease (x0.7);
- on rising latency: no growth while the mean time to first byte is above twice the lowest
  seen lately plus 100 ms (something queues), x0.8 above four times plus 500 ms (the host
  struggles). Loose bounds on purpose: a busy client inflates what it measures too.

A burst of failures from requests that were already in flight counts once (as TCP reacts once
per window). The configured ceiling always holds. Scrapy's AutoThrottle (delay from latency /
target concurrency; errors never speed it up) and TCP's AIMD (RFC 5681) are the models.
"""

from __future__ import annotations

import math

LATENCY_SLACK_S = 0.1  # latency counts as rising above 2 x baseline + this
_EWMA = 0.1  # weight of a new latency sample
_WINDOW = 64  # answers per baseline window (baseline = min over this and the previous window)


class HostLimit:
    """The adaptive in-flight limit of one host (pure state: the caller passes the clock)."""

    __slots__ = (
        "value",
        "ceiling",
        "learned",
        "ssthresh",
        "probe_after_s",
        "adaptive",
        "latency",
        "_base_prev",
        "_base_cur",
        "_seen",
        "last_decrease",
        "last_limited",
        "peak",
        "decreases",
    )

    def __init__(self, start: int, ceiling: int, probe_after_s: float = 30.0, adaptive=True):
        self.ceiling = max(1, ceiling)
        self.adaptive = adaptive
        self.value = float(min(max(1, start), self.ceiling)) if adaptive else float(self.ceiling)
        self.learned: int | None = None  # the level a rate-limiting host accepts
        self.ssthresh = float(self.ceiling)
        self.probe_after_s = probe_after_s
        self.latency: float | None = None  # EWMA of time to first byte, seconds
        self._base_prev = math.inf
        self._base_cur = math.inf
        self._seen = 0
        self.last_decrease = -math.inf  # monotonic time of the last decrease
        self.last_limited = -math.inf  # monotonic time of the last 429 / 503
        self.peak = int(self.value)
        self.decreases = 0

    @property
    def slots(self) -> int:
        """Requests this host may have in flight now."""
        return max(1, int(self.value))

    @property
    def baseline(self) -> float:
        return min(self._base_prev, self._base_cur)

    def _cap(self, now: float) -> float:
        cap = float(self.ceiling)
        if self.learned is not None:
            if now - self.last_limited >= self.probe_after_s and self.value >= self.learned:
                self.learned += 1  # probe one step higher
                self.last_limited = now
            cap = min(cap, float(self.learned))
        return cap

    def _decrease(self, to: float, now: float) -> None:
        self.value = max(1.0, min(self.value, to))
        self.ssthresh = self.value
        self.last_decrease = now
        self.decreases += 1

    def on_latency(self, ttfb: float) -> None:
        """Any HTTP answer: its time to first byte feeds the latency estimate."""
        self.latency = (
            ttfb if self.latency is None else self.latency + _EWMA * (ttfb - self.latency)
        )
        self._base_cur = min(self._base_cur, ttfb)
        self._seen += 1
        if self._seen >= _WINDOW:
            self._base_prev, self._base_cur, self._seen = self._base_cur, math.inf, 0

    def on_success(self, started: float, now: float) -> None:
        """A 2xx answer from a request started at `started`."""
        if not self.adaptive:
            return
        assert self.latency is not None, "on_latency first"
        base = self.baseline
        if self.latency > 4 * base + 5 * LATENCY_SLACK_S:  # the host is struggling: back off
            if started > self.last_decrease:
                self._decrease(self.value * 0.8, now)
            return
        if self.latency > 2 * base + LATENCY_SLACK_S:  # queueing somewhere: hold, do not grow
            return
        step = 1.0 if self.value < self.ssthresh else 1.0 / self.value
        self.value = min(self.value + step, self._cap(now))
        self.peak = max(self.peak, int(self.value))

    def on_rate_limited(self, started: float, now: float, in_flight_then: int) -> None:
        """A 429 / 503: the host refuses what we send (in_flight_then: our requests in flight
        when this one started, itself included)."""
        self.last_limited = now
        if not self.adaptive or started <= self.last_decrease:
            return
        level = max(1, min(int(self.value), in_flight_then) - 1)
        if self.learned is not None and level >= self.learned:
            level = max(1, self.learned - 1)  # limited below what it accepted before
        self.learned = level
        self._decrease(float(level), now)

    def on_failure(self, started: float, now: float) -> None:
        """A timeout, connection error or 5xx other than 503."""
        if self.adaptive and started > self.last_decrease:
            self._decrease(self.value * 0.7, now)
