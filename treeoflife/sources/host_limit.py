"""How many requests one host gets at once: adaptive, like TCP congestion control.

Each host starts with a few requests in flight and grows: by one per answer while below its
slow-start threshold (doubling every round trip), then by 1/limit per answer (one per round
trip) while its time to first byte stays near the lowest seen lately. It backs off:

- on a 429 (or a 503 with Retry-After) from a request that started with `n` in flight, above
  the level the host has accepted so far: the host told us `n` is too many, so the limit drops
  to `n - 1` and that level becomes a learned ceiling, probed one step higher only after
  `probe_after_s` without a rate limit (so a host that limits at K in flight sees about one
  429 per probe period, not one per growth cycle). A 429 at a level the host accepts is about
  that resource, not about us (a few URLs that always answer 429): it lowers nothing unless
  429s become more than 30% of the host's recent answers. Only a host-wide signal pauses
  the whole host for its Retry-After (`on_rate_limited` says which it was);
- on timeouts, connection errors and 5xx without Retry-After once they are more than a quarter
  of the host's recent outcomes: multiplicative decrease (x0.7), at most once a second, and no
  growth meanwhile. A few URLs that always fail say nothing about the host (real hosts have
  broken files; on loopback a round trip is a millisecond, and cutting once per round trip
  would take such a host down to one request at a time);
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
_LIMITED_EWMA = 0.05  # weight of one answer in the share of 429s (~20 answers of memory)
_LIMITED_SHARE = 0.3  # above this share of 429s, even 429s at an accepted level count
_PROBE_GRACE_S = 10.0  # a 429 this soon after a probe, at the probed level, undoes the probe
_COOLDOWN_S = 1.0  # failures and latency cut the limit at most once per this
_FAILED_SHARE = 0.25  # above this share of failed outcomes the host counts as struggling


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
        "limited_share",
        "failed_share",
        "probed_at",
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
        self.limited_share = 0.0  # EWMA of "this answer was a 429"
        self.failed_share = 0.0  # EWMA of "this attempt failed" (timeout, reset, 5xx)
        self.probed_at = -math.inf

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
                self.probed_at = now
            cap = min(cap, float(self.learned))
        return cap

    def _decrease(self, to: float, now: float) -> None:
        self.value = max(1.0, min(self.value, to))
        self.ssthresh = self.value
        self.last_decrease = now
        self.decreases += 1

    def on_latency(self, ttfb: float, limited: bool = False) -> None:
        """Any HTTP answer (`limited`: a 429): its time to first byte feeds the latency
        estimate, its status the share of 429s."""
        self.limited_share += _LIMITED_EWMA * (float(limited) - self.limited_share)
        self.latency = (
            ttfb if self.latency is None else self.latency + _EWMA * (ttfb - self.latency)
        )
        self._base_cur = min(self._base_cur, ttfb)
        self._seen += 1
        if self._seen >= _WINDOW:
            self._base_prev, self._base_cur, self._seen = self._base_cur, math.inf, 0

    def on_success(self, started: float, now: float) -> None:
        """A 2xx answer from a request started at `started`."""
        self.failed_share -= _LIMITED_EWMA * self.failed_share
        if not self.adaptive:
            return
        assert self.latency is not None, "on_latency first"
        if self.failed_share > _FAILED_SHARE:  # a struggling host: do not grow
            return
        base = self.baseline
        if self.latency > 4 * base + 5 * LATENCY_SLACK_S:  # the host is struggling: back off
            if self._may_cut(started, now):
                self._decrease(self.value * 0.8, now)
            return
        if self.latency > 2 * base + LATENCY_SLACK_S:  # queueing somewhere: hold, do not grow
            return
        step = 1.0 if self.value < self.ssthresh else 1.0 / self.value
        self.value = min(self.value + step, self._cap(now))
        self.peak = max(self.peak, int(self.value))

    def on_rate_limited(self, started: float, now: float, in_flight_then: int) -> bool:
        """A 429 (or 503 with Retry-After): in_flight_then is our requests in flight when this
        one started, itself included. True when it is about the host (pause it all), False when
        about the resource (only this request waits)."""
        if not self.adaptive:
            self.last_limited = now
            return True
        if started <= self.last_decrease:  # the same burst as a decrease already made
            self.last_limited = now
            return True
        probe_undone = (
            self.learned is not None
            and now - self.probed_at < min(_PROBE_GRACE_S, self.probe_after_s / 3)
            and in_flight_then >= self.learned
        )
        above = self.learned is None or in_flight_then > self.learned
        if not (above or probe_undone or self.limited_share > _LIMITED_SHARE):
            return False
        self.last_limited = now
        level = max(1, min(int(self.value), in_flight_then) - 1)
        if self.learned is not None and level >= self.learned:
            level = max(1, self.learned - 1)  # limited below what it accepted before
        self.learned = level
        self._decrease(float(level), now)
        return True

    def on_failure(self, started: float, now: float) -> None:
        """A timeout, connection error or 5xx without Retry-After."""
        self.failed_share += _LIMITED_EWMA * (1.0 - self.failed_share)
        if self.adaptive and self.failed_share > _FAILED_SHARE and self._may_cut(started, now):
            self._decrease(self.value * 0.7, now)

    def _may_cut(self, started: float, now: float) -> bool:
        """Once per burst (requests started before the last cut are that burst) and at most
        once per cooldown."""
        return started > self.last_decrease and now - self.last_decrease >= _COOLDOWN_S
