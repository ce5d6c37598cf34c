"""The HTTP validators kept with the stored EOL images, so `build --revalidate` can ask with a
conditional request whether an image changed (download_validators.py).

Each part's validators live beside its record, `state/parts/eol/part-%05d.validators.parquet`
(never in the release catalog: they are facts of the servers, not outputs): one row per stored
image fetched over http(s) whose server sent an ETag or Last-Modified, with the md5 of the
stored image they describe. A validator is only ever used with the stored image of that md5,
and written only for the row's image as written, so a run killed between a part's files (or a
stored image set aside by another run) can never pair an image with another image's
validators: without a match the image is fetched with a plain GET.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from treeoflife.config import BuildConfig
from treeoflife.io import write_parquet_atomic
from treeoflife.sources.download_validators import OUTCOMES, Validators
from treeoflife.sources.ingest import PART_NAME, IngestStats, catalog_dir
from treeoflife.sources.partstore import records_dir
from treeoflife.vocabulary import IngestStatus

log = logging.getLogger(__name__)

SOURCE = "eol"

VALIDATORS_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("md5", pa.string(), nullable=False),  # of the stored image they describe
        pa.field("etag", pa.string()),
        pa.field("last_modified", pa.string()),
    ]
)


UNCONDITIONAL = "unconditional"  # a stored image asked again with a plain GET (no validators)
REVALIDATION_COUNTS = (*OUTCOMES, UNCONDITIONAL)


@dataclasses.dataclass
class EolStats(IngestStats):
    """The ingest counts, and what a revalidating run learned of the stored remote images:
    unchanged (304), changed (200), gone (404 / 410), asked without validators."""

    revalidated: dict[str, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(REVALIDATION_COUNTS, 0)
    )

    def add_revalidated(self, counts: dict[str, int]) -> None:
        for name, n in counts.items():
            self.revalidated[name] = self.revalidated.get(name, 0) + n


@dataclasses.dataclass(frozen=True)
class KeptValidators:
    """Validators and the md5 of the stored image they were answered for."""

    md5: str
    validators: Validators


def validators_parquet(cfg: BuildConfig, index: int) -> Path:
    return records_dir(catalog_dir(cfg, SOURCE)) / (PART_NAME.format(index) + ".validators.parquet")


def matching(entries: tuple[KeptValidators, ...] | None, md5: str | None) -> Validators | None:
    """The validators answered for the image of `md5` (None: none kept for it)."""
    for entry in entries or ():
        if entry.md5 == md5:
            return entry.validators
    return None


class ValidatorIndex:
    """image id -> the validators kept for it, read from every part's file the first time it is
    asked (before any part of the run is rewritten: the runners plan a part before writing it).
    """

    def __init__(self, cfg: BuildConfig):
        self.folder = records_dir(catalog_dir(cfg, SOURCE))
        self._index: dict[str, tuple[KeptValidators, ...]] | None = None

    def _load(self) -> dict[str, tuple[KeptValidators, ...]]:
        index: dict[str, tuple[KeptValidators, ...]] = {}
        for path in sorted(self.folder.glob("part-*[0-9].validators.parquet")):
            try:
                rows = pq.read_table(path, schema=VALIDATORS_SCHEMA).to_pylist()
            except (OSError, pa.ArrowException) as exc:
                log.warning("%s unreadable (%s): its images are fetched with plain GETs", path, exc)
                continue
            for r in rows:
                found = Validators.of(r["etag"], r["last_modified"])
                if found is None:
                    continue
                entry = KeptValidators(r["md5"], found)
                have = index.get(r["image_id"], ())
                if entry not in have:
                    index[r["image_id"]] = (*have, entry)
        return index

    def load(self) -> None:
        """Read every part's validators (once): called before the run writes its first part."""
        if self._index is None:
            self._index = self._load()

    def get(self, iid: str | None) -> tuple[KeptValidators, ...] | None:
        self.load()
        return self._index.get(iid) if iid is not None else None


def write_validators(
    cfg: BuildConfig,
    index: int,
    table: pa.Table,
    ids: list,
    candidates: dict[str, tuple[KeptValidators, ...]],
) -> int:
    """Keep, for each row of the written catalog part, the validators answered for exactly its
    stored image (`candidates`: row key -> validators with the md5 they describe); returns
    how many. A part with none has no file (an older one is removed)."""
    path = validators_parquet(cfg, index)
    rows = []
    columns = table.select(["key", "status", "md5"]).to_pylist()
    for r, iid in zip(columns, ids, strict=True):
        if iid is None or r["status"] != IngestStatus.OK:
            continue
        found = matching(candidates.get(r["key"]), r["md5"])
        if found is not None:
            rows.append(
                {"key": r["key"], "image_id": iid, "md5": r["md5"], "etag": found.etag,
                 "last_modified": found.last_modified}
            )  # fmt: skip
    if rows:
        write_parquet_atomic(pa.Table.from_pylist(rows, schema=VALIDATORS_SCHEMA), path)
    else:
        path.unlink(missing_ok=True)
    return len(rows)
