"""EOL ingest: stream the media manifests, join page names, download and store the images.

Rows are the manifests' data lines, in manifest order, `rows_per_part` per part across all
manifests. Each part's downloads run concurrently (see `download.py`), decoding happens in the
worker pool, and the part is written in manifest order whatever the completion order. Beside
each catalog part, `part-%05d.status.parquet` records per-URL fetch details (attempts, elapsed
time...); it is written before the catalog part and, unlike it, is not byte-reproducible.
"""

from __future__ import annotations

import asyncio
import csv
import logging
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from treeoflife.config import BuildConfig
from treeoflife.errors import InputError
from treeoflife.images import NormalizedImage
from treeoflife.io import md5_hex, write_parquet_atomic
from treeoflife.progress import Progress, or_null
from treeoflife.records import eol_key
from treeoflife.sources.download import Downloader, DownloadSettings, FetchResult
from treeoflife.sources.ingest import (
    PART_NAME,
    REASON_DUPLICATE_KEY,
    REASON_MALFORMED,
    DecodePool,
    IngestStats,
    catalog_dir,
    clean,
    duplicate_of,
    fail,
    finish_stats,
    new_row,
    part_done,
    prepare_source_dirs,
    write_part,
)

log = logging.getLogger(__name__)

SOURCE = "eol"
REASON_NO_URL = "no_url"

COL_CONTENT = "EOL content ID"
COL_PAGE = "EOL page ID"
COL_SOURCE_URL = "Medium Source URL"
COL_COPY_URL = "EOL Full-Size Copy URL"
COL_LICENSE = "License Name"
COL_OWNER = "Copyright Owner"
REQUIRED_COLUMNS = (COL_CONTENT, COL_PAGE, COL_COPY_URL)

PAGE_FIELDS = (
    "scientific_name",
    "kingdom",
    "phylum",
    "class",
    "order",
    "family",
    "genus",
    "common_name",
)

STATUS_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
        pa.field("http_status", pa.int32()),
        pa.field("bytes", pa.int64()),
        pa.field("md5", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("attempts", pa.int32()),
        pa.field("elapsed", pa.float64()),
    ]
).with_metadata({"treeoflife.table": "eol_fetch_status", "treeoflife.version": "1"})
"""Per-URL fetch details of one EOL part (not reproducible: elapsed, attempts vary)."""

csv.field_size_limit(1 << 24)


def status_parquet(cfg: BuildConfig, index: int) -> Path:
    return catalog_dir(cfg, SOURCE) / (PART_NAME.format(index) + ".status.parquet")


def rewrite_url(url: str, mirror: dict[str, str], cfg: BuildConfig) -> str:
    """Apply the longest matching mirror prefix.

    A replacement that is an http(s):// or file:// URL replaces the prefix; any other value is a
    local folder (relative to the data root) and becomes a file:// URL.
    """
    for prefix in sorted(mirror, key=lambda p: (-len(p), p)):
        if url.startswith(prefix):
            target = mirror[prefix]
            rest = url[len(prefix) :]
            if target.startswith(("http://", "https://", "file://")):
                return target + rest
            folder = cfg.path(target).resolve().as_uri()
            if not folder.endswith("/") and not rest.startswith("/"):
                folder += "/"
            return folder + rest
    return url


def load_pages(cfg: BuildConfig) -> dict[int, tuple[str | None, ...]]:
    """page id -> (scientific_name, kingdom, ..., genus, common_name)."""
    spec = cfg.sources.eol.pages
    if spec is None:
        return {}
    path = cfg.path(spec)
    pages: dict[int, tuple[str | None, ...]] = {}
    bad = 0
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "page_id" not in reader.fieldnames:
                raise InputError(f"EOL pages {path}: no page_id column")
            for rec in reader:
                try:
                    page_id = int(str(rec.get("page_id")).strip())
                except ValueError:
                    bad += 1
                    continue
                pages[page_id] = tuple(clean(rec.get(f)) for f in PAGE_FIELDS)
    except OSError as exc:
        raise InputError(f"EOL pages {path}: {exc.strerror or exc}") from exc
    except (csv.Error, UnicodeDecodeError) as exc:
        raise InputError(f"EOL pages {path}: unreadable ({exc})") from exc
    if bad:
        log.warning("EOL pages %s: %d line(s) without an integer page_id ignored", path, bad)
    return pages


def iter_manifest_rows(cfg: BuildConfig, pages: dict) -> Iterator[tuple[dict, str | None]]:
    """(catalog row, fetch URL or None) for every manifest data line, in order."""
    seen: dict[str, int] = {}  # key -> occurrences
    for manifest_no, spec in enumerate(cfg.sources.eol.manifests):
        path = cfg.path(spec)
        try:
            fh = open(path, encoding="utf-8", newline="")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise InputError(f"EOL manifest {path}: {exc.strerror or exc}") from exc
        with fh:
            reader = csv.reader(fh)
            try:
                header = [h.strip() for h in next(reader)]
            except StopIteration:
                continue  # an empty manifest has no rows
            except (csv.Error, UnicodeDecodeError) as exc:
                raise InputError(f"EOL manifest {path}: unreadable header ({exc})") from exc
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise InputError(f"EOL manifest {path}: missing column(s) {', '.join(missing)}")
            col = {name: i for i, name in enumerate(header)}
            while True:
                line = reader.line_num + 1
                try:
                    fields = next(reader)
                except StopIteration:
                    break
                except (csv.Error, UnicodeDecodeError):
                    yield _malformed(manifest_no, line), None
                    continue
                if not fields:
                    continue
                yield _manifest_row(fields, header, col, manifest_no, line, pages, seen, cfg)


def _malformed(manifest_no: int, line: int) -> dict:
    return fail(new_row(f"eol/malformed/{manifest_no}:{line}", SOURCE), REASON_MALFORMED)


def _manifest_row(fields, header, col, manifest_no, line, pages, seen, cfg):
    if len(fields) != len(header):
        return _malformed(manifest_no, line), None
    try:
        content_id = int(fields[col[COL_CONTENT]].strip())
        page_id = int(fields[col[COL_PAGE]].strip())
    except ValueError:
        return _malformed(manifest_no, line), None

    def get(name: str) -> str | None:
        return clean(fields[col[name]]) if name in col else None

    row = new_row(eol_key(content_id, page_id), SOURCE)
    row["eol_content_id"] = content_id
    row["eol_page_id"] = page_id
    row["license"] = get(COL_LICENSE)
    row["rights_holder"] = get(COL_OWNER)
    row["source_url"] = get(COL_SOURCE_URL)
    names = pages.get(page_id)
    if names is not None:
        sci, kingdom, phylum, cls, order, family, genus, common = names
        row.update(
            verbatim_scientific_name=sci,
            verbatim_kingdom=kingdom,
            verbatim_phylum=phylum,
            verbatim_class=cls,
            verbatim_order=order,
            verbatim_family=family,
            verbatim_genus=genus,
            verbatim_common_name=common,
        )
    dup = duplicate_of(row["key"], seen)
    if dup is not None:
        row["key"] = dup
        return fail(row, REASON_DUPLICATE_KEY), None
    url = get(COL_COPY_URL)
    if url is None:
        return fail(row, REASON_NO_URL), None
    return row, rewrite_url(url, cfg.sources.eol.mirror, cfg)


def ingest_eol(
    cfg: BuildConfig,
    progress: Progress | None = None,
    *,
    settings: DownloadSettings | None = None,
    decode_workers: int | None = None,
) -> IngestStats:
    """Ingest the EOL manifests into catalog/eol and images/eol parts, downloading the images.

    `settings` overrides the download settings derived from the config (tests use it for short
    backoffs); `decode_workers=0` decodes inline.
    """
    ecfg = cfg.sources.eol
    if ecfg.rows_per_part <= 0:
        raise InputError("sources.eol.rows_per_part must be positive")
    settings = settings or DownloadSettings.from_config(ecfg)
    progress = or_null(progress)
    prepare_source_dirs(cfg, SOURCE)
    pages = load_pages(cfg)
    run = IngestStats(source=SOURCE)
    progress.start("ingest eol", None)
    try:
        with DecodePool(decode_workers) as pool:
            n_parts = asyncio.run(_ingest_parts(cfg, pages, settings, pool, run, progress))
    finally:
        progress.finish()
    return finish_stats(cfg, SOURCE, n_parts, run, {})


async def _ingest_parts(cfg, pages, settings, pool, run: IngestStats, progress) -> int:
    per_part = cfg.sources.eol.rows_per_part
    n_parts = 0
    async with Downloader(settings) as downloader:
        batch: list[tuple[dict, str | None]] = []
        for item in iter_manifest_rows(cfg, pages):
            batch.append(item)
            if len(batch) == per_part:
                await _part(cfg, n_parts, batch, downloader, pool, run)
                progress.advance(len(batch))
                n_parts += 1
                batch = []
        if batch:
            await _part(cfg, n_parts, batch, downloader, pool, run)
            progress.advance(len(batch))
            n_parts += 1
    return n_parts


async def _fetch_and_decode(
    url: str | None, downloader: Downloader, pool: DecodePool
) -> tuple[FetchResult | None, NormalizedImage | str | None]:
    if url is None:
        return None, None
    result = await downloader.fetch(url)
    if result.data is None:
        return result, result.reason
    data, result.data = result.data, None
    outcome = await asyncio.wrap_future(pool.submit(data))
    return result, outcome


async def _part(cfg, index, batch, downloader, pool, run: IngestStats) -> None:
    if part_done(cfg, SOURCE, index):
        run.parts_skipped += 1
        return
    results = await asyncio.gather(*(_fetch_and_decode(url, downloader, pool) for _, url in batch))
    rows = [row for row, _ in batch]
    images = [outcome for _, outcome in results]
    status_rows = []
    for (row, url), (fetch, outcome) in zip(batch, results, strict=True):
        ok = isinstance(outcome, NormalizedImage)
        status_rows.append(
            {
                "key": row["key"],
                "url": url,
                "status": "ok" if ok else "failed",
                "reason": None if ok else (outcome if isinstance(outcome, str) else row["reason"]),
                "http_status": fetch.http_status if fetch else None,
                "bytes": fetch.nbytes if fetch else None,
                "md5": md5_hex(outcome.data) if ok else None,
                "width": outcome.width if ok else None,
                "height": outcome.height if ok else None,
                "attempts": fetch.attempts if fetch else 0,
                "elapsed": fetch.elapsed if fetch else 0.0,
            }
        )
    write_parquet_atomic(
        pa.Table.from_pylist(status_rows, schema=STATUS_SCHEMA), status_parquet(cfg, index)
    )
    await asyncio.to_thread(write_part, cfg, SOURCE, index, rows, images)
    run.parts_written += 1
