"""Transient failures of an earlier run, fetched again by the next run (a few times at most).

A finished EOL part is kept by later runs, but rows that failed for a reason that may pass
(timeout, connection error, 5xx, 429: `download.is_transient`) are fetched again, for at most
`sources.eol.rerun_transient` later runs (the status table's `runs` column counts them). Only
those rows go to the network: every other row keeps its earlier outcome, its image read back
from the part's own image store while the new store is written, so the rewritten part is what
a run that had fetched them all at once would have written, and nothing it has is refetched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from treeoflife.images import NormalizedImage
from treeoflife.io import read_image_bytes
from treeoflife.sources.download import is_transient
from treeoflife.vocabulary import IngestStatus

_STATUS_COLUMNS = ["key", "status", "reason"]


def refetch_keys(status_path: Path, max_reruns: int) -> set[str]:
    """Keys of the part's rows to fetch again (empty: the part stays as it is)."""
    if max_reruns <= 0 or not status_path.exists():
        return set()
    table = pq.read_table(status_path)
    runs = table.column("runs").to_pylist() if "runs" in table.column_names else None
    out = set()
    cols = [table.column(c).to_pylist() for c in _STATUS_COLUMNS]
    for i, (key, status, reason) in enumerate(zip(*cols, strict=True)):
        done_runs = (runs[i] if runs is not None else None) or 1
        if status == "failed" and is_transient(reason) and done_runs <= max_reruns:
            out.add(key)
    return out


def pending_reruns(status_paths: list[Path], max_reruns: int) -> int:
    """Rows across parts that the next run would fetch again (a build is not up to date
    while this is above zero)."""
    return sum(len(refetch_keys(p, max_reruns)) for p in status_paths)


@dataclass
class PartRerun:
    """What an earlier run of one part left: rows to fetch again and everything else. The
    catalog part decides a kept row's outcome (it is written first on a rerun: a run killed
    in between fetches the same rows again, and never loses one)."""

    refetch: set[str]
    status: dict[str, dict]  # earlier status rows, by key
    outcome: dict[str, str | None]  # key -> earlier failure reason (None: stored)
    stored: dict[str, tuple]  # key -> (image_file, offset, size, md5, width, height) of ok rows
    data_root: Path

    @classmethod
    def load(cls, status_path: Path, catalog_path: Path, data_root: Path, refetch: set[str]):
        status = {r["key"]: r for r in pq.read_table(status_path).to_pylist()}
        columns = ["key", "status", "reason", "image_file", "image_offset", "image_size", "md5"]
        catalog = pq.read_table(catalog_path, columns=[*columns, "width", "height"]).to_pylist()
        outcome = {
            r["key"]: None if r["status"] == IngestStatus.OK else r["reason"] for r in catalog
        }
        stored = {
            r["key"]: (
                r["image_file"],
                r["image_offset"],
                r["image_size"],
                r["md5"],
                r["width"],
                r["height"],
            )
            for r in catalog
            if r["status"] == IngestStatus.OK
        }
        return cls(refetch, status, outcome, stored, data_root)

    def kept_outcome(self, key: str) -> tuple[dict | None, str | None] | None:
        """(earlier status row, failure reason or None when stored) of a row not fetched again;
        None for a row to fetch."""
        if key in self.refetch or key not in self.outcome:
            return None
        return self.status.get(key), self.outcome[key]

    def runs(self, key: str) -> int:
        row = self.status.get(key)
        return ((row or {}).get("runs") or 1) if row is not None else 0

    def image(self, key: str) -> NormalizedImage:
        """The stored image of an ok row, read back from the part's current image store."""
        image_file, offset, size, md5, width, height = self.stored[key]
        data = read_image_bytes(self.data_root, image_file, offset, size)
        return NormalizedImage(data, width, height, converted=False, md5=md5)


class LazyImages(Sequence):
    """The images of a part, the kept ones read from the old store only as they are written
    (a part of originals is not held in memory twice)."""

    def __init__(self, items: list, rerun: PartRerun, keys: list[str], kept: set[str]):
        self._items = items
        self._rerun = rerun
        self._keys = keys
        self._kept = kept

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i):
        if self._keys[i] in self._kept and self._keys[i] in self._rerun.stored:
            return self._rerun.image(self._keys[i])
        return self._items[i]

    def __iter__(self) -> Iterator:
        return (self[i] for i in range(len(self)))
