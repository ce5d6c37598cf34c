"""Ingest a published rebuild: the plan's rows into `catalog/<source>/` parts, like the three
source ingests write them, so taxonomy, hashes, dedup and release run unchanged.

Rows keep their published labels as verbatim ranks (the label modes choose later what the
release uses). EOL images come from their URLs (parts in plan order, resumable by part) or
from the image sets; iNat21 images from the user's archives (both streamed: parts in archive
order, resumable by archive); BIOSCAN-1M images from the user's zips (plan order, by part).
An EOL image whose md5 differs from licenses.csv fails as `md5_mismatch`, its bytes kept in
`published/md5_mismatch/` and never used.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq

from treeoflife.config import BuildConfig
from treeoflife.fanout import batches
from treeoflife.io import write_bytes_atomic, write_text_atomic
from treeoflife.progress import Progress, or_null
from treeoflife.schemas import RANKS
from treeoflife.sources.bioscan import zip_paths
from treeoflife.sources.download import Downloader, DownloadSettings
from treeoflife.sources.fetch_policy import FetchPolicy, public_url
from treeoflife.sources.ingest import (
    DecodePool,
    IngestStats,
    fail,
    finish_stats,
    new_row,
    part_done,
    part_parquet,
    pool_workers_for,
    prepare_source_dirs,
    remove_parts_from,
    write_part,
)
from treeoflife.sources.published.images import (
    BioscanZips,
    fetch_eol,
    iter_tar_images,
    md5_problem,
    stem,
)
from treeoflife.sources.published.plan import write_plan
from treeoflife.sources.seen import SeenKeys
from treeoflife.vocabulary import Reason

log = logging.getLogger(__name__)

SOURCES = ("eol", "inat21", "bioscan")


def published_dir(cfg: BuildConfig) -> Path:
    return cfg.root / "published"


def plan_path(cfg: BuildConfig) -> Path:
    return published_dir(cfg) / "plan.parquet"


def aside_path(cfg: BuildConfig, treeoflife_id: str) -> Path:
    """Where the bytes of an md5 mismatch are kept (never used, never published)."""
    return published_dir(cfg) / "md5_mismatch" / f"{treeoflife_id}.jpg"


def scientific_name(p: dict) -> str | None:
    """`Genus species` when both are given, else the most specific rank given."""
    if p.get("genus") and p.get("species"):
        return f"{p['genus']} {p['species']}"
    for rank in reversed(RANKS):
        if p.get(rank):
            return p[rank]
    return None


def catalog_row(p: dict, key: str) -> dict:
    """The source-catalog row of one plan row: ids, published labels as verbatim, licence."""
    row = new_row(key, p["source"])
    cls_num = p.get("inat21_cls_num")
    row.update(
        eol_content_id=p.get("eol_content_id"),
        eol_page_id=p.get("eol_page_id"),
        inat21_file=p.get("inat21_filename"),
        inat21_category_id=int(cls_num) if cls_num and cls_num.isdigit() else None,
        bioscan_part=p.get("bioscan_part"),
        bioscan_filename=p.get("bioscan_filename"),
        verbatim_scientific_name=scientific_name(p),
        verbatim_common_name=p.get("common"),
        license=p.get("license_name"),
        rights_holder=p.get("copyright_owner"),
        source_url=public_url(p.get("eol_full_size_copy_url") or p.get("medium_source_url")),
        status="ok",
    )
    for rank in RANKS[:-1]:
        row[f"verbatim_{rank}"] = p.get(rank)
    if p.get("problem"):
        fail(row, p["problem"])
    return row


def iter_plan(cfg: BuildConfig, source: str) -> Iterator[dict]:
    dataset = ds.dataset(plan_path(cfg), format="parquet")
    for batch in dataset.to_batches(filter=ds.field("source") == source, batch_size=10_000):
        yield from batch.to_pylist()


def keyed_rows(cfg: BuildConfig, source: str) -> Iterator[tuple[dict, dict]]:
    """(plan row, catalog row) in plan order; a repeated key fails as duplicate_key."""
    seen = SeenKeys()
    for p in iter_plan(cfg, source):
        row = catalog_row(p, p["key"])
        dup = seen.duplicate_of(p["key"])
        if dup is not None:
            row["key"] = dup
            fail(row, Reason.DUPLICATE_KEY.value)
        yield p, row


def _image_of(cfg, p: dict, data: bytes | None, reason: str | None, pool: DecodePool):
    """A future-like outcome: the decoded image, or a reason (md5 mismatch: bytes set aside)."""
    if data is None:
        return reason or Reason.FILE_ABSENT.value
    problem = md5_problem(data, p.get("md5"), cfg.published.md5_check)
    if problem == Reason.MD5_MISMATCH:
        write_bytes_atomic(aside_path(cfg, p["treeoflife_id"]), data)
        return problem
    return pool.submit(data)


def _resolve(outcome):
    return outcome if isinstance(outcome, str) else outcome.result()


# ----------------------------------------------------------------------------- by plan order


def _eol_by_url(cfg: BuildConfig, pool: DecodePool, run: IngestStats, progress) -> int:
    settings = DownloadSettings.from_config(cfg.sources.eol)
    settings = dataclasses.replace(settings, policy=FetchPolicy.for_eol(cfg))
    size = cfg.published.rows_per_part
    report = published_dir(cfg) / "eol-hosts.status.parquet"

    async def run_all() -> int:
        n = 0
        async with Downloader(settings, 2 * settings.concurrency, report) as downloader:
            for index, batch in enumerate(batches(keyed_rows(cfg, "eol"), size)):
                n = index + 1
                progress.advance(len(batch))
                if part_done(cfg, "eol", index):
                    run.parts_skipped += 1
                    continue
                todo = [(p, r) for p, r in batch if r["status"] == "ok"]
                fetched = await asyncio.gather(*(fetch_eol(downloader, p, cfg) for p, _ in todo))
                outcome = {}
                for (p, r), (data, reason, url) in zip(todo, fetched, strict=True):
                    if url is not None:
                        r["source_url"] = public_url(url)
                    outcome[r["key"]] = _image_of(cfg, p, data, reason, pool)
                images = [_resolve(outcome[r["key"]]) if r["key"] in outcome else None
                          for _, r in batch]  # fmt: skip
                await asyncio.to_thread(
                    write_part, cfg, "eol", index, [r for _, r in batch], images
                )
                run.parts_written += 1
        return n

    return asyncio.run(run_all())


def _bioscan_by_zip(cfg: BuildConfig, pool: DecodePool, run: IngestStats, progress) -> int:
    zips = BioscanZips(cfg, cfg.published.bioscan_zips)
    n = 0
    try:
        parts = batches(keyed_rows(cfg, "bioscan"), cfg.published.rows_per_part)
        for index, batch in enumerate(parts):
            n = index + 1
            progress.advance(len(batch))
            if part_done(cfg, "bioscan", index):
                run.parts_skipped += 1
                continue
            images = []
            for p, r in batch:
                if r["status"] != "ok":
                    images.append(None)
                    continue
                data = zips.read(p.get("bioscan_part"), p.get("bioscan_filename"))
                images.append(_image_of(cfg, p, data, None, pool))
            write_part(cfg, "bioscan", index, [r for _, r in batch], [
                None if i is None else _resolve(i) for i in images])  # fmt: skip
            run.parts_written += 1
    finally:
        zips.close()
    return n


# ----------------------------------------------------------------------------- streamed archives


def _streamed(cfg, source: str, archives: list[str], name_of, pool, run, progress) -> int:
    """Parts in archive order: each archive's matched rows, then the rows no archive held.

    `name_of(plan row)` is the member file name that holds its image. An archive's parts are
    kept when its marker says they are complete (resume by archive)."""
    size = cfg.published.rows_per_part
    wanted: dict[str, tuple[dict, dict]] = {}
    leftover: list[tuple[dict, dict]] = []
    for p, r in keyed_rows(cfg, source):
        name = name_of(p) if r["status"] == "ok" else None
        if name is None or name in wanted:
            leftover.append((p, r))
        else:
            wanted[name] = (p, r)
    state = published_dir(cfg) / "state"
    part = 0
    found: set[str] = set()  # keys of the archives already done (a resumed run)
    for archive_no, spec in enumerate(archives):
        marker = state / f"{source}-archive-{archive_no:03d}.json"
        done = json.loads(marker.read_text()) if marker.exists() else None
        kept = done and done.get("spec") == spec and done.get("first") == part
        if kept and all(part_done(cfg, source, part + i) for i in range(done["parts"])):
            for index in range(done["first"], done["first"] + done["parts"]):
                table = pq.read_table(part_parquet(cfg, source, index), columns=["key"])
                found.update(table.column("key").to_pylist())
            part += done["parts"]
            run.parts_skipped += done["parts"]
            continue
        if found:
            wanted = {n: pr for n, pr in wanted.items() if pr[1]["key"] not in found}
            found = set()
        remove_parts_from(cfg, source, part)
        first = part
        batch: list = []
        for member, data in iter_tar_images(spec, cfg, f"published {source} archive"):
            hit = wanted.pop(stem(member), None)
            if hit is None:
                continue
            p, r = hit
            batch.append((r, _image_of(cfg, p, data, None, pool)))
            if len(batch) == size:
                _write_streamed(cfg, source, part, batch)
                progress.advance(len(batch))
                part, batch = part + 1, []
        if batch:
            _write_streamed(cfg, source, part, batch)
            progress.advance(len(batch))
            part += 1
        run.parts_written += part - first
        write_text_atomic(marker, json.dumps({"spec": spec, "first": first, "parts": part - first}))
    if found:
        wanted = {n: pr for n, pr in wanted.items() if pr[1]["key"] not in found}
    remove_parts_from(cfg, source, part)
    rest = sorted(leftover + list(wanted.values()), key=lambda pr: pr[1]["key"])
    for batch in batches(rest, size):
        rows = [r for _, r in batch]
        absent = [None if r["status"] != "ok" else Reason.FILE_ABSENT.value for r in rows]
        write_part(cfg, source, part, rows, absent)
        progress.advance(len(batch))
        part += 1
    return part


def _write_streamed(cfg, source: str, index: int, batch: list) -> None:
    write_part(cfg, source, index, [r for r, _ in batch], [_resolve(o) for _, o in batch])


# ----------------------------------------------------------------------------- the stage


def ingest_published(cfg: BuildConfig, progress: Progress | None = None) -> dict:
    """Plan the published catalog, then ingest each source's rows; returns counts per source."""
    pc = cfg.published
    p = or_null(progress)
    plan = write_plan(cfg.path(pc.catalog), cfg.path(pc.licenses) if pc.licenses else None,
                      plan_path(cfg))  # fmt: skip
    write_text_atomic(published_dir(cfg) / "plan.json", json.dumps(plan, indent=1, sort_keys=True))
    result: dict = {"plan": plan}
    images = sum(v["images"] for v in plan["by_source"].values())
    with DecodePool(pool_workers_for(images)) as pool:
        for source in SOURCES:
            prepare_source_dirs(cfg, source)
            run = IngestStats(source=source)
            p.start(f"published {source}", plan["by_source"].get(source, {}).get("images", 0))
            if source == "eol" and pc.image_sets:
                sets = [str(x) for x in zip_paths(cfg, pc.image_sets)]  # as zips: globs expand
                n = _streamed(cfg, "eol", sets, lambda r: r["treeoflife_id"], pool, run, p)
            elif source == "eol":
                n = _eol_by_url(cfg, pool, run, p)
            elif source == "inat21":
                n = _streamed(cfg, "inat21", list(pc.inat21_archives),
                              lambda r: stem(r["inat21_filename"] or ""), pool, run, p)  # fmt: skip
            else:
                n = _bioscan_by_zip(cfg, pool, run, p)
            remove_parts_from(cfg, source, n)
            p.finish()
            stats = finish_stats(cfg, source, n, run, {})
            result[source] = {**stats.to_dict(), "parts": n}
    return result
