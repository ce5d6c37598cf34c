"""One shard file: a tar stream written under a temporary name, its index rows and sha256.

A shard is written by TarStream (one buffer per sample, sha256 on a second thread), then its
end-of-archive, fsync and rename may run on a background thread (ShardCloser) while the next
shard is written, so the disk and the CPU work at the same time. A file under its final name is
always a whole shard; an error leaves no partial one.
"""

from __future__ import annotations

import contextlib
import json
import tarfile
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from treeoflife.errors import InputError
from treeoflife.io import atomic_path, writing
from treeoflife.shards.parts import SAMPLE_MEMBERS, SampleParts, sample_parts
from treeoflife.shards.tar import BLOCK, RECORD, TarStream, padded


@dataclass(frozen=True)
class ShardInfo:
    name: str  # file name, e.g. shard-000000.tar
    samples: int
    bytes: int
    sha256: str


def closed_size(samples_bytes: int) -> int:
    """A shard's bytes once closed, from the bytes of its samples (end blocks, record padding)."""
    end = samples_bytes + 2 * BLOCK
    return end + (-end % RECORD)


class ShardFile:
    """One shard being written under a temporary name, with its index rows."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.count = 0  # samples written (write_shards keeps no index rows)
        self._ctx = atomic_path(self.path)
        self._fh = open(self._ctx.__enter__(), "wb")  # noqa: SIM115 - closed in close()/abort()
        self.stream = TarStream(self._fh, path=self.path)
        self.index: list[dict] = []
        self._ended = False  # end-of-archive written; the hashing may still go on
        self._finished = False  # renamed into place, or aborted

    def add_sample(self, parts: SampleParts, key: str, size: int) -> None:
        """Append one sample and its index row (`key`: its catalog key; `size`: its packed
        bytes, see packed_size)."""
        offsets = self.stream.add_sample(*parts)
        self.count += 1
        self.index.append(
            {
                "treeoflife_id": parts[0],
                "key": key,
                "shard": self.path.name,
                "position": len(self.index),
                "offset": offsets[0] - BLOCK,
                "size": size,
                "jpg_offset": offsets[0],
                "jpg_size": len(parts[1][1]),
            }
        )

    def final_size(self, extra: int) -> int:
        """The closed shard's bytes if a sample of `extra` packed bytes were added."""
        return closed_size(self.stream.size + extra)

    def end(self) -> None:
        """Write the end of the archive; the hashing of the last buffers goes on meanwhile."""
        self.stream.close(wait=False)
        self._ended = True

    def close(self) -> ShardInfo:
        """Finish the tar, wait for its hash, fsync it and rename it into place. After `end()`
        this may run on another thread (the caller writes the next shard meanwhile)."""
        try:
            if not self._ended:
                self.end()
            self.stream.drain()
            with writing(self.path):
                self._fh.close()
        except BaseException:
            self.abort()
            raise
        self._finished = True
        self._ctx.__exit__(None, None, None)  # fsync, rename; on an error removes the file
        return ShardInfo(
            self.path.name, self.count, self.stream.size, self.stream.sha256.hexdigest()
        )

    def abort(self) -> None:
        """Drop the temporary file (idempotent; a failed close has already called it)."""
        if self._finished:
            return
        self._finished = True
        with contextlib.suppress(BaseException):
            self.stream.drain()
        with contextlib.suppress(OSError):
            self._fh.close()
        self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)


class ShardCloser:
    """Closes finished shards (last hashing, fsync, rename) on one background thread, one at
    a time and in order, while the caller writes the next shard. `close` and `ready` return
    the results of closes that finished; `wait` returns the rest. On an error (the caller's or
    a close's), every started close still runs to its end: a shard is then either under its
    final name, complete, or gone."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-close")
        self._pending: Future | None = None

    def ready(self) -> list:
        if self._pending is None or not self._pending.done():
            return []
        return self.wait()

    def wait(self) -> list:
        pending, self._pending = self._pending, None
        return [] if pending is None else [pending.result()]

    def settle(self) -> list:
        """After an error elsewhere: the close under way, waited for; [] if it failed too."""
        try:
            return self.wait()
        except Exception:  # noqa: BLE001 - the caller is already failing with its own error
            return []

    def close(self, shard: ShardFile, then: Callable[[ShardInfo], object]) -> list:
        """Start closing `shard` (then `then(info)` on the closing thread); at most one close is
        in flight, so this first waits for the previous one and returns its result."""
        done = self.wait()
        shard.end()  # every byte is in the file; the hashing may go on
        self._pending = self._pool.submit(lambda: then(shard.close()))
        return done

    def __enter__(self) -> ShardCloser:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self._pending is not None:
            with contextlib.suppress(BaseException):
                self._pending.result()
        self._pool.shutdown(wait=True)


def write_shard(path: Path, samples: Iterable[dict]) -> ShardInfo:
    """Write one shard from ready samples ({__key__, jpg, captions, txt, json}) atomically."""
    return write_shards([(path, samples)])[0]


def write_shards(shards: Iterable[tuple[Path, Iterable[dict]]]) -> list[ShardInfo]:
    """Write shards from ready samples, one after another, each atomically; each shard's
    close overlaps the next one's writing. Every returned shard is under its final name; on an
    error none is left partial."""
    infos: list[ShardInfo] = []
    with ShardCloser() as closer:
        for path, samples in shards:
            shard = ShardFile(Path(path))
            try:
                for sample in samples:
                    shard.stream.add_sample(*sample_parts(sample))
                    shard.count += 1
            except BaseException:
                shard.abort()
                raise
            infos += closer.close(shard, lambda info: info)
        infos += closer.wait()
    return infos


def scan_shard(path: Path) -> list[dict]:
    """Index rows of a shard on disk, from its tar headers (data read only for the json key)."""
    return read_shard_layout(path)[0]


def read_shard_layout(path: Path) -> tuple[list[dict], list[dict]]:
    """(index rows, parsed json members) of a shard, one per sample, in shard order.

    Raises InputError when the tar does not parse or a sample's members are not the expected
    ones in the expected order.
    """
    rows: list[dict] = []
    metas: list[dict] = []
    expected = [f".{m}" for m in SAMPLE_MEMBERS]
    seen: list[str] = []

    def check_complete() -> None:
        if rows and seen != expected:
            tid = rows[-1]["treeoflife_id"]
            raise InputError(f"{path.name}: sample {tid} has members {seen}, expected {expected}")

    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                key, dot, suffix = info.name.partition(".")
                if not rows or key != rows[-1]["treeoflife_id"]:
                    check_complete()
                    rows.append(
                        {
                            "treeoflife_id": key,
                            "key": None,
                            "shard": path.name,
                            "position": len(rows),
                            "offset": info.offset,
                            "size": 0,
                            "jpg_offset": info.offset_data,
                            "jpg_size": info.size,
                        }
                    )
                    metas.append({})
                    seen = []
                seen.append(dot + suffix)
                current = rows[-1]
                end = info.offset_data + padded(info.size) - BLOCK
                current["size"] = end - current["offset"]
                if suffix == "json":
                    tar.fileobj.seek(info.offset_data)
                    metas[-1] = json.loads(tar.fileobj.read(info.size))
                    current["key"] = metas[-1]["key"]
        check_complete()
    except (tarfile.TarError, OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: cannot read shard: {exc}") from exc
    return rows, metas
