"""The adaptive per-host limit as pure state (the clock is passed in): how it grows, how it
backs off, and that its ceilings hold."""

from __future__ import annotations

from treeoflife.sources.host_limit import HostLimit


def answer(limit: HostLimit, t: float, ttfb: float = 0.1, started: float | None = None) -> None:
    limit.on_latency(ttfb)
    limit.on_success(t - ttfb if started is None else started, t)


def test_slow_start_doubles_per_round_then_grows_by_one_and_stops_at_the_ceiling():
    limit = HostLimit(start=4, ceiling=64)
    t = 0.0
    for _ in range(4):  # one round: 4 answers
        t += 0.01
        answer(limit, t)
    assert limit.slots == 8
    for _ in range(200):
        t += 0.01
        answer(limit, t)
    assert limit.slots == 64 and limit.peak == 64  # the configured ceiling holds


def test_a_429_sets_the_level_the_host_accepts_and_a_burst_counts_once():
    limit = HostLimit(start=4, ceiling=64, probe_after_s=30.0)
    t = 0.0
    for _ in range(20):
        t += 0.01
        answer(limit, t)
    assert limit.slots > 10
    # the host refuses a request that started with 7 in flight: 6 is what it accepts
    limit.on_rate_limited(started=t, now=t + 0.1, in_flight_then=7)
    assert (limit.slots, limit.learned) == (6, 6)
    # more 429s from requests started before that decrease: the same event, no new decrease
    limit.on_rate_limited(started=t, now=t + 0.12, in_flight_then=7)
    assert limit.slots == 6 and limit.decreases == 1
    # growth stops at the learned level until the probe period has passed
    t += 0.2
    for _ in range(100):
        t += 0.01
        answer(limit, t)
    assert limit.slots == 6
    t += 30.0
    answer(limit, t)
    assert limit.learned == 7  # probe one step higher, once per period
    for _ in range(100):
        t += 0.01
        answer(limit, t)
    assert limit.slots == 7


def test_a_lone_429_at_an_accepted_level_is_about_the_resource_many_are_about_the_host():
    limit = HostLimit(start=8, ceiling=64)
    limit.on_latency(0.1, limited=True)
    assert limit.on_rate_limited(started=1.0, now=1.1, in_flight_then=8)  # first: the host
    assert limit.learned == 7
    for i in range(40):  # the host accepts 7 in flight
        limit.on_latency(0.1)
        limit.on_success(started=1.2 + i * 0.01, now=1.3 + i * 0.01)
    limit.on_latency(0.1, limited=True)
    # one 429 at 7, the accepted level: that URL's own answer, nothing lowered, no pause
    assert not limit.on_rate_limited(started=2.0, now=2.1, in_flight_then=7)
    assert limit.learned == 7 and limit.slots == 7
    for _ in range(8):  # 429s become a good share of the answers: the host limits lower now
        limit.on_latency(0.1, limited=True)
    assert limit.on_rate_limited(started=2.2, now=2.3, in_flight_then=7)
    assert limit.learned == 6 and limit.slots == 6


def test_failures_cut_once_they_are_a_quarter_of_the_outcomes_at_most_once_a_second():
    limit = HostLimit(start=32, ceiling=64)
    t = 0.0
    for i in range(60):  # one failing URL in ten: broken files, not a struggling host
        t += 0.01
        if i % 10 == 0:
            limit.on_failure(started=t - 0.005, now=t)
        else:
            answer(limit, t)
    assert limit.decreases == 0
    for i in range(10):  # now most attempts fail
        limit.on_failure(started=t + 0.01 * i, now=t + 0.01 * i + 0.005)
    assert limit.decreases == 1 and limit.slots == int(limit.peak * 0.7)
    for i in range(40):  # still failing: at most one cut per second, never below one
        limit.on_failure(started=t + 2 + i, now=t + 2.5 + i)
    assert limit.slots == 1


def test_rising_latency_stops_growth_and_a_struggling_host_gets_fewer():
    limit = HostLimit(start=10, ceiling=64)
    t = 0.0
    for _ in range(10):
        t += 0.01
        answer(limit, t, ttfb=0.1)
    for _ in range(30):  # queueing: 0.4 s > 2 x 0.1 + 0.1 once the mean has moved up
        t += 0.01
        answer(limit, t, ttfb=0.4)
    grown = limit.slots
    for _ in range(30):
        t += 0.01
        answer(limit, t, ttfb=0.4)
    assert limit.slots == grown and limit.decreases == 0
    for _ in range(30):  # struggling: 2 s > 4 x 0.1 + 0.5
        t += 1.0
        answer(limit, t, ttfb=2.0)
    assert limit.slots < grown


def test_not_adaptive_is_the_fixed_ceiling():
    limit = HostLimit(start=2, ceiling=8, adaptive=False)
    assert limit.slots == 8
    limit.on_rate_limited(started=1.0, now=1.1, in_flight_then=8)
    limit.on_failure(started=1.0, now=1.1)
    assert limit.slots == 8
