"""Read stored images and resize them for the shards, in order, over worker processes.

The JPEG codec is the cost of the shard stage, so it fans out over processes; the results come
back in input order (so shard bytes do not depend on the worker count) and at most a bounded
window of chunks is in flight (so memory stays flat however many images there are).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

from treeoflife.errors import ImageRejected, InputError
from treeoflife.fanout import ProcessPoolMapper, batches
from treeoflife.io import read_image_bytes
from treeoflife.shards.resize import resize_for_shard

CHUNK = 32  # images per task: amortises the ~100 us of process round trip


def _location(row: dict) -> tuple[str, str, int, int]:
    try:
        return str(row["key"]), row["image_file"], int(row["image_offset"]), int(row["image_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"kept row {row.get('key')!r} has no image location: {exc}") from exc


def _encode_chunk(
    data_root: str, params: tuple[int, int, str], locations: list[tuple[str, str, int, int]]
) -> list[tuple[bool, bytes | str]]:
    """(True, jpeg bytes) or (False, error text) per location (runs in a worker)."""
    image_size, quality, mode = params
    out: list[tuple[bool, bytes | str]] = []
    for _key, image_file, offset, size in locations:
        try:
            data = read_image_bytes(data_root, image_file, offset, size)
            out.append((True, resize_for_shard(data, image_size, quality, mode)))
        except (ImageRejected, OSError) as exc:
            out.append((False, str(exc)))
    return out


def _unpack(rows: list[dict], results: list[tuple[bool, bytes | str]]) -> Iterator[tuple]:
    for row, (ok, value) in zip(rows, results, strict=True):
        if not ok:
            raise InputError(f"kept row {row.get('key')!r}: cannot read its image: {value}")
        yield row, value


def encoded_images(
    rows: Iterable[dict],
    data_root: Path,
    image_size: int,
    quality: int,
    mode: str,
    workers: int = 1,
) -> Iterator[tuple[dict, bytes]]:
    """(row, shard JPEG bytes) for each row, in the order of `rows`.

    workers <= 1 encodes in this process; otherwise in that many spawned processes, with at
    most 2 chunks per worker in flight.
    """
    params = (image_size, quality, mode)
    # a folder, or a treeoflife.storage Storage (object storage, read by range)
    root = str(data_root) if isinstance(data_root, (str, Path)) else data_root
    if workers <= 1:
        for row in rows:
            yield from _unpack([row], _encode_chunk(root, params, [_location(row)]))
        return
    # spawn: no fork of a threaded parent (Prefect, tqdm); only locations go to the workers,
    # the rows stay here (tee keeps the chunks in flight, at most the mapper's window)
    chunks, sent = itertools.tee(batches(rows, CHUNK))
    locations = ([_location(r) for r in chunk] for chunk in sent)
    encode = functools.partial(_encode_chunk, root, params)
    encoded = ProcessPoolMapper(workers, "spawn")(encode, locations)
    for results, chunk in zip(encoded, chunks, strict=True):
        yield from _unpack(chunk, results)
