"""BIOSCAN-1M ingest: the metadata TSV (streamed) + the image zips (indexed, read by member).

Rows are the TSV's data lines in file order, `images_per_part` per part. BIOSCAN-1M is insects
only and has no kingdom column, so verbatim_kingdom is "Animalia" for every row.
"""

from __future__ import annotations

import csv
import logging
import stat
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import PurePosixPath

from treeoflife.config import BuildConfig
from treeoflife.errors import InputError
from treeoflife.progress import Progress, or_null
from treeoflife.records import bioscan_key
from treeoflife.sources.ingest import (
    IGNORED_DUPLICATE,
    IGNORED_UNLISTED,
    IGNORED_UNSAFE,
    MAX_MEMBER_BYTES,
    REASON_CORRUPT_MEMBER,
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
    part_done,
    pool_workers_for,
    prepare_source_dirs,
    write_part,
)

log = logging.getLogger(__name__)

SOURCE = "bioscan"
KINGDOM = "Animalia"  # BIOSCAN-1M: all Insecta
NULL_MARKERS = ("not_classified",)
REQUIRED_COLUMNS = ("processid", "image_file", "chunk_number")
# Most specific first: the verbatim name when `species` is not classified.
_NAME_RANKS = ("species", "genus", "tribe", "subfamily", "family", "order", "class", "phylum")

csv.field_size_limit(1 << 24)


def _zip_member_is_link(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return mode != 0 and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def index_zips(
    cfg: BuildConfig, zips: list[str], ignored: dict[str, int]
) -> tuple[list[zipfile.ZipFile], dict[str, tuple[int, zipfile.ZipInfo]]]:
    """Open every zip and map `part<chunk>/<file>` to its member (first zip wins)."""
    opened: list[zipfile.ZipFile] = []
    index: dict[str, tuple[int, zipfile.ZipInfo]] = {}
    try:
        for zip_no, spec in enumerate(zips):
            path = cfg.path(spec)
            try:
                zf = zipfile.ZipFile(path)
            except (OSError, zipfile.BadZipFile) as exc:
                raise InputError(f"BIOSCAN zip {path}: {exc}") from exc
            opened.append(zf)
            for info in zf.infolist():
                if info.is_dir():
                    continue
                name = info.filename
                if member_is_unsafe(name) or _zip_member_is_link(info):
                    ignored[IGNORED_UNSAFE] = ignored.get(IGNORED_UNSAFE, 0) + 1
                    continue
                parts = PurePosixPath(name).parts
                # tolerate a leading folder: index by the last two components part<N>/<file>
                short = "/".join(parts[-2:])
                if short in index:
                    ignored[IGNORED_DUPLICATE] = ignored.get(IGNORED_DUPLICATE, 0) + 1
                    continue
                index[short] = (zip_no, info)
    except BaseException:
        for zf in opened:
            zf.close()
        raise
    return opened, index


def _read_tsv(path) -> Iterator[tuple[int, list[str] | None, list[str]]]:
    """Yield (line number, fields or None if malformed, header) for each data line."""
    try:
        fh = open(path, encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputError(f"BIOSCAN metadata {path}: {exc.strerror or exc}") from exc
    with fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise InputError(f"BIOSCAN metadata {path}: empty file") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(f"BIOSCAN metadata {path}: unreadable header ({exc})") from exc
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise InputError(f"BIOSCAN metadata {path}: missing column(s) {', '.join(missing)}")
        while True:
            line = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError):
                yield line, None, header
                continue
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # blank line
            yield line, (fields if len(fields) == len(header) else None), header


def row_from_record(record: dict[str, str | None]) -> tuple[dict, str | None]:
    """A catalog row (metadata only) and its image member name, from one TSV record."""
    processid = record.get("processid")
    row = new_row(bioscan_key(processid), SOURCE)
    row["bioscan_processid"] = processid
    row["verbatim_kingdom"] = KINGDOM
    for rank in ("phylum", "class", "order", "family", "genus"):
        row[f"verbatim_{rank}"] = record.get(rank)
    row["verbatim_scientific_name"] = next((record[r] for r in _NAME_RANKS if record.get(r)), None)
    row["license"] = record.get("copyright_license") or record.get("license")
    row["rights_holder"] = (
        record.get("copyright_holder")
        or record.get("copyright_institution")
        or record.get("photographer")
    )
    image_file = record.get("image_file")
    chunk = record.get("chunk_number")
    row["bioscan_filename"] = image_file
    if chunk is not None:
        try:
            chunk = str(int(float(chunk)))
        except ValueError:
            chunk = None
    if chunk is not None:
        row["bioscan_part"] = f"part{chunk}"
    member = f"part{chunk}/{image_file}" if chunk is not None and image_file else None
    return row, member


def ingest_bioscan(cfg: BuildConfig, progress: Progress | None = None) -> IngestStats:
    """Ingest the BIOSCAN-1M TSV and zips into catalog/bioscan and images/bioscan parts."""
    progress = or_null(progress)
    bcfg = cfg.sources.bioscan
    per_part = bcfg.images_per_part
    if per_part <= 0:
        raise InputError("sources.bioscan.images_per_part must be positive")
    prepare_source_dirs(cfg, SOURCE)
    run = IngestStats(source=SOURCE)
    ignored: dict[str, int] = {}
    if bcfg.metadata is None:
        log.info("bioscan: no metadata configured, nothing to ingest")
        return finish_stats(cfg, SOURCE, 0, run, ignored)
    zips, index = index_zips(cfg, bcfg.zips, ignored)
    used: set[str] = set()
    seen_keys: dict[str, int] = {}
    n_parts = 0
    progress.start("ingest bioscan", None)
    try:
        with DecodePool(pool_workers_for(len(index))) as pool:
            batch: list[tuple[dict, str | None]] = []
            for line, fields, header in _read_tsv(cfg.path(bcfg.metadata)):
                batch.append(_make_row(line, fields, header, seen_keys, index, used))
                if len(batch) == per_part:
                    _write_or_skip(cfg, n_parts, batch, zips, index, pool, run)
                    progress.advance(len(batch))
                    n_parts += 1
                    batch = []
            if batch:
                _write_or_skip(cfg, n_parts, batch, zips, index, pool, run)
                progress.advance(len(batch))
                n_parts += 1
    finally:
        for zf in zips:
            zf.close()
        progress.finish()
    unlisted = len(set(index) - used)
    if unlisted:
        ignored[IGNORED_UNLISTED] = unlisted
    return finish_stats(cfg, SOURCE, n_parts, run, ignored)


def _make_row(line, fields, header, seen_keys, index, used) -> tuple[dict, str | None]:
    if fields is None:
        return fail(new_row(f"bioscan/malformed/line{line}", SOURCE), REASON_MALFORMED), None
    record = {h: clean(v, NULL_MARKERS) for h, v in zip(header, fields, strict=True)}
    if not record.get("processid"):
        return fail(new_row(f"bioscan/malformed/line{line}", SOURCE), REASON_MALFORMED), None
    row, member = row_from_record(record)
    if member is None:
        return fail(row, REASON_MALFORMED), None
    dup = duplicate_of(row["key"], seen_keys)
    if dup is not None:
        row["key"] = dup
        return fail(row, REASON_DUPLICATE_KEY), None
    if member not in index:
        return fail(row, REASON_MISSING), None
    used.add(member)
    return row, member


def _write_or_skip(cfg, part, batch, zips, index, pool: DecodePool, run: IngestStats) -> None:
    if part_done(cfg, SOURCE, part):
        run.parts_skipped += 1
        return
    outcomes = []
    for row, member in batch:
        if member is None:
            outcomes.append(None)
            continue
        zip_no, info = index[member]
        if info.file_size > MAX_MEMBER_BYTES:
            outcomes.append(REASON_MEMBER_TOO_LARGE)
            continue
        try:
            data = zips[zip_no].read(info)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            log.warning("bioscan %s: cannot read %s: %s", row["key"], member, exc)
            outcomes.append(REASON_CORRUPT_MEMBER)
            continue
        outcomes.append(pool.submit(data))
    images = [o.result() if hasattr(o, "result") else o for o in outcomes]
    write_part(cfg, SOURCE, part, [row for row, _ in batch], images)
    run.parts_written += 1
