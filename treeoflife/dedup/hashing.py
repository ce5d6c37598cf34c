"""Exact (md5) and perceptual (pHash) hashes of training images and of evaluation sets.

Evaluation images are read through treeoflife.evalsets (only inside the set's folder); a set
none of whose images is usable stops here, before dedup (treeoflife.evalsets.report).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from treeoflife.dedup.phash import PHASH_ALGO, phash_many_lenient
from treeoflife.errors import InputError, OutputError
from treeoflife.evalsets.files import SetFolder
from treeoflife.evalsets.labels import label_columns
from treeoflife.evalsets.report import check_images
from treeoflife.exchange import exchange_folder, pull_outputs
from treeoflife.fanout import DONE, Done, PartMapper, Parts, ProcessPoolMapper, local_processes
from treeoflife.io import (
    file_sha256,
    md5_hex,
    read_image_bytes,
    remove_stale_temporaries,
    write_parquet_atomic,
    write_text_atomic,
)
from treeoflife.progress import Progress, or_null
from treeoflife.schemas import EVAL_HASHES, HASHES, SOURCE_CATALOG
from treeoflife.storage import FsspecStorage, Storage, output_path
from treeoflife.vocabulary import IngestStatus, Reason

log = logging.getLogger(__name__)

SHARED_WORK = ".work/hashes"  # hash tasks' targets on shared storage, by run id

# Why an evaluation image has md5 but no pHash (the other reasons: treeoflife.evalsets.files).

_Item = tuple[str, int, int]  # (image_file, image_offset, image_size)


def _hash_stored_batch(
    data_root: str, items: list[_Item]
) -> tuple[list[str | None], np.ndarray, list[str | None]]:
    """Worker: read a batch of stored images, return (md5s, phashes, errors).

    A read failure gives md5 None and an error; a decode failure gives an md5 and an error.
    """
    datas: list[bytes] = []
    md5s: list[str | None] = []
    read_errors: list[str | None] = []
    for image_file, offset, size in items:
        try:
            data = read_image_bytes(data_root, image_file, offset, size)
        except OSError as exc:
            datas.append(b"")
            md5s.append(None)
            read_errors.append(f"read failed: {exc}")
            continue
        datas.append(data)
        md5s.append(md5_hex(data))
        read_errors.append(None)
    hashes, decode_errors = phash_many_lenient(datas)
    errors = [r if r is not None else d for r, d in zip(read_errors, decode_errors, strict=True)]
    return md5s, hashes, errors


def _batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def hash_catalog(
    catalog: pa.Table,
    data_root: Path,
    workers: int = 2,
    batch_size: int = 256,
    progress: Progress | None = None,
) -> pa.Table:
    """md5 and pHash of every "ok" row of a source catalog, in input order (schema HASHES).

    The md5 is recomputed from the stored bytes and must equal the catalog's (a mismatch or an
    unreadable store raises InputError naming the key). An ok row whose bytes do not decode
    keeps its md5 and gets a null phash (logged). Batches run in a process pool
    (`workers <= 1`: in this process); the output order never depends on the worker count.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    progress = or_null(progress)
    ok = catalog.filter(pc.equal(catalog["status"], IngestStatus.OK))
    keys = ok["key"].to_pylist()
    expected_md5 = ok["md5"].to_pylist() if "md5" in ok.column_names else [None] * len(keys)
    files = ok["image_file"].to_pylist()
    offsets = ok["image_offset"].to_pylist()
    sizes = ok["image_size"].to_pylist()
    for key, f, o, s in zip(keys, files, offsets, sizes, strict=True):
        if f is None or o is None or s is None:
            raise InputError(f"catalog row {key!r} has status ok but no image location")
    items: list[_Item] = list(zip(files, offsets, sizes, strict=True))
    spans = _batches(len(items), batch_size)
    # a folder, or a treeoflife.storage Storage (object storage, read by range)
    root = str(data_root) if isinstance(data_root, (str, Path)) else data_root

    md5_out: list[str] = []
    phash_out: list[int | None] = []
    n_undecodable = 0
    progress.start("hash images", len(items))
    results = _run_batches(root, items, spans, workers)
    try:
        for (start, stop), (md5s, hashes, errors) in zip(spans, results, strict=True):
            for i in range(start, stop):
                j = i - start
                key = keys[i]
                if md5s[j] is None:
                    raise InputError(f"cannot read the stored image of {key!r}: {errors[j]}")
                if expected_md5[i] is not None and md5s[j] != expected_md5[i]:
                    raise InputError(
                        f"md5 mismatch for {key!r}: catalog says {expected_md5[i]}, "
                        f"stored bytes hash to {md5s[j]} ({files[i]} @ {offsets[i]})"
                    )
                md5_out.append(md5s[j])
                if errors[j] is None:
                    phash_out.append(int(hashes[j]))
                else:
                    n_undecodable += 1
                    log.warning("no phash for %s: %s", key, errors[j])
                    phash_out.append(None)
            progress.advance(stop - start)
    finally:
        results.close()  # stops the pool now, also when a mismatch raised
        progress.finish()
    if n_undecodable:
        log.warning("%d of %d ok images did not decode (phash null)", n_undecodable, len(keys))
    return pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "md5": pa.array(md5_out, pa.string()),
            "phash": pa.array(phash_out, pa.uint64()),
            "phash_algo": pa.array([PHASH_ALGO] * len(keys), pa.string()),
        },
        schema=HASHES,
    )


def _run_batches(root: str, items: list[_Item], spans: list[tuple[int, int]], workers: int):
    """Yield each batch's result in batch order; at most 2 x workers batches in flight."""
    if len(spans) <= 1:
        workers = 1
    # spawn: the caller may hold threads (DuckDB, Prefect) that fork would copy mid-state.
    hash_batch = functools.partial(_hash_stored_batch, root)
    yield from ProcessPoolMapper(workers, "spawn")(hash_batch, (items[a:b] for a, b in spans))


def hash_evalset_rows(
    name: str, rows: list[dict], root: Path, cache: Path | None = None
) -> pa.Table:
    """md5 + pHash of every image an evaluation set lists, in list order (schema EVAL_HASHES).

    `rows` are an evaluation set's rows (treeoflife.evalsets.layouts): `filepath` relative to
    `root` (and confined to it), rank columns (`cls` for class), `common_name`, `class` (the
    set's label). A row whose file is missing, outside `root`, unreadable or not an image is
    kept with status "failed" and a reason. Raises InputError when no row is usable.

    `cache` (a Parquet file this function keeps) holds each file's hashes under its filepath,
    size and mtime: a file unchanged since is not read again, a replaced one is.
    """
    folder = SetFolder(root)
    known = _read_eval_cache(cache)
    seen: dict[tuple, tuple] = {}
    columns: dict[str, list] = {c: [] for c in EVAL_HASHES.names}
    for line, row in enumerate(rows, start=2):
        filepath = row.get("filepath") or ""
        columns["evalset"].append(name)
        columns["eval_key"].append(filepath)
        for column, value in label_columns(row).items():
            columns[column].append(value)
        stamp = _eval_stamp(folder, filepath)
        if stamp is not None and stamp in known:
            md5, phash, reason = known[stamp]
        else:
            md5, phash, reason = _hash_eval_file(folder, filepath, name, line)
        if stamp is not None:
            seen[stamp] = (md5, phash, reason)
        columns["md5"].append(md5)
        columns["phash"].append(phash)
        columns["phash_algo"].append(PHASH_ALGO if phash is not None else None)
        columns["status"].append(IngestStatus.OK if reason is None else IngestStatus.FAILED)
        columns["reason"].append(reason)
    check_images(name, folder.root, list(zip(columns["eval_key"], columns["reason"], strict=True)))
    if cache is not None:
        _write_eval_cache(cache, seen)
    return pa.table(columns, schema=EVAL_HASHES)


_EVAL_CACHE = pa.schema(
    [
        pa.field("filepath", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("md5", pa.string()),
        pa.field("phash", pa.uint64()),
        pa.field("reason", pa.string()),
    ]
)


def _eval_stamp(folder: SetFolder, filepath: str) -> tuple | None:
    """(filepath, size, mtime) of an evaluation image inside its folder; None when absent."""
    path, _ = folder.locate(filepath)
    try:
        st = path.stat() if path is not None else None
    except OSError:
        return None
    return (filepath, st.st_size, st.st_mtime_ns) if st is not None else None


def _read_eval_cache(cache: Path | None) -> dict[tuple, tuple]:
    if cache is None or not Path(cache).exists():
        return {}
    try:
        rows = pq.read_table(cache, schema=_EVAL_CACHE).to_pylist()
    except (OSError, pa.ArrowException):
        return {}  # unreadable: everything is hashed again
    return {
        (r["filepath"], r["size"], r["mtime_ns"]): (r["md5"], r["phash"], r["reason"]) for r in rows
    }


def _write_eval_cache(cache: Path, seen: dict[tuple, tuple]) -> None:
    rows = [
        dict(zip(_EVAL_CACHE.names, (*stamp, *value), strict=True))
        for stamp, value in sorted(seen.items())
    ]
    write_parquet_atomic(pa.Table.from_pylist(rows, schema=_EVAL_CACHE), cache)


def _hash_eval_file(
    folder: SetFolder, filepath: str, name: str, line: int
) -> tuple[str | None, int | None, str | None]:
    """(md5, phash, failure reason) of one evaluation image."""
    data, reason = folder.read(filepath)
    if data is None:
        if reason == Reason.MISSING_FILEPATH:
            log.warning("evaluation set %s line %d: empty filepath", name, line)
        elif reason == Reason.UNREADABLE:
            log.warning("evaluation set %s: cannot read %s", name, folder.root / filepath)
        elif reason != Reason.MISSING_FILE:
            log.warning("evaluation set %s line %d: %s: %r", name, line, reason, filepath)
        return None, None, reason
    md5 = md5_hex(data)
    hashes, errors = phash_many_lenient([data])
    if errors[0] is not None:
        log.warning("evaluation set %s: %s is not an image: %s", name, filepath, errors[0])
        return md5, None, Reason.NOT_AN_IMAGE
    return md5, int(hashes[0]), None


@dataclass(frozen=True)
class HashPart:
    """One catalog part to hash, by a task that may run on another machine: the part and the
    image stores are read from `inputs` (the data root, or shared storage the driver pushed
    them to), the hashes written to `outputs` (treeoflife.exchange), by relative paths."""

    part: str  # the source catalog part (parquet), relative to `inputs`
    target: str  # where its hashes go (parquet), relative to `outputs`
    inputs: Storage
    outputs: Storage
    workers: int = 1  # processes this part may use where it runs (1 inside a Dask worker)
    digest: str | None = None  # sha256 of the catalog part's bytes, kept in the target


SOURCE_DIGEST = b"treeoflife.hashed_part_sha256"


def part_digest(path: str | Path) -> str:
    """What a hash part is keyed by: the bytes of the catalog part it hashes (not its name)."""
    return file_sha256(path)


def _target_digest(target: Path | BinaryIO) -> str | None:
    """The sha256 of the catalog part a target was hashed from (a file here, or one opened
    on shared storage); None: unreadable or without it."""
    try:
        value = (pq.read_schema(target).metadata or {}).get(SOURCE_DIGEST)
    except (OSError, pa.ArrowException):
        return None
    return value.decode() if value is not None else None


def _hashed_from(item: HashPart, folder: Storage) -> bool:
    """Whether the target in `folder` was hashed from `item`'s catalog part: one an earlier
    build of other catalog bytes left at the same place on shared storage was not."""
    if item.digest is None:
        return True
    try:
        with folder.open(item.target) as fh:
            return _target_digest(fh) == item.digest
    except OSError:  # gone meanwhile
        return False


def _with_digest(table: pa.Table, digest: str | None) -> pa.Table:
    if digest is None:
        return table
    return table.replace_schema_metadata({**(table.schema.metadata or {}), SOURCE_DIGEST: digest})


def hash_catalog_part(item: HashPart, progress: Progress | None = None) -> int:
    """Hash one catalog part into `item.target` (atomically); a finished target is kept.

    Returns the number of hashed rows. Safe to run twice (a retried worker): the second run
    finds the target (kept only when hashed from the same catalog bytes), or writes the same
    bytes under the same name.
    """
    outputs = item.outputs
    if outputs.exists(item.target) and _hashed_from(item, outputs):
        with outputs.open(item.target) as fh:
            return pq.read_metadata(fh).num_rows
    with item.inputs.open(item.part) as fh:
        catalog = pq.read_table(fh, schema=SOURCE_CATALOG)
    workers = local_processes(item.workers)
    table = hash_catalog(catalog, item.inputs, workers=workers, progress=progress)
    with output_path(outputs, item.target) as local:  # as write_parquet_atomic writes
        pq.write_table(_with_digest(table, item.digest), local, compression="zstd")
    return table.num_rows


def _under(part: Path, root: Path) -> str:
    """A catalog part's path relative to the data root (where tasks find it)."""
    part = part.resolve()
    if not part.is_relative_to(root):
        raise InputError(f"catalog part {part} is not inside the data root {root}")
    return part.relative_to(root).as_posix()


def hash_catalog_parts(
    parts: list[Path],
    out_dir: Path,
    data_root: Path,
    run_id: str,
    workers: int = 2,
    progress: Progress | None = None,
    run_marker: Path | None = None,
    map_parts: PartMapper | None = None,
    shared: FsspecStorage | None = None,
) -> pa.Table:
    """hash_catalog over a source's catalog parts, resumable part by part; all rows, in order.

    Each part's hashes land in `out_dir/<part name>` (atomically), so an interrupted run
    redoes only the parts it had not finished. A target is keyed by the bytes of the catalog
    part it hashed (their sha256 is in its metadata): a changed part is hashed again, an
    unchanged one is not, whatever else changed. `run_id` names the algorithm (and whatever
    else the caller wants to invalidate every part with): parts written under another id are
    discarded, never mixed.
    The id is kept in `run_marker` (default `out_dir/.run_id`; the build keeps it in its
    state folder, since the id holds absolute paths and outputs must not).

    `map_parts` (treeoflife.fanout) runs the unfinished parts, e.g. on a Dask cluster through
    Prefect; by default they run here one after another, each over `workers` processes.
    With `shared` (object storage), the tasks read the parts and image stores from it (at
    their data-root-relative names: the caller pushed the image stores; the parts are pushed
    here) and leave their targets there, which are then pulled into `out_dir`.
    """
    out_dir = Path(out_dir)
    marker = Path(run_marker) if run_marker is not None else out_dir / ".run_id"
    if out_dir.exists() and (not marker.exists() or marker.read_text() != run_id):
        for old in out_dir.glob("*.parquet"):
            old.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    write_text_atomic(marker, run_id)

    targets = [out_dir / Path(part).name for part in parts]
    digests = [part_digest(part) for part in parts]
    for target, digest in zip(targets, digests, strict=True):
        if target.exists() and _target_digest(target) != digest:
            target.unlink()  # made from other catalog bytes
    names = {t.name for t in targets}
    for old in out_dir.glob("*.parquet"):
        if old.name not in names:
            old.unlink()  # a part no longer in the catalog
    # Tasks read the parts and image stores from `inputs` (shared storage: the caller pushed
    # the image stores, the parts are pushed here) and leave their targets in `outputs` (on
    # shared storage under the run id: a target of other inputs or algorithm is never kept).
    root = Path(data_root).resolve()
    inputs = exchange_folder(root, root, shared)
    outputs = exchange_folder(out_dir, root, shared, under=f"{SHARED_WORK}/{run_id}")

    def to_do(part: tuple[Path, Path, str]) -> HashPart | Done:
        path, target, digest = part
        if target.exists():
            return DONE
        rel = _under(Path(path), root)
        inputs.put(path, rel)  # nothing to copy when `inputs` is the data root
        return HashPart(rel, target.name, inputs, outputs, workers, digest)

    if map_parts is None:  # here, one after another: each part reports its rows
        hash_part, done_parts = functools.partial(hash_catalog_part, progress=progress), None
    else:  # elsewhere: the parts to hash are counted as they come back
        hash_part, done_parts = hash_catalog_part, or_null(progress)
        done_parts.start("hash images (parts)", sum(not t.exists() for t in targets))

    def pulled(item: HashPart, _rows: int) -> None:
        """What a task left on shared storage comes back; its copy there goes."""
        current = functools.partial(_hashed_from, item)
        if not pull_outputs(outputs, [item.target], out_dir, move=True, is_current=current):
            raise OutputError(
                f"{outputs.url(item.target)}: its task finished without it (hashed from "
                "this catalog part)"
            )
        if done_parts is not None:
            done_parts.advance(1)

    for _ in Parts(zip(parts, targets, digests, strict=True), to_do).run(
        hash_part, map_parts, pulled
    ):
        pass
    if done_parts is not None:
        done_parts.finish()
        remove_stale_temporaries(out_dir)  # a worker that died mid-part left its temporary
    tables = [pq.read_table(target, schema=HASHES) for target in targets]
    if not tables:
        return HASHES.empty_table()
    return pa.concat_tables(tables).combine_chunks()
