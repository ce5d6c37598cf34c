"""iNat21 ingest: COCO JSON + a streamed .tar.gz (never extracted, never read twice).

Rows are the JSON's images, in JSON order, `images_per_part` per part. The archive is read once
as a stream (a local file or an http(s) URL resumed with Range after a drop); each member is
handed to the decode pool as it arrives and a part is written as soon as all of its members
have arrived (at the end of the stream, what never arrived is `missing_in_archive`). Memory
stays bounded whatever the member order and however many members are missing: the reader
waits for the oldest decode once a bounded number are in flight, and the decoded images of
parts still waiting for members stay in memory up to HELD_IMAGE_BYTES; past it, those of the
lowest-numbered parts are spilled to disk (sources.spill) and read back, in row order, when
their part is written. An archive in the JSON order, complete, spills nothing.

Reading the annotations (any of their published formats): inat21_annotations. Mapping each
image to its row and category: inat21_plan. The JSON's categories, every field as published
plus the images per category, go to `catalog/inat21/_categories-NN.parquet` (NN: the
archive's place in the config).

`catalog/inat21/_archive-NN.json` says what an archive's parts come from (archive, annotations
and their md5, part numbering) from before the first part is written, and that the archive was
read to its end (and its md5, when configured, matched) once it was. A rerun skips an archive
only when that marker is complete and all its parts are there; a marker naming other inputs
makes the run redo every part of that archive. An md5 mismatch, or an unreadable stream with
a configured md5, removes every part of that archive: nothing derived from an unverified archive
is kept.
"""

from __future__ import annotations

import concurrent.futures as cf
import gzip
import json
import logging
import tarfile
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from treeoflife.config import BuildConfig, INat21Archive
from treeoflife.errors import InputError
from treeoflife.images import DEFAULT_MAX_PIXELS, NormalizedImage
from treeoflife.io import scratch_temporary, write_parquet_atomic, write_text_atomic
from treeoflife.progress import Progress, or_null
from treeoflife.sources.inat21_annotations import (
    HashingReader,
    input_location,
    open_input,
    read_annotations,
)
from treeoflife.sources.inat21_plan import SOURCE, ArchivePlan, plan_archive
from treeoflife.sources.ingest import (
    DecodePool,
    IngestStats,
    catalog_dir,
    finish_stats,
    member_is_unsafe,
    normal_member_name,
    part_is_current,
    part_parquet,
    part_tar_relpath,
    pool_workers_for,
    prepare_source_dirs,
    remove_parts_from,
    reuse_index,
    tar_member_is_special,
    write_part,
)
from treeoflife.sources.partstore import PartKey, ReuseIndex, forget_key, image_id
from treeoflife.sources.remote import RemoteReadError, is_url
from treeoflife.sources.seen import SeenKeys
from treeoflife.sources.spill import SpillStore
from treeoflife.vocabulary import Ignored, Reason

log = logging.getLogger(__name__)


def _archive_marker(cfg: BuildConfig, archive_no: int) -> Path:
    return catalog_dir(cfg, SOURCE) / f"_archive-{archive_no:02d}.json"


def _categories_parquet(cfg: BuildConfig, archive_no: int) -> Path:
    return catalog_dir(cfg, SOURCE) / f"_categories-{archive_no:02d}.parquet"


IN_FLIGHT_PER_WORKER = 16
"""Decodes in flight per decode worker (inline decoding counts as one) before the reader
waits for the oldest: enough to keep the workers busy, few enough to bound memory."""
IN_FLIGHT_BYTES = 64 << 20
"""Member bytes in flight before the reader waits for the oldest (a run of large photos)."""
HELD_IMAGE_BYTES = 256 << 20
"""Decoded image bytes kept in memory across the parts not yet handed to the writer; past it
they are spilled. A part is complete and written at once when the archive follows the JSON
order, so only parts stuck waiting (a missing member, a shuffled archive) ever spill."""

DECODE_SETTINGS = ("decode", DEFAULT_MAX_PIXELS, "originals")
"""What the stored bytes of an iNat21 image depend on besides the member (originals kept)."""


def _archive_identity(
    cfg: BuildConfig, archive: INat21Archive, plan: ArchivePlan, annotations_md5: str
) -> dict:
    """What the archive's parts were made from: a marker that differs means redo them (the
    images a redone part already stored are reused: sources.partstore)."""
    return {
        "images": archive.images,
        "annotations": archive.annotations,
        "annotations_md5": annotations_md5,
        "md5": archive.md5,
        "first_part": plan.first_part,
        "parts": plan.n_parts,
        "rows": plan.n_rows,
        "settings": [cfg.sources.inat21.max_member_bytes, *DECODE_SETTINGS],
    }


def _file_validator(spec: str, cfg: BuildConfig) -> list | None:
    """A local archive's size and mtime (an image replaced in it changes them); None for a
    URL (its configured md5 is what checks it)."""
    if is_url(spec):
        return None
    try:
        st = cfg.path(spec).stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _member_id(name: str, member: tarfile.TarInfo) -> str:
    """An archive member's image id: its name, size and mtime, and the decode settings."""
    return image_id(SOURCE, name, member.size, member.mtime, DECODE_SETTINGS)


def _read_marker(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def ingest_inat21(cfg: BuildConfig, progress: Progress | None = None) -> IngestStats:
    """Ingest every configured iNat21 archive into catalog/inat21 and images/inat21 parts."""
    progress = or_null(progress)
    icfg = cfg.sources.inat21
    if icfg.images_per_part <= 0:
        raise InputError("sources.inat21.images_per_part must be positive")
    prepare_source_dirs(cfg, SOURCE)
    run = IngestStats(source=SOURCE)
    ignored_total: dict[str, int] = {}
    archives_out: list[dict] = []
    seen_keys = SeenKeys(capacity=1024)  # every archive's keys: one in two is a duplicate
    next_part = 0
    reuse = reuse_index(cfg, SOURCE)
    progress.start("ingest inat21", None)
    try:
        for archive_no, archive in enumerate(icfg.archives):
            data, json_md5 = read_annotations(archive.annotations, cfg, archive.annotations_md5)
            plan = plan_archive(data, archive_no, next_part, icfg.images_per_part, seen_keys)
            del data
            name = archive.images.rstrip("/").rsplit("/", 1)[-1]
            progress.start(f"ingest inat21 {name}", plan.n_rows)
            ignored = _ingest_archive(
                cfg, archive_no, archive, json_md5, plan, run, progress, reuse
            )
            for k, v in ignored.items():
                ignored_total[k] = ignored_total.get(k, 0) + v
            archives_out.append({"images": archive.images, "rows": plan.n_rows, "ignored": ignored})
            next_part += plan.n_parts
    finally:
        progress.finish()
    remove_parts_from(cfg, SOURCE, next_part)
    for stale in sorted(catalog_dir(cfg, SOURCE).glob("_*-[0-9][0-9].*")):
        if int(stale.name.split("-")[1][:2]) >= len(icfg.archives):
            stale.unlink()  # marker / categories of an archive no longer configured
    reuse.finish()  # every part of this plan is written
    return finish_stats(
        cfg, SOURCE, next_part, run, ignored_total, extra={"archives": archives_out}
    )


def _ingest_archive(
    cfg: BuildConfig,
    archive_no: int,
    archive: INat21Archive,
    json_md5: str,
    plan: ArchivePlan,
    run: IngestStats,
    progress: Progress,
    reuse: ReuseIndex,
) -> dict[str, int]:
    marker_path = _archive_marker(cfg, archive_no)
    identity = _archive_identity(cfg, archive, plan, json_md5)
    # the parts' records also name the archive file's size + mtime (machine facts: not in the
    # marker, an output): an image replaced in the archive redoes its parts
    key = PartKey(SOURCE, identity, _file_validator(archive.images, cfg)).hexdigest()
    marker = _read_marker(marker_path)
    stale = marker is not None and marker.get("archive") != identity
    if stale:  # parts of an archive that has since changed: redo them all
        log.info("iNat21 archive %s changed since its parts were written; redoing", archive.images)
        marker_path.unlink(missing_ok=True)
    done = {
        p
        for p in range(plan.n_parts)
        if not stale and part_is_current(cfg, SOURCE, plan.first_part + p, f"{key}:{p}")
    }
    if len(done) < plan.n_parts:
        reuse.set_aside()  # the images earlier parts stored, before they are replaced
    categories = _categories_parquet(cfg, archive_no)
    complete = marker is not None and not stale and marker.get("complete") is True
    if complete and len(done) == plan.n_parts and categories.exists():
        run.parts_skipped += plan.n_parts
        progress.advance(plan.n_rows)
        return dict(sorted((marker.get("ignored") or {}).items()))
    # say what the parts about to be written come from, before writing any: a run killed
    # midway and resumed over changed inputs then redoes them instead of trusting them
    started = {"archive": identity, "complete": False}
    write_text_atomic(marker_path, json.dumps(started, indent=2, sort_keys=True))
    todo = sum(len(plan.part_rows(p)) for p in range(plan.n_parts) if p not in done)
    progress.advance(plan.n_rows - todo)  # parts done earlier
    try:
        with DecodePool(pool_workers_for(todo)) as pool:
            stream = _Stream(key, reuse)
            ignored, digest = _stream_archive(cfg, archive, plan, done, pool, run, progress, stream)
    except InputError:
        if archive.md5:  # its parts were removed: so is what said the archive was read
            marker_path.unlink(missing_ok=True)
            categories.unlink(missing_ok=True)
        raise
    run.parts_skipped += len(done)
    if ignored:
        log.warning("iNat21 archive %s: ignored members %s", archive.images, ignored)
    write_parquet_atomic(plan.category_table, categories)
    body = {"archive": identity, "complete": True, "md5_read": digest, "ignored": ignored}
    write_text_atomic(marker_path, json.dumps(body, indent=2, sort_keys=True))
    return ignored


def _stream_archive(
    cfg: BuildConfig,
    archive: INat21Archive,
    plan: ArchivePlan,
    done: set[int],
    pool: DecodePool,
    run: IngestStats,
    progress: Progress,
    stream: _Stream,
) -> tuple[dict[str, int], str | None]:
    """Read the archive once, writing each part as soon as its members are in."""
    spill_name = catalog_dir(cfg, SOURCE) / f"spill-{plan.first_part:05d}"
    with scratch_temporary(spill_name) as folder:
        spill = SpillStore(folder)
        try:
            return _stream_parts(cfg, archive, plan, done, pool, run, progress, stream, spill)
        finally:
            spill.close()


def _stream_parts(cfg, archive, plan, done, pool, run, progress, stream, spill):
    ignored: dict[str, int] = {}
    outcomes = _Outcomes(pool, spill)

    # Parts are written on a writer thread while the stream goes on (gunzip and tar reading
    # keep the main thread busy); at most two parts wait for it, to bound memory.
    writer = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="inat21-writer")
    inflight: list[cf.Future] = []
    written: list[int] = []

    def write(part: int, rows: list[dict], part_outcomes: list, ids: list) -> None:
        images = spill.images(part, part_outcomes)  # read back one at a time, in row order
        key = f"{stream.key}:{part}"
        write_part(cfg, SOURCE, plan.first_part + part, rows, images, key, ids)
        spill.remove(part)
        progress.advance(len(rows))

    def flush(part: int) -> None:
        rows, part_outcomes = [], []
        ids = [stream.ids.pop(i, None) for i in plan.part_rows(part)]
        for i, row in zip(plan.part_rows(part), plan.rows(part), strict=True):
            rows.append(row)
            if row.get("status") is not None:  # failed while planning
                part_outcomes.append(None)
            else:
                part_outcomes.append(outcomes.take(i, part))
        spill.seal(part)
        while len(inflight) >= 2:
            inflight.pop(0).result()
        inflight.append(writer.submit(write, part, rows, part_outcomes, ids))
        written.append(part)
        run.parts_written += 1

    def wait_writes() -> None:
        while inflight:
            inflight.pop(0).result()  # re-raises a failed write

    where = input_location(archive.images, cfg)
    try:
        try:
            digest = _read_stream(cfg, archive, plan, done, flush, ignored, outcomes, stream)
        except InputError:
            wait_writes()
            if archive.md5:  # never verified: keep nothing derived from it
                _roll_back(cfg, plan)
            raise
        wait_writes()
        if archive.md5 and digest != archive.md5.lower():
            _roll_back(cfg, plan)
            raise InputError(
                f"iNat21 archive {where}: md5 {digest} does not match the configured "
                f"{archive.md5}; its parts were removed"
            )
        for part in range(plan.n_parts):
            if part not in done and part not in written:
                flush(part)  # members that never arrived: missing_in_archive
        wait_writes()
    finally:
        writer.shutdown(wait=True)
    return dict(sorted(ignored.items())), digest


class _Outcomes:
    """Each listed member's outcome until its part is handed to the writer: a failure reason,
    a decode in flight (a bounded number: past it the reader waits for the oldest), a decoded
    image held in memory, or one spilled to disk once the held images pass HELD_IMAGE_BYTES.

    Spilling takes the lowest-numbered parts first: with an archive in the JSON order those
    are the parts stuck waiting for a member that never comes, while the newest part, still
    filling, is about to be written from memory."""

    def __init__(self, pool: DecodePool, spill: SpillStore):
        self.pool = pool
        self.spill = spill
        self.pending: dict[int, object] = {}  # entry index -> reason, Future, image or Spilled
        self.inflight: deque[tuple[int, int, cf.Future, int]] = deque()  # index, part, _, bytes
        self.inflight_bytes = 0
        self.limit = max(1, pool.workers) * IN_FLIGHT_PER_WORKER
        self.held: dict[int, dict[int, int]] = {}  # part -> {entry index -> image bytes}
        self.held_bytes = 0
        self.budget = HELD_IMAGE_BYTES

    def reason(self, index: int, reason: str) -> None:
        self.pending[index] = reason

    def image(self, index: int, part: int, image: NormalizedImage) -> None:
        """An image already at hand (one an earlier part stored): held like a decode's."""
        self._hold(index, part, image)

    def submit(self, index: int, part: int, data: bytes) -> None:
        future = self.pool.submit(data)
        self.pending[index] = future
        self.inflight.append((index, part, future, len(data)))
        self.inflight_bytes += len(data)
        while self.inflight and (
            self.inflight[0][2].done()
            or len(self.inflight) > self.limit
            or self.inflight_bytes > IN_FLIGHT_BYTES
        ):
            self._settle_oldest()

    def take(self, index: int, part: int):
        """The outcome of an entry whose part is being written (never arrived: missing)."""
        size = self.held.get(part, {}).pop(index, None)
        if size is not None:
            self.held_bytes -= size
            if not self.held[part]:
                del self.held[part]
        return self.pending.pop(index, Reason.MISSING_IN_ARCHIVE)

    def _settle_oldest(self) -> None:
        index, part, future, size = self.inflight.popleft()
        self.inflight_bytes -= size
        cf.wait([future])  # a failed decode re-raises where its part is written
        if self.pending.get(index) is not future:
            return  # its part went to the writer with the future
        result = future.result()
        if isinstance(result, NormalizedImage):
            self._hold(index, part, result)
        else:
            self.pending[index] = result

    def _hold(self, index: int, part: int, image: NormalizedImage) -> None:
        self.pending[index] = image
        self.held.setdefault(part, {})[index] = len(image.data)
        self.held_bytes += len(image.data)
        while self.held_bytes > self.budget:
            self._spill_part(min(self.held))

    def _spill_part(self, part: int) -> None:
        for index, size in self.held.pop(part).items():
            self.pending[index] = self.spill.put(part, self.pending[index])
            self.held_bytes -= size


@dataclass
class _Stream:
    """What a redone archive's parts carry: their record's key, the image ids of the members
    read so far, and the images earlier parts stored (reused instead of decoded again)."""

    key: str
    reuse: ReuseIndex
    ids: dict[int, str] = field(default_factory=dict)  # entry index -> image id


def _read_stream(cfg, archive, plan, done, flush, ignored, outcomes, stream) -> str | None:
    """Hand each listed member to the decode pool; flush a part when complete. Returns md5."""
    received: set[int] = set()
    remaining = list(plan.expected)
    max_bytes = cfg.sources.inat21.max_member_bytes

    def note(reason: str, name: str) -> None:
        n = ignored[reason] = ignored.get(reason, 0) + 1
        if n <= 5:
            log.warning("iNat21 archive %s: member %r ignored (%s)", archive.images, name, reason)

    where = input_location(archive.images, cfg)
    fh = open_input(archive.images, cfg, "images")
    reader = HashingReader(fh, enabled=bool(archive.md5))
    try:
        with tarfile.open(fileobj=reader, mode="r|gz") as tar:
            for member in tar:
                tar.members = []  # a stream keeps every TarInfo otherwise (~0.6 KB a member)
                if member.isdir():
                    continue
                name = normal_member_name(member.name)
                if tar_member_is_special(member) or member_is_unsafe(name):
                    note(Ignored.UNSAFE_MEMBER, member.name)
                    continue
                index = plan.index_of(name)
                if index is None:
                    note(Ignored.UNLISTED_MEMBER, member.name)
                    continue
                if index in received:
                    note(Ignored.DUPLICATE_MEMBER, member.name)
                    continue
                received.add(index)
                part = plan.part_of(index)
                if part in done or plan.failed(index):
                    continue
                stream.ids[index] = iid = _member_id(name, member)
                if member.size > max_bytes:
                    outcomes.reason(index, Reason.MEMBER_TOO_LARGE)
                elif (stored := stream.reuse.load(iid)) is not None:
                    outcomes.image(index, part, stored)
                else:
                    extracted = tar.extractfile(member)
                    outcomes.submit(index, part, extracted.read() if extracted else b"")
                remaining[part] -= 1
                if remaining[part] == 0:
                    flush(part)
        reader.drain()
    except RemoteReadError as exc:
        raise InputError(f"iNat21 archive {where}: {exc}") from exc
    except (tarfile.TarError, zlib.error, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"iNat21 archive {where}: unreadable ({exc})") from exc
    finally:
        fh.close()
    return reader.hexdigest()


def _roll_back(cfg: BuildConfig, plan: ArchivePlan) -> None:
    """Remove every part of an archive that failed its md5 check (this run's and earlier)."""
    for part in range(plan.n_parts):
        index = plan.first_part + part
        forget_key(part_parquet(cfg, SOURCE, index))
        part_parquet(cfg, SOURCE, index).unlink(missing_ok=True)
        (cfg.root / part_tar_relpath(SOURCE, index)).unlink(missing_ok=True)
