"""Per-host figures of a download run: requests, bytes, errors by kind, latency, concurrency.

Kept in a few counters and a fixed log-scale latency histogram per host (p95 without keeping
samples: memory does not grow with requests). Written beside the EOL catalog as
`hosts.status.parquet` (like the part status tables, it depends on the network, not only on the
inputs, so it is not part of the reproducible outputs) and logged as one line per busy host.
"""

from __future__ import annotations

import json
import math
from array import array
from pathlib import Path

import pyarrow as pa

from treeoflife.io import write_parquet_atomic

_BUCKETS = 80  # 4 per doubling from 1 ms: up to ~2^20 ms
_PER_DOUBLING = 4

HOST_REPORT_SCHEMA = pa.schema(
    [
        pa.field("host", pa.string(), nullable=False),
        pa.field("requests", pa.int64(), nullable=False),
        pa.field("ok", pa.int64(), nullable=False),
        pa.field("bytes", pa.int64(), nullable=False),
        pa.field("errors", pa.string(), nullable=False),  # JSON {kind: count}
        pa.field("http_429", pa.int64(), nullable=False),
        pa.field("mean_latency_s", pa.float64()),  # time to first byte
        pa.field("p95_latency_s", pa.float64()),
        pa.field("final_concurrency", pa.int64(), nullable=False),
        pa.field("peak_concurrency", pa.int64(), nullable=False),
        pa.field("learned_ceiling", pa.int64()),  # set after a 429 / 503
        pa.field("decreases", pa.int64(), nullable=False),
    ]
)


def _bucket(seconds: float) -> int:
    ms = max(seconds * 1000.0, 1.0)
    return min(_BUCKETS - 1, int(math.log2(ms) * _PER_DOUBLING))


def _bucket_top(i: int) -> float:
    return 2 ** ((i + 1) / _PER_DOUBLING) / 1000.0


class HostStats:
    __slots__ = ("requests", "ok", "bytes", "errors", "lat_n", "lat_sum", "hist")

    def __init__(self) -> None:
        self.requests = 0
        self.ok = 0
        self.bytes = 0
        self.errors: dict[str, int] = {}
        self.lat_n = 0
        self.lat_sum = 0.0
        self.hist = array("I", bytes(4 * _BUCKETS))

    def answered(self, ttfb: float) -> None:
        self.lat_n += 1
        self.lat_sum += ttfb
        self.hist[_bucket(ttfb)] += 1

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    @property
    def mean_latency(self) -> float | None:
        return self.lat_sum / self.lat_n if self.lat_n else None

    @property
    def p95_latency(self) -> float | None:
        """Upper edge of the histogram bucket holding the 95th percentile (within 19%)."""
        if not self.lat_n:
            return None
        need, seen = math.ceil(0.95 * self.lat_n), 0
        for i, n in enumerate(self.hist):
            seen += n
            if seen >= need:
                return _bucket_top(i)
        return _bucket_top(_BUCKETS - 1)


def report_row(host: str, stats: HostStats, limit) -> dict:
    return {
        "host": host,
        "requests": stats.requests,
        "ok": stats.ok,
        "bytes": stats.bytes,
        "errors": json.dumps(dict(sorted(stats.errors.items()))),
        "http_429": stats.errors.get("http_429", 0),
        "mean_latency_s": stats.mean_latency,
        "p95_latency_s": stats.p95_latency,
        "final_concurrency": limit.slots,
        "peak_concurrency": limit.peak,
        "learned_ceiling": limit.learned,
        "decreases": limit.decreases,
    }


def write_host_report(path: Path, rows: list[dict]) -> None:
    rows = sorted(rows, key=lambda r: (-r["requests"], r["host"]))
    write_parquet_atomic(pa.Table.from_pylist(rows, schema=HOST_REPORT_SCHEMA), path)


def describe(row: dict) -> str:
    """One log line for a host."""
    mean = row["mean_latency_s"]
    p95 = row["p95_latency_s"]
    lat = f"{mean:.3f}s mean / {p95:.3f}s p95" if mean is not None else "no answers"
    return (
        f"{row['host']}: {row['requests']} requests, {row['ok']} ok, "
        f"{row['bytes'] / 2**20:.1f} MiB, errors {row['errors']}, {lat}, concurrency "
        f"{row['final_concurrency']} (peak {row['peak_concurrency']}"
        + (f", learned {row['learned_ceiling']}" if row["learned_ceiling"] is not None else "")
        + ")"
    )
