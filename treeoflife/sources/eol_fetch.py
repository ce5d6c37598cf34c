"""One EOL part: fetch its rows' images (or take them from the stored parts, or ask whether a
stored one changed), decode them, and write the part.

Beside each catalog part, `part-%05d.status.parquet` has one row per manifest row (ok / failed /
skipped, HTTP status, bytes, md5, size, attempts, elapsed); it is written before the catalog
part and, unlike it, is not byte-reproducible (attempts and elapsed depend on the servers).
"""

from __future__ import annotations

import asyncio

import pyarrow as pa

from treeoflife.images import NormalizedImage
from treeoflife.io import write_parquet_atomic
from treeoflife.schemas import EOL_FETCH_STATUS
from treeoflife.sources.download import Downloader, FetchResult
from treeoflife.sources.download_validators import Validators, revalidation_outcome
from treeoflife.sources.eol_parts import PartPlan, plan_part, status_parquet
from treeoflife.sources.eol_validators import (
    UNCONDITIONAL,
    EolStats,
    KeptValidators,
    matching,
    write_validators,
)
from treeoflife.sources.fetch_policy import public_url
from treeoflife.sources.ingest import DecodePool, write_part
from treeoflife.sources.partstore import StoredImage
from treeoflife.sources.rerun import LazyImages
from treeoflife.vocabulary import FetchStatus, Reason

SOURCE = "eol"

_SKIP_REASONS = frozenset({Reason.NO_URL, Reason.DUPLICATE_KEY})


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


async def fetch_part(cfg, index, batch, downloader, pool, run: EolStats, rerun=None, plan=None):
    """Fetch (or take from the stored parts), decode and write one part: its status table,
    catalog part, image store and validators."""
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
