"""HTTP validators of a fetched image (ETag, Last-Modified) and the conditional request that asks
whether it changed.

A revalidating build (`build --revalidate`) sends the validators kept with a stored image as
`If-None-Match` / `If-Modified-Since`: `304 Not Modified` keeps the stored image without a body,
`200` brings the new bytes, `404` / `410` is a takedown. The downloader counts these answers per
host (`revalidated_*` columns of `hosts.status.parquet`) beside its other figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa

from treeoflife.io import write_parquet_atomic
from treeoflife.sources.host_stats import HOST_REPORT_SCHEMA
from treeoflife.vocabulary import http_reason

MAX_VALIDATOR_CHARS = 512  # a longer header value is not kept (nor ever sent back)

UNCHANGED = "unchanged"  # 304 to a conditional request
CHANGED = "changed"  # 200 to a conditional request: a new body
GONE = "gone"  # 404 / 410 to a conditional request: taken down
OUTCOMES = (UNCHANGED, CHANGED, GONE)
_GONE_REASONS = frozenset({http_reason(404), http_reason(410)})

HOST_REPORT_WITH_REVALIDATION = pa.schema(
    [*HOST_REPORT_SCHEMA, *(pa.field(f"revalidated_{o}", pa.int64(), False) for o in OUTCOMES)]
)


def _clean(value: str | None) -> str | None:
    """A header value safe to send back: printable ASCII, bounded; else None (not kept)."""
    if not value or len(value) > MAX_VALIDATOR_CHARS:
        return None
    if not value.isascii() or not value.isprintable():
        return None
    return value


@dataclass(frozen=True)
class Validators:
    """What a server said identifies the version of a resource it sent."""

    etag: str | None = None
    last_modified: str | None = None

    @classmethod
    def of(cls, etag: str | None, last_modified: str | None) -> Validators | None:
        """The validators worth keeping (None: the server sent none usable)."""
        found = cls(_clean(etag), _clean(last_modified))
        return found if found.etag or found.last_modified else None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Validators | None:
        return cls.of(headers.get("ETag"), headers.get("Last-Modified"))

    def request_headers(self) -> dict[str, str]:
        """The conditional request's headers (a server honouring If-None-Match ignores
        If-Modified-Since: RFC 9110 13.2.2)."""
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers

    def updated_by(self, answer: Validators | None) -> Validators:
        """After a 304: what the answer repeats or updates, the rest as before."""
        if answer is None:
            return self
        return Validators(answer.etag or self.etag, answer.last_modified or self.last_modified)


def revalidation_outcome(http_status: int | None, reason: str | None) -> str | None:
    """What the answer to a conditional request says about the stored image (None: nothing,
    e.g. a timeout: the row fails or succeeds as any fetch would)."""
    if http_status == 304 and reason is None:
        return UNCHANGED
    if reason is None and http_status is not None and 200 <= http_status < 300:
        return CHANGED
    if reason in _GONE_REASONS:
        return GONE
    return None


def report_columns(counts: Mapping[str, int] | None) -> dict[str, int]:
    """The `revalidated_*` columns of one host's report row."""
    counts = counts or {}
    return {f"revalidated_{o}": counts.get(o, 0) for o in OUTCOMES}


def describe_revalidated(row: Mapping) -> str:
    """The host log line's revalidation part ('' when nothing was revalidated)."""
    counts = [(o, row.get(f"revalidated_{o}", 0)) for o in OUTCOMES]
    if not any(n for _, n in counts):
        return ""
    return ", revalidated " + " / ".join(f"{n} {o}" for o, n in counts)


def write_host_report(path, rows: list[dict]) -> None:
    """The per-host report with its revalidation columns."""
    rows = sorted(rows, key=lambda r: (-r["requests"], r["host"]))
    table = pa.Table.from_pylist(rows, schema=HOST_REPORT_WITH_REVALIDATION)
    write_parquet_atomic(table, path)
