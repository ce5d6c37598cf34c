"""BIOSCAN-1M ingest: the metadata TSV (streamed) + the image zips (indexed, read by member).

Rows are the TSV's data lines in file order, `images_per_part` per part. BIOSCAN-1M is insects
only and has no kingdom column, so verbatim_kingdom is "Animalia" for every row.

Every TSV column is kept: beside each catalog part, `part-%05d.metadata.parquet` holds the key
and all of the TSV's columns as text, in the TSV's order (`not_classified` and empty as null):
the partition columns, the BIN `uri`, the DNA barcode `nucraw`, the licence columns.

Zip members are found by their last two path components, `part<chunk_number>/<image_file>`,
whatever folders lead to them (the published packages hold
`bioscan/images/<package>/part<N>/<file>`). `package` picks one of the published image packages
when the zips hold several; members under another package's folder are ignored and counted.
"""

from __future__ import annotations

import csv
import functools
import logging
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pyarrow as pa

from treeoflife.config import BuildConfig
from treeoflife.errors import InputError
from treeoflife.images import DEFAULT_MAX_PIXELS
from treeoflife.io import write_parquet_atomic
from treeoflife.progress import Progress, or_null
from treeoflife.records import bioscan_key
from treeoflife.sources.fetch_policy import id_fits_store
from treeoflife.sources.ingest import (
    PART_NAME,
    DecodePool,
    IngestStats,
    catalog_dir,
    clean,
    duplicate_of,
    fail,
    fields_are_utf8,
    finish_stats,
    member_is_unsafe,
    new_row,
    part_is_current,
    pool_workers_for,
    prepare_source_dirs,
    remove_parts_from,
    reuse_index,
    write_part,
    zip_member_is_special,
)
from treeoflife.sources.partstore import PartKey, image_id
from treeoflife.vocabulary import Ignored, Reason

log = logging.getLogger(__name__)

SOURCE = "bioscan"
KINGDOM = "Animalia"  # BIOSCAN-1M: all Insecta
PACKAGES = ("cropped_256", "original_256", "cropped", "original_full")
NULL_MARKERS = ("not_classified",)
REQUIRED_COLUMNS = ("processid", "image_file", "chunk_number")
# Most specific first: the verbatim name when `species` is not classified.
_NAME_RANKS = ("species", "genus", "tribe", "subfamily", "family", "order", "class", "phylum")

csv.field_size_limit(1 << 24)


def zip_paths(cfg: BuildConfig, zips: list[str] | None = None) -> list[Path]:
    """The configured zips, glob patterns expanded (sorted); a pattern matching nothing is an
    error, a plain path is returned as given (opening it says if it is missing)."""
    out: list[Path] = []
    for spec in cfg.sources.bioscan.zips if zips is None else zips:
        path = cfg.path(spec)
        matches = cfg.glob(spec)  # a `?` or `[` in the data root is not a pattern
        if matches is None:
            out.append(path)
        elif not matches:
            raise InputError(f"BIOSCAN zips {path}: no file matches")
        else:
            out.extend(matches)
    return out


def _package_of(parts: tuple[str, ...]) -> str | None:
    """The image package a member's folders name (`.../cropped_256/part3/x.jpg`), if any."""
    for folder in parts[:-2]:
        if folder in PACKAGES:
            return folder
    return None


def index_zips(
    cfg: BuildConfig, zips: list[Path], ignored: dict[str, int], package: str | None = None
) -> tuple[list[zipfile.ZipFile], dict[str, tuple[int, zipfile.ZipInfo]]]:
    """Open every zip and map `part<chunk>/<file>` to its member (first zip wins)."""
    opened: list[zipfile.ZipFile] = []
    index: dict[str, tuple[int, zipfile.ZipInfo]] = {}
    seen_packages: set[str] = set()

    def note(reason: str, zip_path: Path, name: str) -> None:
        n = ignored[reason] = ignored.get(reason, 0) + 1
        if n <= 5 and reason != Ignored.OTHER_PACKAGE:
            log.warning("BIOSCAN zip %s: member %r ignored (%s)", zip_path, name, reason)

    try:
        for zip_no, path in enumerate(zips):
            try:
                zf = zipfile.ZipFile(path)
            except (OSError, zipfile.BadZipFile) as exc:
                raise InputError(f"BIOSCAN zip {path}: {exc}") from exc
            opened.append(zf)
            for info in zf.infolist():
                if info.is_dir():
                    continue
                name = info.filename
                if member_is_unsafe(name) or zip_member_is_special(info):
                    note(Ignored.UNSAFE_MEMBER, path, name)
                    continue
                parts = PurePosixPath(name).parts
                member_package = _package_of(parts)
                if package is not None and member_package not in (None, package):
                    note(Ignored.OTHER_PACKAGE, path, name)
                    continue
                if member_package is not None:
                    seen_packages.add(member_package)
                # tolerate leading folders: index by the last two components part<N>/<file>
                short = "/".join(parts[-2:])
                if short in index:
                    note(Ignored.DUPLICATE_MEMBER, path, name)
                    continue
                index[short] = (zip_no, info)
        if package is None and len(seen_packages) > 1:
            raise InputError(
                f"BIOSCAN zips hold several image packages ({', '.join(sorted(seen_packages))}); "
                "choose one with sources.bioscan.package"
            )
    except BaseException:
        for zf in opened:
            zf.close()
        raise
    return opened, index


def _read_tsv(path) -> Iterator[tuple[int, list[str] | None, list[str]]]:
    """Yield (line number, fields or None if malformed, header) for each data line."""
    try:
        # utf-8-sig: a BOM is not part of the first column's name; surrogateescape: an invalid
        # byte spoils its own row only, never the header or the rows after it
        fh = open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")  # noqa: SIM115 - closed below
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
        if not fields_are_utf8(header):
            raise InputError(f"BIOSCAN metadata {path}: header is not valid UTF-8")
        repeated = sorted({h for h in header if header.count(h) > 1} | {"key"} & set(header))
        if repeated:
            raise InputError(f"BIOSCAN metadata {path}: repeated or reserved column(s) {repeated}")
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
            usable = len(fields) == len(header) and fields_are_utf8(fields)
            yield line, (fields if usable else None), header


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


def metadata_parquet(cfg: BuildConfig, index: int) -> Path:
    """The part's sidecar with every TSV column (the catalog part itself marks the part done)."""
    return catalog_dir(cfg, SOURCE) / (PART_NAME.format(index) + ".metadata.parquet")


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
    zips, index = index_zips(cfg, zip_paths(cfg), ignored, bcfg.package)
    used: set[str] = set()
    seen_keys: dict[str, int] = {}
    n_parts = 0
    reuse = reuse_index(cfg, SOURCE)
    write = functools.partial(_write_or_skip, cfg, zips=zips, index=index, reuse=reuse, run=run)
    progress.start("ingest bioscan", None)
    try:
        with DecodePool(pool_workers_for(len(index))) as pool:
            batch: list[_Planned] = []
            header: list[str] = []
            for line, fields, header in _read_tsv(cfg.path(bcfg.metadata)):
                batch.append(_make_row(line, fields, header, seen_keys, index, used))
                if len(batch) == per_part:
                    write(n_parts, batch, header, pool=pool)
                    progress.advance(len(batch))
                    n_parts += 1
                    batch = []
            if batch:
                write(n_parts, batch, header, pool=pool)
                progress.advance(len(batch))
                n_parts += 1
    finally:
        for zf in zips:
            zf.close()
        progress.finish()
    unlisted = len(set(index) - used)
    if unlisted:
        ignored[Ignored.UNLISTED_MEMBER] = unlisted
    remove_parts_from(cfg, SOURCE, n_parts)
    reuse.finish()  # every part of this plan is written: what was set aside goes
    return finish_stats(cfg, SOURCE, n_parts, run, ignored)


_Planned = tuple[dict, "str | None", "dict | None"]  # catalog row, zip member, TSV record


def _make_row(line, fields, header, seen_keys, index, used) -> _Planned:
    if fields is None:
        return (
            fail(new_row(f"bioscan/malformed/line{line}", SOURCE), Reason.MALFORMED_ROW),
            None,
            None,
        )
    record = {h: clean(v, NULL_MARKERS) for h, v in zip(header, fields, strict=True)}
    if not record.get("processid") or not id_fits_store(bioscan_key(record["processid"])):
        row = new_row(f"bioscan/malformed/line{line}", SOURCE)  # none, or too long for a name
        return fail(row, Reason.MALFORMED_ROW), None, record
    row, member = row_from_record(record)
    if member is None:
        return fail(row, Reason.MALFORMED_ROW), None, record
    dup = duplicate_of(row["key"], seen_keys)
    if dup is not None:
        row["key"] = dup
        return fail(row, Reason.DUPLICATE_KEY), None, record
    if member not in index:
        return fail(row, Reason.MISSING_IN_ARCHIVE), None, record
    used.add(member)
    return row, member, record


def _metadata_table(batch: list[_Planned], header: list[str]) -> pa.Table:
    """key + every TSV column as text, one row per catalog row (nulls for a malformed line)."""
    columns = {"key": [row["key"] for row, _, _ in batch]}
    for h in header:
        columns[h] = [record.get(h) if record else None for _, _, record in batch]
    schema = pa.schema([pa.field(name, pa.string()) for name in columns])
    return pa.Table.from_pydict(columns, schema=schema)


DECODE_SETTINGS = ("decode", DEFAULT_MAX_PIXELS, "originals")
"""What the stored bytes of a BIOSCAN image depend on besides the member (originals kept)."""


def _validator(member: str | None, index) -> tuple | None:
    """What says a zip member changed without reading it: its CRC-32 and sizes."""
    if member is None or member not in index:
        return None
    info = index[member][1]
    return (info.CRC, info.file_size, info.compress_size)


def part_key(cfg: BuildConfig, batch: list[_Planned], header: list[str], index) -> str:
    """What a part is made from: its TSV rows, its members' validators, the settings."""
    bcfg = cfg.sources.bioscan
    key = PartKey(SOURCE, header, bcfg.max_member_bytes, bcfg.package, DECODE_SETTINGS)
    for row, member, record in batch:
        key.add(row, member, record, _validator(member, index))
    return key.hexdigest()


def _write_or_skip(cfg, part, batch, header, *, zips, index, reuse, pool, run: IngestStats) -> None:
    sidecar = metadata_parquet(cfg, part)
    key = part_key(cfg, batch, header, index)
    if part_is_current(cfg, SOURCE, part, key) and sidecar.exists():
        run.parts_skipped += 1
        return
    reuse.set_aside()
    max_bytes = cfg.sources.bioscan.max_member_bytes
    outcomes = []
    ids = []
    for row, member, _ in batch:
        if member is None:
            ids.append(None)
            outcomes.append(None)
            continue
        iid = image_id(member, _validator(member, index), DECODE_SETTINGS)
        ids.append(iid)
        zip_no, info = index[member]
        if info.file_size > max_bytes:
            outcomes.append(Reason.MEMBER_TOO_LARGE)
            continue
        stored = reuse.load(iid)
        if stored is not None:
            outcomes.append(stored)
            continue
        try:
            data = zips[zip_no].read(info)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
            # bad CRC, broken deflate data, a cut file, an unknown compression or encryption
            log.warning("bioscan %s: cannot read %s: %s", row["key"], member, exc)
            outcomes.append(Reason.CORRUPT_ARCHIVE_MEMBER)
            continue
        outcomes.append(pool.submit(data))
    images = [o.result() if hasattr(o, "result") else o for o in outcomes]
    write_parquet_atomic(_metadata_table(batch, header), sidecar)
    write_part(cfg, SOURCE, part, [row for row, _, _ in batch], images, key, ids)
    run.parts_written += 1
