"""EOL ingest: stream the media manifests, join page names, download and store the images.

Rows are the manifests' data lines, in manifest order, `rows_per_part` per part across all
manifests (`eol_manifest.py`). Which parts a run writes, and from what, is decided in one place
(`eol_parts.manifest_parts`); one of two runners here writes them: up to `parts_in_flight` parts
downloading at once in this process's event loop, decoding in worker processes (the network
never idles while a part waits for its slowest URL or is being written); or a mapper
(treeoflife.fanout): `processes` local download processes, or one injected by a flow. Each
part is fetched, decoded and written by `eol_fetch.fetch_part`, in manifest order whatever
the completion order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

from treeoflife.config import BuildConfig
from treeoflife.errors import InputError, OutputError
from treeoflife.exchange import exchange_folder, pull_outputs, task_folder
from treeoflife.fanout import PartMapper, Parts, ProcessPoolMapper
from treeoflife.images import ResizePolicy
from treeoflife.io import file_sha256, stream_sha256
from treeoflife.layout import Layout
from treeoflife.progress import Progress, or_null
from treeoflife.sources.download import Downloader, DownloadSettings
from treeoflife.sources.eol_fetch import fetch_part
from treeoflife.sources.eol_manifest import load_pages, rewrite_url
from treeoflife.sources.eol_parts import (
    PartPlan,
    hosts_report,
    is_remote,
    manifest_parts,
    plan_part,
    rerun_plan,
    status_parquet,
    transient_reruns_pending,
)
from treeoflife.sources.eol_validators import UNCONDITIONAL, EolStats, validators_parquet
from treeoflife.sources.fetch_policy import FetchPolicy
from treeoflife.sources.ingest import (
    DecodePool,
    IngestStats,
    finish_stats,
    part_is_current,
    part_parquet,
    part_tar_relpath,
    prepare_source_dirs,
    remove_parts_from,
    reuse_index,
)
from treeoflife.sources.partstore import record_key, reuse_parquet
from treeoflife.sources.rerun import PartRerun
from treeoflife.storage import Storage, shared_storage

__all__ = [  # what other modules and tests use from here
    "EolPart",
    "download_eol_part",
    "ingest_eol",
    "rewrite_url",  # eol_manifest.py
    "transient_reruns_pending",  # eol_parts.py
]

log = logging.getLogger(__name__)

SOURCE = "eol"


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
            parts = _ingest_parts_mapped(cfg, pages, settings, resize, run, progress, map_parts)
        elif ecfg.processes > 1:  # download processes (forkserver) on this machine's disk
            processes = ProcessPoolMapper(ecfg.processes, "forkserver")
            parts = _ingest_parts_mapped(
                cfg, pages, settings, resize, run, progress, processes, local=True
            )
        else:
            parts = manifest_parts(cfg, pages, progress)
            with DecodePool(decode_workers, resize=resize) as pool:
                asyncio.run(_ingest_parts(cfg, parts, settings, pool, run, progress))
    finally:
        progress.finish()
    run.parts_skipped += parts.skipped
    n_parts = parts.seen
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


DECODE_THREADS_PER_PROCESS = 2


def _split_settings(settings: DownloadSettings, processes: int) -> DownloadSettings:
    """Each of `processes` download processes gets its share of the global and per-host limits."""
    return dataclasses.replace(
        settings,
        concurrency=max(1, settings.concurrency // processes),
        per_host_concurrency=max(1, settings.per_host_concurrency // processes),
        per_host_rps=settings.per_host_rps / processes,
    )


@dataclasses.dataclass(frozen=True)
class EolPart:
    """One manifest part to download: its rows (metadata and URLs, never image bytes)."""

    cfg: BuildConfig  # data_root absolute, so a worker with another working directory agrees
    index: int
    batch: list
    settings: DownloadSettings
    resize: ResizePolicy
    folder: Storage  # where the part's files go: the data root, or shared storage (exchange)
    plan: PartPlan | None = None  # its key (None: computed where it runs)
    # The sha256 of the download status the part is rerun from (shared storage only): a
    # record with the planned key beside that status there is the part before its rerun.
    replaces: str | None = None


def download_eol_part(item: EolPart) -> tuple[int, int, dict[str, int]]:
    """Download, decode and write one part into `item.folder` (a finished part is kept);
    returns (part number, rows, revalidation counts). Off this disk the part is written in a
    scratch data root and its files go to the folder, the catalog part's record last (a
    record with the part's key marks it done: one of other inputs is redone and replaced);
    the driver pulls them (`_pull_part`). A part rerun there (`item.replaces`) is first
    copied into the scratch data root, so only its transient failures are fetched again."""
    plan = item.plan or plan_part(item.cfg, item.batch)
    rels = _part_files(item.cfg, item.index)
    is_current = _part_is(rels, plan.key, item.replaces)
    with task_folder(item.folder, rels, is_current) as root:
        if root is None:  # a retried task whose first attempt finished
            return item.index, len(item.batch), {}
        if item.replaces is not None:
            _get_part_to_rerun(item.folder, rels, root, plan.key, item.replaces)
        cfg = dataclasses.replace(item.cfg, data_root=str(root))
        counts = _download_part(cfg, item.index, item.batch, item.settings, item.resize, plan)
    return item.index, len(item.batch), counts


def _part_is(rels: list[str], key: str, replaces: str | None) -> Callable[[Storage], bool]:
    """Whether the part in a folder (`_part_files`) is this part's: its record holds `key`
    (one an earlier build of other rows or settings left at the same place on shared storage
    is not), and, for a part rerun, its status is not the one the rerun `replaces` (that is
    the part before its rerun: its key is the same)."""

    def is_current(folder: Storage) -> bool:
        try:
            with folder.open(rels[-1]) as fh:
                if record_key(fh) != key:
                    return False
            return replaces is None or _stored_sha256(folder, rels[1]) != replaces
        except OSError:  # gone meanwhile
            return False

    return is_current


def _stored_sha256(folder: Storage, rel: str) -> str:
    with folder.open(rel) as fh:
        return stream_sha256(fh)


def _get_part_to_rerun(folder: Storage, rels: list[str], root: Path, key: str, status: str):
    """Copy into `root` the part a rerun starts from, when `folder` holds it (its record
    holds `key`, its status has the sha256 `status`) before and after the copy (an upload
    over it removes the record first): the rerun then keeps every row but its transient
    failures, as on the driver's disk. Else nothing is kept and the task fetches the whole
    part (an upload of it cut short, or a driver whose part is not there)."""
    holds_it = _part_is(rels, key, None)
    try:
        if not holds_it(folder) or _stored_sha256(folder, rels[1]) != status:
            return
        for rel in rels:
            if folder.exists(rel):
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                folder.get(rel, root / rel)
        if holds_it(folder) and _stored_sha256(folder, rels[1]) == status:
            return
    except OSError:
        pass
    for rel in rels:  # gone or replaced meanwhile: fetched whole
        (root / rel).unlink(missing_ok=True)


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


def _pull_part(
    cfg: BuildConfig, folder: Storage, index: int, key: str, replaces: str | None = None
) -> None:
    """Copy a part its task left in `folder` into the data root, its record last (its image
    store is then known to be on shared storage: the hash and shard stages do not push it
    again); nothing to copy when the folder is the data root. Only a part whose record holds
    `key`, the one planned for it, is taken (for a part rerun, not the one it `replaces`)."""
    rels = _part_files(cfg, index)
    ledger = Layout(cfg.root).shared_ledger
    is_current = _part_is(rels, key, replaces)
    if not pull_outputs(folder, rels, cfg.root, ledger=ledger, is_current=is_current):
        raise OutputError(
            f"EOL part {index}: its task finished without {folder.url(rels[-1])} "
            "holding the part's key"
        )


def _ingest_parts_mapped(
    cfg, pages: dict, settings, resize, run: EolStats, progress, map_parts, local=False
) -> Parts:
    """Parts handed to a mapper as they are read from the manifests (it bounds how many are
    in flight); each gets its share of the download limits. With `storage.shared` (and a
    mapper that is not `local`: its workers may not see this disk), the tasks leave their
    parts there and each is pulled into the data root as it finishes."""
    # The mapper's own width when it knows it (a cluster's threads), else the config's.
    share = _split_settings(settings, getattr(map_parts, "width", cfg.execution.parallelism))
    remote_cfg = dataclasses.replace(cfg, data_root=str(cfg.root.resolve()))
    shared = None if local else shared_storage(cfg)
    folder = exchange_folder(cfg.root, cfg.root, shared)

    def task(index: int, batch: list, plan: PartPlan, rerun: PartRerun | None) -> EolPart:
        replaces = None  # the task plans its own rerun
        if shared is not None:  # the stored images are not on the task's disk: fetched again
            plan = dataclasses.replace(plan, reused={}, stored={})
            if rerun is not None:  # the same key: its record there is the part as it was
                replaces = file_sha256(status_parquet(cfg, index))
        return EolPart(remote_cfg, index, batch, share, resize, folder, plan, replaces)

    def pulled(item: EolPart, result: tuple[int, int, dict[str, int]]) -> None:
        _pull_part(cfg, folder, item.index, item.plan.key, item.replaces)
        run.add_revalidated(result[2])
        run.parts_written += 1

    parts = manifest_parts(cfg, pages, progress, task)
    for _ in parts.run(download_eol_part, map_parts, pulled):
        pass
    prepare_source_dirs(cfg, SOURCE)  # drops what a worker that died mid-part left behind
    return parts


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
            await fetch_part(cfg, index, batch, downloader, pool, stats, rerun, plan)

    with DecodePool(DECODE_THREADS_PER_PROCESS, resize=resize, threads=True) as pool:
        asyncio.run(run())
    return stats.revalidated


async def _ingest_parts(cfg, parts: Parts, settings, pool, run: EolStats, progress) -> None:
    """Download the parts to write (`parts`: current ones are skipped there), up to
    `parts_in_flight` at once in this event loop; a mapper would run one part at a time."""
    ecfg = cfg.sources.eol
    window = asyncio.Semaphore(max(1, ecfg.parts_in_flight))
    # Rows between "fetch starts" and "decoded": bounds the raw bodies held in memory when the
    # network outruns the decoders (back-pressure instead of an unbounded decode queue).
    hold = 2 * settings.concurrency + 4 * max(1, pool.workers)
    running: set[asyncio.Task] = set()

    async def one(index: int, batch: list, rerun: PartRerun | None, plan: PartPlan) -> None:
        try:
            await fetch_part(cfg, index, batch, downloader, pool, run, rerun, plan)
            progress.advance(len(batch))
        finally:
            window.release()

    async with Downloader(settings, hold, hosts_report(cfg)) as downloader:
        try:
            for index, batch, plan, rerun in parts:
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
