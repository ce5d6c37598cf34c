"""iNat21 ingest: COCO JSON + a streamed .tar.gz (never extracted, never read twice).

Rows are the JSON's images, in JSON order, `images_per_part` per part. The archive is read once
as a stream; each member is handed to the decode pool as it arrives and a part is written as
soon as all of its members have arrived (at the end of the stream, what never arrived is
`missing_in_archive`). Memory holds the images of parts still waiting for members: one part
when the tar follows the JSON order, as the published archives do.
"""

from __future__ import annotations

import concurrent.futures as cf
import gzip
import hashlib
import http.client
import json
import logging
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from treeoflife.config import BuildConfig, INat21Archive
from treeoflife.errors import InputError
from treeoflife.progress import Progress, or_null
from treeoflife.records import inat21_key
from treeoflife.sources.ingest import (
    IGNORED_DUPLICATE,
    IGNORED_UNLISTED,
    IGNORED_UNSAFE,
    MAX_MEMBER_BYTES,
    REASON_DUPLICATE_KEY,
    REASON_MALFORMED,
    REASON_MEMBER_TOO_LARGE,
    REASON_MISSING,
    DecodePool,
    IngestStats,
    clean,
    duplicate_of,
    fail,
    finish_stats,
    member_is_unsafe,
    new_row,
    normal_member_name,
    part_done,
    part_parquet,
    part_tar_relpath,
    pool_workers_for,
    prepare_source_dirs,
    read_previous_stats,
    write_part,
)
from treeoflife.sources.remote import RangeReader, RemoteReadError, is_url

log = logging.getLogger(__name__)

SOURCE = "inat21"
_RANK_FIELDS = ("kingdom", "phylum", "class", "order", "family", "genus")


def open_input(spec: str, cfg: BuildConfig, what: str):
    """Open a configured input (local path, or http(s) URL streamed with Range resume)."""
    if is_url(spec):
        try:
            return RangeReader(spec)
        except (OSError, http.client.HTTPException) as exc:
            raise InputError(f"iNat21 {what} {spec}: {exc}") from exc
    path = cfg.path(spec)
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        raise InputError(f"iNat21 {what} {path}: {exc.strerror or exc}") from exc


def load_annotations(spec: str, cfg: BuildConfig) -> dict:
    with open_input(spec, cfg, "annotations") as fh:
        try:
            data = json.load(fh)
        except RemoteReadError as exc:
            raise InputError(f"iNat21 annotations {spec}: {exc}") from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"iNat21 annotations {spec}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"iNat21 annotations {spec}: no 'images' list (not a COCO JSON?)")
    return data


class _HashingReader:
    """A file wrapper that md5s every byte read through it (tarfile's stream mode reads here)."""

    def __init__(self, fh, enabled: bool):
        self._fh = fh
        self._md5 = hashlib.md5(usedforsecurity=False) if enabled else None

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        if self._md5 is not None:
            self._md5.update(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def hexdigest(self) -> str | None:
        return self._md5.hexdigest() if self._md5 is not None else None


@dataclass
class _ArchivePlan:
    rows: list[dict]
    by_name: dict[str, int]  # member name (JSON file_name) -> row index
    first_part: int
    per_part: int
    expected: list[int] = field(default_factory=list)  # rows still waiting for a member, per part

    @property
    def n_parts(self) -> int:
        return len(self.expected)

    def part_of(self, index: int) -> int:
        return index // self.per_part

    def part_rows(self, part: int) -> range:
        return range(part * self.per_part, min(len(self.rows), (part + 1) * self.per_part))


def _license_name(value, licenses: dict) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value in licenses:
        return licenses[value]
    return clean(str(value))


def plan_archive(
    data: dict, archive_no: int, first_part: int, per_part: int, seen_keys: dict[str, int]
) -> _ArchivePlan:
    """Catalog rows (metadata only) for the JSON images, in JSON order."""
    categories = {c.get("id"): c for c in data.get("categories", []) if isinstance(c, dict)}
    licenses = {
        lic.get("id"): clean(lic.get("name"))
        for lic in data.get("licenses", []) or []
        if isinstance(lic, dict)
    }
    image_category: dict = {}
    for ann in data.get("annotations", []) or []:
        if isinstance(ann, dict) and ann.get("image_id") is not None:
            image_category.setdefault(ann["image_id"], ann.get("category_id"))
    rows: list[dict] = []
    by_name: dict[str, int] = {}
    for i, image in enumerate(data["images"]):
        file_name = image.get("file_name") if isinstance(image, dict) else None
        if not isinstance(file_name, str) or not file_name.strip():
            rows.append(
                fail(new_row(f"inat21/malformed/{archive_no}:{i}", SOURCE), REASON_MALFORMED)
            )
            continue
        name = normal_member_name(file_name.strip())
        key = inat21_key(PurePosixPath(name).stem)
        row = new_row(key, SOURCE)
        row["inat21_file"] = file_name
        category_id = image.get("category_id", image_category.get(image.get("id")))
        category = categories.get(category_id)
        if isinstance(category_id, int) and not isinstance(category_id, bool):
            row["inat21_category_id"] = category_id
        if category is not None:
            for rank in _RANK_FIELDS:
                row[f"verbatim_{rank}"] = clean(category.get(rank))
            genus = clean(category.get("genus"))
            epithet = clean(category.get("specific_epithet"))
            row["verbatim_scientific_name"] = (
                f"{genus} {epithet}" if genus and epithet else clean(category.get("name"))
            )
            row["verbatim_common_name"] = clean(category.get("common_name"))
        row["license"] = _license_name(image.get("license"), licenses)
        row["rights_holder"] = clean(image.get("rights_holder"))
        dup = duplicate_of(key, seen_keys)
        if dup is not None or name in by_name:
            row["key"] = dup or f"{key}#dup-name{i}"
            fail(row, REASON_DUPLICATE_KEY)
        else:
            by_name[name] = i
        rows.append(row)
    n_parts = (len(rows) + per_part - 1) // per_part
    plan = _ArchivePlan(rows=rows, by_name=by_name, first_part=first_part, per_part=per_part)
    plan.expected = [0] * n_parts
    for i in by_name.values():
        plan.expected[plan.part_of(i)] += 1
    return plan


def ingest_inat21(cfg: BuildConfig, progress: Progress | None = None) -> IngestStats:
    """Ingest every configured iNat21 archive into catalog/inat21 and images/inat21 parts."""
    progress = or_null(progress)
    icfg = cfg.sources.inat21
    if icfg.images_per_part <= 0:
        raise InputError("sources.inat21.images_per_part must be positive")
    prepare_source_dirs(cfg, SOURCE)
    previous = {a.get("images"): a for a in read_previous_stats(cfg, SOURCE).get("archives", [])}
    run = IngestStats(source=SOURCE)
    ignored_total: dict[str, int] = {}
    archives_out: list[dict] = []
    seen_keys: dict[str, int] = {}
    next_part = 0
    progress.start("ingest inat21", None)
    try:
        for archive_no, archive in enumerate(icfg.archives):
            data = load_annotations(archive.annotations, cfg)
            plan = plan_archive(data, archive_no, next_part, icfg.images_per_part, seen_keys)
            del data
            ignored = _ingest_archive(cfg, archive, plan, run, previous, progress)
            for k, v in ignored.items():
                ignored_total[k] = ignored_total.get(k, 0) + v
            archives_out.append(
                {"images": archive.images, "rows": len(plan.rows), "ignored": ignored}
            )
            next_part += plan.n_parts
    finally:
        progress.finish()
    return finish_stats(
        cfg, SOURCE, next_part, run, ignored_total, extra={"archives": archives_out}
    )


def _ingest_archive(
    cfg: BuildConfig,
    archive: INat21Archive,
    plan: _ArchivePlan,
    run: IngestStats,
    previous: dict,
    progress: Progress,
) -> dict[str, int]:
    done = {p for p in range(plan.n_parts) if part_done(cfg, SOURCE, plan.first_part + p)}
    if len(done) == plan.n_parts:
        run.parts_skipped += plan.n_parts
        progress.advance(len(plan.rows))
        prev = previous.get(archive.images, {})
        return dict(sorted((prev.get("ignored") or {}).items()))
    todo = sum(len(plan.part_rows(p)) for p in range(plan.n_parts) if p not in done)
    with DecodePool(pool_workers_for(todo)) as pool:
        ignored = _stream_archive(cfg, archive, plan, done, pool, run, progress)
    run.parts_skipped += len(done)
    if ignored:
        log.warning("iNat21 archive %s: ignored members %s", archive.images, ignored)
    return ignored


def _stream_archive(
    cfg: BuildConfig,
    archive: INat21Archive,
    plan: _ArchivePlan,
    done: set[int],
    pool: DecodePool,
    run: IngestStats,
    progress: Progress,
) -> dict[str, int]:
    """Read the archive once, writing each part as soon as its members are in."""
    ignored: dict[str, int] = {}
    pending: dict[int, cf.Future | str] = {}  # row index -> decode future (or failure reason)
    written: list[int] = []

    # Parts are written on a writer thread while the stream goes on (gunzip and tar reading
    # keep the main thread busy); at most two parts wait for it, to bound memory.
    writer = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="inat21-writer")
    inflight: list[cf.Future] = []

    def write(part: int, rows: list[dict], outcomes: list) -> None:
        images = [o.result() if isinstance(o, cf.Future) else o for o in outcomes]
        write_part(cfg, SOURCE, plan.first_part + part, rows, images)
        progress.advance(len(rows))

    def flush(part: int) -> None:
        rows, outcomes = [], []
        for i in plan.part_rows(part):
            row = plan.rows[i]
            rows.append(row)
            if row.get("status") is not None:  # failed while planning
                outcomes.append(None)
            elif i in pending:
                outcomes.append(pending.pop(i))
            else:
                outcomes.append(REASON_MISSING)
        while len(inflight) >= 2:
            inflight.pop(0).result()
        inflight.append(writer.submit(write, part, rows, outcomes))
        written.append(part)
        run.parts_written += 1

    def wait_writes() -> None:
        while inflight:
            inflight.pop(0).result()  # re-raises a failed write

    try:
        digest = _read_stream(cfg, archive, plan, done, pool, flush, ignored, pending)
        wait_writes()
        if archive.md5 and digest != archive.md5.lower():
            _roll_back(cfg, plan, written)
            raise InputError(
                f"iNat21 archive {cfg.path(archive.images)}: md5 {digest} does not match the "
                f"configured {archive.md5}"
            )
        for part in range(plan.n_parts):
            if part not in done and part not in written:
                flush(part)  # members that never arrived: missing_in_archive
        wait_writes()
    finally:
        writer.shutdown(wait=True)
    return dict(sorted(ignored.items()))


def _read_stream(cfg, archive, plan, done, pool, flush, ignored, pending) -> str | None:
    """Hand each listed member to the decode pool; flush a part when complete. Returns md5."""
    received: set[int] = set()
    remaining = list(plan.expected)

    def note(reason: str) -> None:
        ignored[reason] = ignored.get(reason, 0) + 1

    src = archive.images if is_url(archive.images) else cfg.path(archive.images)
    fh = open_input(archive.images, cfg, "images")
    reader = _HashingReader(fh, enabled=bool(archive.md5))
    try:
        with tarfile.open(fileobj=reader, mode="r|gz") as tar:
            for member in tar:
                if member.isdir():
                    continue
                name = normal_member_name(member.name)
                if not member.isfile() or member_is_unsafe(name):
                    note(IGNORED_UNSAFE)
                    continue
                index = plan.by_name.get(name)
                if index is None:
                    note(IGNORED_UNLISTED)
                    continue
                if index in received:
                    note(IGNORED_DUPLICATE)
                    continue
                received.add(index)
                part = plan.part_of(index)
                if part in done:
                    continue
                if member.size > MAX_MEMBER_BYTES:
                    pending[index] = REASON_MEMBER_TOO_LARGE
                else:
                    extracted = tar.extractfile(member)
                    pending[index] = pool.submit(extracted.read() if extracted else b"")
                remaining[part] -= 1
                if remaining[part] == 0:
                    flush(part)
        reader.drain()
    except RemoteReadError as exc:
        raise InputError(f"iNat21 archive {src}: {exc}") from exc
    except (tarfile.TarError, zlib.error, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"iNat21 archive {src}: unreadable ({exc})") from exc
    finally:
        fh.close()

    return reader.hexdigest()


def _roll_back(cfg: BuildConfig, plan: _ArchivePlan, written: list[int]) -> None:
    """Remove parts this run wrote from an archive that failed its md5 check."""
    for part in written:
        index = plan.first_part + part
        part_parquet(cfg, SOURCE, index).unlink(missing_ok=True)
        (cfg.root / part_tar_relpath(SOURCE, index)).unlink(missing_ok=True)
