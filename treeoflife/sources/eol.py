"""EOL ingest: stream the media manifests, join page names, download and store the images.

Rows are the manifests' data lines, in manifest order, `rows_per_part` per part across all
manifests. The manifests are streamed: memory holds the parts in flight and a compact set of
the keys seen (for duplicates), never the manifest. Up to `parts_in_flight` parts download at
once (see `download.py`) so the network never idles while a part waits for its slowest URL or
is being written; decoding and resizing happen in worker processes; each part is written in
manifest order whatever the completion order. Beside each catalog part,
`part-%05d.status.parquet` has one row per manifest row (ok / failed / skipped, HTTP status,
bytes, md5, size, attempts, elapsed); it is written before the catalog part and, unlike it, is
not byte-reproducible (attempts and elapsed depend on the servers).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import csv
import dataclasses
import functools
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from treeoflife.config import BuildConfig
from treeoflife.errors import InputError
from treeoflife.fanout import PartMapper
from treeoflife.images import NormalizedImage, ResizePolicy
from treeoflife.io import write_parquet_atomic
from treeoflife.layout import Layout
from treeoflife.procs import process_pool
from treeoflife.progress import Progress, or_null
from treeoflife.records import eol_key
from treeoflife.schemas import EOL_FETCH_STATUS
from treeoflife.sources.download import Downloader, DownloadSettings, FetchResult
from treeoflife.sources.download_validators import Validators, revalidation_outcome
from treeoflife.sources.eol_parts import PartPlan, is_remote, plan_part
from treeoflife.sources.eol_validators import (
    UNCONDITIONAL,
    EolStats,
    KeptValidators,
    ValidatorIndex,
    matching,
    validators_parquet,
    write_validators,
)
from treeoflife.sources.fetch_policy import FetchPolicy, public_url
from treeoflife.sources.ingest import (
    PART_NAME,
    DecodePool,
    IngestStats,
    catalog_dir,
    clean,
    fail,
    finish_stats,
    new_row,
    part_done,
    part_is_current,
    part_parquet,
    part_tar_relpath,
    prepare_source_dirs,
    remove_parts_from,
    reuse_index,
    write_part,
)
from treeoflife.sources.partstore import ReuseIndex, StoredImage, reuse_parquet
from treeoflife.sources.rerun import LazyImages, PartRerun, pending_reruns, refetch_keys
from treeoflife.sources.seen import SeenKeys
from treeoflife.storage import FsspecStorage, pull_files, shared_storage
from treeoflife.vocabulary import FetchStatus, Reason

log = logging.getLogger(__name__)

SOURCE = "eol"

_SKIP_REASONS = frozenset({Reason.NO_URL, Reason.DUPLICATE_KEY})

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


csv.field_size_limit(1 << 24)


def status_parquet(cfg: BuildConfig, index: int) -> Path:
    return catalog_dir(cfg, SOURCE) / (PART_NAME.format(index) + ".status.parquet")


def hosts_report(cfg: BuildConfig, index: int | None = None) -> Path:
    """The run's per-host download figures (one per download process: per part there)."""
    name = "hosts" if index is None else "hosts." + PART_NAME.format(index)  # not a part-* file
    return catalog_dir(cfg, SOURCE) / (name + ".status.parquet")


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
        with open(path, encoding="utf-8-sig", newline="") as fh:
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
    seen = SeenKeys()
    for manifest_no, spec in enumerate(cfg.sources.eol.manifests):
        path = cfg.path(spec)
        try:
            # utf-8-sig: a BOM is not part of the first column's name; surrogateescape: an
            # invalid byte spoils its own row only (see _manifest_row), never the rows after it
            fh = open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise InputError(f"EOL manifest {path}: {exc.strerror or exc}") from exc
        with fh:
            lines = _RecordLines(fh)
            reader = csv.reader(lines)
            try:
                header = [h.strip() for h in next(reader)]
            except StopIteration:
                continue  # an empty manifest has no rows
            except (csv.Error, UnicodeDecodeError) as exc:
                raise InputError(f"EOL manifest {path}: unreadable header ({exc})") from exc
            if not _is_utf8(header):
                raise InputError(f"EOL manifest {path}: header is not valid UTF-8")
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise InputError(f"EOL manifest {path}: missing column(s) {', '.join(missing)}")
            col = {name: i for i, name in enumerate(header)}

            row_of = functools.partial(
                _manifest_row, header=header, col=col, manifest_no=manifest_no, pages=pages,
                seen=seen, cfg=cfg,
            )  # fmt: skip

            while True:
                line = reader.line_num + 1
                lines.record.clear()
                try:
                    fields = next(reader)
                except StopIteration:
                    break
                except (csv.Error, UnicodeDecodeError):
                    fields = None
                if fields is not None and (len(fields) == len(header) or len(lines.record) < 2):
                    if fields:
                        yield row_of(fields, line=line)
                    continue
                if len(lines.record) < 2:
                    yield _malformed(manifest_no, line), None
                    continue
                # A bad record over several lines (a stray quote runs on to a later quote, or
                # to the field size limit): read its lines one by one, so only the line with
                # the stray quote is malformed, not every row the quote swallowed.
                for k, text in enumerate(list(lines.record)):
                    try:
                        one = next(csv.reader([text]), [])
                    except csv.Error:
                        one = None
                    if one is None:
                        yield _malformed(manifest_no, line + k), None
                    elif one:
                        yield row_of(one, line=line + k)


class _RecordLines:
    """The manifest's lines for csv.reader, keeping those of the record being read."""

    def __init__(self, fh):
        self._fh = fh
        self.record: list[str] = []

    def __iter__(self) -> _RecordLines:
        return self

    def __next__(self) -> str:
        text = next(self._fh)
        self.record.append(text)
        return text


def _malformed(manifest_no: int, line: int) -> dict:
    return fail(new_row(f"eol/malformed/{manifest_no}:{line}", SOURCE), Reason.MALFORMED_ROW)


_MAX_ID = 2**63 - 1  # ids are int64 in the catalog


def _is_utf8(fields: list[str]) -> bool:
    """False when a field holds bytes that were not UTF-8 (decoded as surrogate escapes)."""
    try:
        "".join(fields).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _manifest_row(fields, header, col, manifest_no, line, pages, seen, cfg):
    if len(fields) != len(header) or not _is_utf8(fields):
        return _malformed(manifest_no, line), None
    try:
        content_id = int(fields[col[COL_CONTENT]].strip())
        page_id = int(fields[col[COL_PAGE]].strip())
    except ValueError:
        return _malformed(manifest_no, line), None
    if not (0 <= content_id <= _MAX_ID and 0 <= page_id <= _MAX_ID):
        return _malformed(manifest_no, line), None

    def get(name: str) -> str | None:
        return clean(fields[col[name]]) if name in col else None

    row = new_row(eol_key(content_id, page_id), SOURCE)
    row["eol_content_id"] = content_id
    row["eol_page_id"] = page_id
    row["license"] = get(COL_LICENSE)
    row["rights_holder"] = get(COL_OWNER)
    row["source_url"] = public_url(get(COL_SOURCE_URL))  # never publish user:pass@
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
    dup = seen.duplicate_of(row["key"])
    if dup is not None:
        row["key"] = dup
        return fail(row, Reason.DUPLICATE_KEY), None
    url = get(COL_COPY_URL)
    if url is None:
        return fail(row, Reason.NO_URL), None
    return row, rewrite_url(url, cfg.sources.eol.mirror, cfg)


def resize_policy(cfg: BuildConfig) -> ResizePolicy:
    ecfg = cfg.sources.eol
    try:
        return ResizePolicy(ecfg.resize_mode, ecfg.image_size, ecfg.jpeg_quality)
    except ValueError as exc:
        raise InputError(f"sources.eol: {exc}") from exc


def ingest_eol(
    cfg: BuildConfig,
    progress: Progress | None = None,
    *,
    settings: DownloadSettings | None = None,
    decode_workers: int | None = None,
    map_parts: PartMapper | None = None,
) -> IngestStats:
    """Ingest the EOL manifests into catalog/eol and images/eol parts, downloading the images.

    `settings` overrides the download settings derived from the config (tests use it for short
    backoffs); `decode_workers` overrides the config's (0 decodes inline). `map_parts`
    (treeoflife.fanout) runs the parts elsewhere, e.g. on a Dask cluster through Prefect, each
    with its share of the download limits (`execution.parallelism` parts at once).
    """
    ecfg = cfg.sources.eol
    if ecfg.rows_per_part <= 0:
        raise InputError("sources.eol.rows_per_part must be positive")
    resize = resize_policy(cfg)
    settings = settings or DownloadSettings.from_config(ecfg)
    # the fetch policy always comes from the config (mirror folders, allowed hosts)
    settings = dataclasses.replace(settings, policy=FetchPolicy.for_eol(cfg))
    if decode_workers is None:
        decode_workers = ecfg.decode_workers
    progress = or_null(progress)
    prepare_source_dirs(cfg, SOURCE)
    pages = load_pages(cfg)
    run = EolStats(source=SOURCE)
    progress.start("ingest eol", None)
    try:
        if map_parts is not None:
            n_parts = _ingest_parts_mapped(cfg, pages, settings, resize, run, progress, map_parts)
        elif ecfg.processes > 1:
            n_parts = _ingest_parts_processes(cfg, pages, settings, resize, run, progress)
        else:
            with DecodePool(decode_workers, resize=resize) as pool:
                n_parts = asyncio.run(_ingest_parts(cfg, pages, settings, pool, run, progress))
    finally:
        progress.finish()
    remove_parts_from(cfg, SOURCE, n_parts)  # a shorter manifest: its rows are gone
    reuse_index(cfg, SOURCE).finish()  # every part of this plan is written
    total = finish_stats(cfg, SOURCE, n_parts, run, {})
    if ecfg.revalidate:
        r = run.revalidated
        log.info(
            "eol revalidate: %d unchanged (304), %d changed (200), %d gone (404/410), "
            "%d without validators (plain GET)",
            r["unchanged"], r["changed"], r["gone"], r[UNCONDITIONAL],
        )  # fmt: skip
    return EolStats(**dataclasses.asdict(total) | {"revalidated": dict(run.revalidated)})


def part_todo(
    cfg: BuildConfig,
    index: int,
    batch: list,
    reuse: ReuseIndex | None,
    validators: ValidatorIndex | None = None,
):
    """(plan, rerun) of a part to write, or None when the part on disk is current and has no
    transient failure to fetch again. With `sources.eol.revalidate` a part with remote URLs
    is written again, each stored remote image asked again whether it changed (a conditional
    request with the validators kept for it; a plain GET without)."""
    plan = plan_part(cfg, batch)
    revalidate = cfg.sources.eol.revalidate and any(is_remote(url) for _, url in batch)
    if not revalidate and part_is_current(cfg, SOURCE, index, plan.key):
        rerun = rerun_plan(cfg, index)
        return None if rerun is None else (_with_validators(plan, batch, validators), rerun)
    if reuse is not None:
        reuse.set_aside()
        reused, stored = {}, {}
        for (row, url), iid in zip(batch, plan.ids, strict=True):
            image = reuse.get(iid)
            if image is None:
                continue
            if revalidate and is_remote(url):  # what changed (or was taken down) is what it serves
                stored[row["key"]] = image
            else:
                reused[row["key"]] = image
        plan = dataclasses.replace(plan, reused=reused, stored=stored)
    return _with_validators(plan, batch, validators), None


def _with_validators(plan: PartPlan, batch: list, validators: ValidatorIndex | None) -> PartPlan:
    """The plan with the validators kept for its remote rows' images (read from every part
    before the first part is rewritten: a part's file is replaced with the part)."""
    if validators is None:
        return plan
    kept = {}
    for (row, url), iid in zip(batch, plan.ids, strict=True):
        entries = validators.get(iid) if is_remote(url) else None
        if entries:
            kept[row["key"]] = entries
    return dataclasses.replace(plan, validators=kept)


DECODE_THREADS_PER_PROCESS = 2


def _split_settings(settings: DownloadSettings, processes: int) -> DownloadSettings:
    """Each of `processes` download processes gets its share of the global and per-host limits."""
    return dataclasses.replace(
        settings,
        concurrency=max(1, settings.concurrency // processes),
        per_host_concurrency=max(1, settings.per_host_concurrency // processes),
        per_host_rps=settings.per_host_rps / processes,
    )


def _ingest_parts_processes(cfg, pages, settings, resize, run: IngestStats, progress) -> int:
    """Parts handed to download processes (forkserver), a bounded number queued at a time."""
    procs = cfg.sources.eol.processes
    share = _split_settings(settings, procs)
    n_parts = 0
    pending: dict[cf.Future, int] = {}

    def collect() -> None:
        done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
        for fut in done:
            progress.advance(pending.pop(fut))
            # a failed part stops the run (finished parts stay; rerun resumes)
            run.add_revalidated(fut.result())
            run.parts_written += 1

    reuse = reuse_index(cfg, SOURCE)
    validators = ValidatorIndex(cfg)
    with process_pool(procs, "forkserver") as executor:  # die with this process
        try:
            rows = iter_manifest_rows(cfg, pages)
            for index, batch in enumerate(_batches(rows, cfg.sources.eol.rows_per_part)):
                n_parts = index + 1
                todo = part_todo(cfg, index, batch, reuse, validators)
                if todo is None:
                    run.parts_skipped += 1
                    progress.advance(len(batch))
                    continue
                while len(pending) >= procs + 1:  # one queued behind the running ones
                    collect()
                plan = todo[0]
                fut = executor.submit(_download_part, cfg, index, batch, share, resize, plan)
                pending[fut] = len(batch)
            while pending:
                collect()
        finally:
            for fut in pending:
                fut.cancel()
    return n_parts


@dataclasses.dataclass(frozen=True)
class EolPart:
    """One manifest part to download: its rows (metadata and URLs, never image bytes)."""

    cfg: BuildConfig  # data_root absolute, so a worker with another working directory agrees
    index: int
    batch: list
    settings: DownloadSettings
    resize: ResizePolicy
    shared: FsspecStorage | None = None  # object storage the part goes to (download_eol_part)
    plan: PartPlan | None = None  # its key (None: computed where it runs)


def download_eol_part(item: EolPart) -> tuple[int, int, dict[str, int]]:
    """Download, decode and write one part (a finished part is kept); returns (part number,
    rows, revalidation counts).

    With `item.shared` (object storage: this worker may not see the driver's disk) the part is
    written in a scratch folder and its files are copied there, the catalog part last (its
    presence marks the part done); the driver pulls them (`_pull_part`)."""
    if item.shared is None:
        counts = _download_part(
            item.cfg, item.index, item.batch, item.settings, item.resize, item.plan
        )
        return item.index, len(item.batch), counts
    rels = _part_files(item.cfg, item.index)
    if item.shared.exists(rels[-1]):  # a retried task whose first attempt finished
        return item.index, len(item.batch), {}
    with tempfile.TemporaryDirectory(prefix="treeoflife-") as scratch:
        cfg = dataclasses.replace(item.cfg, data_root=scratch)
        # the stored images are not on this disk: fetched again with plain GETs
        plan = item.plan and dataclasses.replace(item.plan, reused={}, stored={})
        counts = _download_part(cfg, item.index, item.batch, item.settings, item.resize, plan)
        for rel in rels:
            if (Path(scratch) / rel).exists():
                item.shared.put(Path(scratch) / rel, rel)
    return item.index, len(item.batch), counts


def _part_files(cfg: BuildConfig, index: int) -> list[str]:
    """A part's files relative to the data root: image store, download status, validators,
    catalog part, its record (the one whose presence marks the part done: last)."""
    files = [
        cfg.root / part_tar_relpath(SOURCE, index),
        status_parquet(cfg, index),
        validators_parquet(cfg, index),
        part_parquet(cfg, SOURCE, index),
        reuse_parquet(part_parquet(cfg, SOURCE, index)),
    ]
    return [f.relative_to(cfg.root).as_posix() for f in files]


def _pull_part(cfg: BuildConfig, shared: FsspecStorage, index: int) -> None:
    """Copy a part a task left on shared storage into the data root, catalog part last (its
    image store is then known to be there: the hash and shard stages do not push it again)."""
    pull_files(shared, _part_files(cfg, index), cfg.root, Layout(cfg.root).shared_ledger)


def _ingest_parts_mapped(cfg, pages, settings, resize, run: IngestStats, progress, map_parts):
    """Parts handed to an injected mapper as they are read from the manifests (it bounds how
    many are in flight); each gets its share of the download limits. With `storage.shared`,
    the tasks leave their parts there and each is pulled into the data root as it finishes."""
    # The mapper's own width when it knows it (a cluster's threads), else the config's.
    share = _split_settings(settings, getattr(map_parts, "width", cfg.execution.parallelism))
    remote_cfg = dataclasses.replace(cfg, data_root=str(cfg.root.resolve()))
    shared = shared_storage(cfg)
    reuse = reuse_index(cfg, SOURCE)
    validators = ValidatorIndex(cfg)
    n_parts = 0

    def items() -> Iterator[EolPart]:
        nonlocal n_parts
        rows = iter_manifest_rows(cfg, pages)
        for index, batch in enumerate(_batches(rows, cfg.sources.eol.rows_per_part)):
            n_parts = index + 1
            todo = part_todo(cfg, index, batch, reuse, validators)
            if todo is None:
                run.parts_skipped += 1
                progress.advance(len(batch))
                continue
            yield EolPart(remote_cfg, index, batch, share, resize, shared, todo[0])

    for index, n_rows, counts in map_parts(download_eol_part, items()):
        if shared is not None:
            _pull_part(cfg, shared, index)
        progress.advance(n_rows)
        run.add_revalidated(counts)
        run.parts_written += 1
    prepare_source_dirs(cfg, SOURCE)  # drops what a worker that died mid-part left behind
    return n_parts


def _download_part(cfg, index: int, batch: list, settings, resize, plan=None) -> dict[str, int]:
    """Worker process: download, decode (threads) and write one part (kept when current);
    returns its revalidation counts."""
    plan = plan or plan_part(cfg, batch)
    rerun = None
    revalidate = cfg.sources.eol.revalidate and any(is_remote(url) for _, url in batch)
    if not revalidate and part_is_current(cfg, SOURCE, index, plan.key):
        rerun = rerun_plan(cfg, index)
        if rerun is None:  # a retried task that finished
            return {}
    stats = EolStats(source=SOURCE)

    async def run() -> None:
        hold = 2 * settings.concurrency + 4 * DECODE_THREADS_PER_PROCESS
        async with Downloader(settings, hold, hosts_report(cfg, index)) as downloader:
            await _part(cfg, index, batch, downloader, pool, stats, rerun, plan)

    with DecodePool(DECODE_THREADS_PER_PROCESS, resize=resize, threads=True) as pool:
        asyncio.run(run())
    return stats.revalidated


def _batches(items: Iterator, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def _ingest_parts(cfg, pages, settings, pool, run: EolStats, progress) -> int:
    """Download the parts, up to `parts_in_flight` at once; returns the number of parts."""
    ecfg = cfg.sources.eol
    window = asyncio.Semaphore(max(1, ecfg.parts_in_flight))
    # Rows between "fetch starts" and "decoded": bounds the raw bodies held in memory when the
    # network outruns the decoders (back-pressure instead of an unbounded decode queue).
    hold = 2 * settings.concurrency + 4 * max(1, pool.workers)
    running: set[asyncio.Task] = set()
    reuse = reuse_index(cfg, SOURCE)
    validators = ValidatorIndex(cfg)
    n_parts = 0

    async def one(index: int, batch: list, rerun: PartRerun | None, plan: PartPlan) -> None:
        try:
            await _part(cfg, index, batch, downloader, pool, run, rerun, plan)
            progress.advance(len(batch))
        finally:
            window.release()

    async with Downloader(settings, hold, hosts_report(cfg)) as downloader:
        try:
            for index, batch in enumerate(
                _batches(iter_manifest_rows(cfg, pages), ecfg.rows_per_part)
            ):
                n_parts = index + 1
                todo = part_todo(cfg, index, batch, reuse, validators)
                if todo is None:
                    run.parts_skipped += 1
                    progress.advance(len(batch))
                    continue
                plan, rerun = todo
                await window.acquire()
                for task in [t for t in running if t.done()]:
                    running.discard(task)
                    task.result()  # a failed part stops the run (its rows are not lost: rerun)
                task = asyncio.create_task(one(index, batch, rerun, plan))
                running.add(task)
            if running:
                await asyncio.gather(*running)
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
    return n_parts


async def _fetch_and_decode(
    url: str | None,
    downloader: Downloader,
    pool: DecodePool,
    validators: Validators | None = None,
    current: NormalizedImage | None = None,
) -> tuple[FetchResult | None, NormalizedImage | str | None]:
    """Fetch and decode one image; with the `validators` of the `current` stored image the
    fetch is conditional, and a 304 answer keeps `current` (no body, no decode)."""
    if url is None:
        return None, None
    async with downloader.fetching(url, validators) as result:  # the body counts until decoded
        if result.not_modified and validators is not None:
            result.validators = validators.updated_by(result.validators)
            return result, current
        if result.data is None:
            return result, result.reason
        data, result.data = result.data, None
        outcome = await asyncio.wrap_future(pool.submit(data))
    return result, outcome


def status_row(row: dict, url: str | None, fetch: FetchResult | None, outcome) -> dict:
    """The status-table row of one manifest row."""
    ok = isinstance(outcome, (NormalizedImage, StoredImage))
    reason = None if ok else (outcome if isinstance(outcome, str) else row["reason"])
    if ok:
        status = FetchStatus.OK
    elif fetch is None and reason in _SKIP_REASONS:
        status = FetchStatus.SKIPPED
    else:
        status = FetchStatus.FAILED
    return {
        "key": row["key"],
        "url": public_url(url),
        "status": status,
        "reason": reason,
        "http_status": fetch.http_status if fetch else None,
        "bytes": fetch.nbytes if fetch else None,
        "md5": outcome.md5 if ok else None,
        "width": outcome.width if ok else None,
        "height": outcome.height if ok else None,
        "attempts": fetch.attempts if fetch else 0,
        "elapsed": fetch.elapsed if fetch else 0.0,
        "runs": 1 if fetch else 0,
    }


def rerun_plan(cfg: BuildConfig, index: int) -> PartRerun | None:
    """A finished part's rows to fetch again (transient failures, `rerun_transient` runs at
    most), or None: the part stays as it is."""
    if not part_done(cfg, SOURCE, index):
        return None
    keys = refetch_keys(status_parquet(cfg, index), cfg.sources.eol.rerun_transient)
    if not keys:
        return None
    return PartRerun.load(status_parquet(cfg, index), part_parquet(cfg, SOURCE, index),
                          cfg.root, keys)  # fmt: skip


def transient_reruns_pending(cfg: BuildConfig) -> int:
    """Rows the next EOL ingest would fetch again (the stage is not up to date while > 0)."""
    paths = sorted(catalog_dir(cfg, SOURCE).glob("part-?????.status.parquet"))
    return pending_reruns(paths, cfg.sources.eol.rerun_transient)


async def _revalidate(url: str, stored, kept, downloader: Downloader, pool: DecodePool):
    """Ask whether a stored remote image changed: a conditional request with the validators
    kept for exactly its bytes; without them (or its bytes damaged) a plain GET."""
    validators = matching(kept, stored.md5)
    current = await asyncio.to_thread(stored.checked) if validators is not None else None
    if current is None:
        return await _fetch_and_decode(url, downloader, pool)
    return await _fetch_and_decode(url, downloader, pool, validators, current)


def _count_revalidated(run: EolStats, fetch: FetchResult | None) -> None:
    if fetch is None:
        return
    if not fetch.conditional:
        run.add_revalidated({UNCONDITIONAL: 1})
        return
    outcome = revalidation_outcome(fetch.http_status, fetch.reason)
    if outcome is not None:
        run.add_revalidated({outcome: 1})


def _answered_validators(plan: PartPlan, batch: list, results: list) -> dict:
    """row key -> the validators that may go with its image as written: what the server
    answered for a row fetched now, else what was kept for it (write_validators matches md5)."""
    candidates = dict(plan.validators)
    for (row, _url), (fetch, outcome) in zip(batch, results, strict=True):
        if fetch is None:
            continue
        if fetch.validators is not None and isinstance(outcome, NormalizedImage):
            candidates[row["key"]] = (KeptValidators(outcome.md5, fetch.validators),)
        else:
            candidates.pop(row["key"], None)
    return candidates


async def _part(cfg, index, batch, downloader, pool, run: EolStats, rerun=None, plan=None):
    plan = plan or plan_part(cfg, batch)
    kept = {}  # rows a rerun does not fetch again: key -> (earlier status row, reason)
    if rerun is not None:
        kept = {r["key"]: k for r, url in batch if url and (k := rerun.kept_outcome(r["key"]))}

    async def one(row: dict, url: str | None):
        key = row["key"]
        if key in kept:
            return None, kept[key][1]
        if url is not None and key in plan.reused:  # stored by an earlier part
            image = await asyncio.to_thread(plan.reused[key].checked)
            if image is not None:
                return None, image
        if url is not None and key in plan.stored:  # revalidating a stored remote image
            fetch, outcome = await _revalidate(
                url, plan.stored[key], plan.validators.get(key), downloader, pool
            )
            _count_revalidated(run, fetch)
            return fetch, outcome
        return await _fetch_and_decode(url, downloader, pool)

    results = await asyncio.gather(*(one(row, url) for row, url in batch))
    candidates = _answered_validators(plan, batch, results)
    rows = [row for row, _ in batch]
    images = [outcome for _, outcome in results]
    status_rows = []
    for (row, url), (fetch, outcome) in zip(batch, results, strict=True):
        status = status_row(row, url, fetch, outcome)
        if rerun is not None:
            earlier = kept.get(row["key"], (None,))[0]
            status = earlier or {**status, "runs": rerun.runs(row["key"]) + (fetch is not None)}
        status_rows.append(status)
    if rerun is not None:  # kept images come from the part's current store as it is rewritten
        images = LazyImages(images, rerun, [r["key"] for r in rows], set(kept))

    def write() -> None:
        table = pa.Table.from_pylist(status_rows, schema=EOL_FETCH_STATUS)
        if rerun is not None:  # the catalog first: killed in between, the rows are refetched
            written = write_part(cfg, SOURCE, index, rows, images, plan.key, plan.ids)
            write_parquet_atomic(table, status_parquet(cfg, index))
        else:
            write_parquet_atomic(table, status_parquet(cfg, index))
            written = write_part(cfg, SOURCE, index, rows, images, plan.key, plan.ids)
        # after the part: each kept validator names the md5 of the image it was answered for
        write_validators(cfg, index, written, plan.ids, candidates)

    await asyncio.to_thread(write)
    run.parts_written += 1
