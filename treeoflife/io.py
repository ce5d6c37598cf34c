"""File primitives every stage shares: atomic writes, the image store, stable hashing.

A file under its final name is always complete: writers go to a temporary name in the same
folder, fsync, then rename.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from treeoflife.errors import OutputError
from treeoflife.procs import process_alive

TMP_SUFFIX = ".tmp"

# Errors of the storage we write to (not of the data): reported as OutputError naming the file.
WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
)


def output_error(exc: BaseException, path: str | Path) -> OutputError | None:
    """An OutputError naming `path` for a storage error met while writing it, else None."""
    if not isinstance(exc, OSError) or exc.errno not in WRITE_ERRNOS:
        return None
    return OutputError(f"cannot write {path}: {exc.strerror or exc}")


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `final`; on success fsync it and rename it into place."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(final)
    live = _live_key(tmp)
    _LIVE_TEMPORARIES.add(live)
    try:
        try:
            yield tmp
        except OSError as exc:  # the caller's own writes: only an error on `tmp` is surely ours
            if exc.filename != str(tmp) or not (err := output_error(exc, final)):
                raise
            raise err from exc
        with writing(final):
            finish_temporary(tmp, final)
    finally:
        _LIVE_TEMPORARIES.discard(live)
        if tmp.exists():
            tmp.unlink()


# This process's temporaries being written (atomic_path): a sweep spares a temporary carrying
# our pid only when it is one of these, so one left by an earlier process that had the same
# pid (a restarted container reuses pids) is swept like any dead writer's.
_LIVE_TEMPORARIES: set[str] = set()


def _live_key(tmp: Path) -> str:
    return os.path.join(os.path.realpath(tmp.parent), tmp.name)


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn a storage error (disk full, read-only...) in the block into an OutputError naming
    `path`; use it only around code that writes nothing but `path`."""
    try:
        yield
    except OSError as exc:
        if not (err := output_error(exc, path)):
            raise
        raise err from exc


def temporary_name(final: str | Path) -> Path:
    """The temporary path atomic_path uses for `final` (hidden, carries the writer's pid)."""
    final = Path(final)
    return final.with_name(f".{final.name}.{os.getpid()}{TMP_SUFFIX}")


@contextlib.contextmanager
def scratch_temporary(final: str | Path) -> Iterator[Path]:
    """Yield `final`'s temporary name for scratch space never renamed into place (a spill
    folder): a sweep spares it while the block runs, and it is removed (file or folder) when
    the block ends, however it ends; one a killed run left is swept like any temporary."""
    tmp = temporary_name(final)
    live = _live_key(tmp)
    _LIVE_TEMPORARIES.add(live)
    try:
        yield tmp
    finally:
        _LIVE_TEMPORARIES.discard(live)
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def finish_temporary(tmp: Path, final: Path) -> None:
    """fsync a fully written temporary file, rename it to `final`, fsync the folder."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with writing(path), atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_parquet_atomic(table: pa.Table, path: str | Path, **kwargs) -> None:
    """Write a Parquet file reproducibly (no created_by drift within one pyarrow version)."""
    kwargs.setdefault("compression", "zstd")
    with writing(path), atomic_path(path) as tmp:
        pq.write_table(table, tmp, **kwargs)


_TEMPORARY = re.compile(r"^\..+?(?:\.(\d+))?\.tmp(?:\.[^/]*)?$")
"""`.name.<pid>.tmp` from atomic_path, and what tools derive from it (`.tmp.wal`, `.tmp.spill`)."""


def writer_alive(pid: int | None) -> bool:
    """Whether the process that named a temporary file (its pid in the name) still runs on
    this machine; this process counts as alive (its own temporaries are in use)."""
    return pid == os.getpid() or process_alive(pid)


def _in_use(path: Path, pid: int | None) -> bool:
    """Whether a temporary file (or what a tool derived from it, `.tmp.wal`) is being written:
    by another live process, or by this one through atomic_path."""
    if pid != os.getpid():
        return process_alive(pid)
    stem = f".{pid}{TMP_SUFFIX}"
    base = path.name[: path.name.index(stem) + len(stem)]
    return _live_key(path.with_name(base)) in _LIVE_TEMPORARIES


def temporary_writer(name: str) -> int | None:
    """The writer's pid in a temporary file's name (`.name.<pid>.tmp...`), else None."""
    match = _TEMPORARY.match(name)
    return int(match[1]) if match and match[1] else None


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete temporary files an interrupted run left in `folder` (recursively).

    A file whose writer is still alive (its pid is in the name) is left alone, so a stage can
    sweep a folder that concurrent stages of the same run also write to; one carrying this
    process's pid is left alone only while this process writes it. Directories named
    like temporaries (scratch or spill folders) are removed whole.
    """
    n = 0
    folder = Path(folder)
    if not folder.exists():
        return 0
    for p in sorted(folder.rglob(".*"), reverse=True):
        match = _TEMPORARY.match(p.name)
        if not match or not p.exists():
            continue
        if _in_use(p, int(match[1]) if match[1] else None):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        n += 1
    return n


@contextlib.contextmanager
def duckdb_writable(path: str | Path) -> Iterator[str]:
    """A path DuckDB can open `path`'s database at for writing; close the connection before
    the block ends.

    DuckDB reads a `?` in a database path as the start of options and puts the write-ahead
    log elsewhere (`/a?b/x.db` logs to `/a.wal?b/x.db`, even through a symlink: it resolves
    them), so a data root with a `?` in its path could not be built. Such a database is
    worked on in a scratch folder of the system's temporary space and copied back (renamed
    into place) when the block ends without an error; other paths are used as they are.
    """
    path = Path(path)
    if "?" not in str(path):
        yield str(path)
        return
    scratch = Path(tempfile.mkdtemp(prefix="treeoflife-duckdb-"))
    if "?" in str(scratch):
        raise OutputError(f"cannot write a DuckDB database under {path.parent}: it has a '?'")
    try:
        work = scratch / "db.duckdb"
        if path.exists():
            shutil.copyfile(path, work)
        yield str(work)
        with writing(path), atomic_path(path) as tmp:
            shutil.copyfile(work, tmp)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def stable_hash64(*parts: str) -> int:
    """A 64-bit hash of strings that is the same on every machine and run (unlike hash())."""
    h = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8)
    return int.from_bytes(h.digest(), "big")


def stream_sha256(fh: BinaryIO) -> str:
    """The sha256 of what is left in an open binary file (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    for block in iter(lambda: fh.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as fh:
        return stream_sha256(fh)


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def tar_member_info(name: str, size: int) -> tarfile.TarInfo:
    """A TarInfo with fixed metadata so the same members give the same bytes."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


class ImageStoreWriter:
    """Writes images into an uncompressed tar and reports where each member's bytes start.

    The catalog keeps (image_file, image_offset, image_size), so a later stage reads one image
    with a seek instead of scanning the tar. The tar is written under a temporary name and
    renamed by `close()`; an exception leaves nothing under the final name.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        try:
            self._fh = open(self._tmp, "wb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            self._ctx.__exit__(type(exc), exc, None)  # raises OutputError naming the path
            raise
        self._tar = tarfile.open(fileobj=self._fh, mode="w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115

    def add(self, name: str, data: bytes) -> tuple[int, int]:
        """Append a member; return (offset of its data, size)."""
        info = tar_member_info(name, len(data))
        header_offset = self._fh.tell()
        try:
            self._tar.addfile(info, io.BytesIO(data))
        except OSError as exc:  # disk full, file too large: say which file
            if err := output_error(exc, self.path):
                raise err from exc
            raise
        data_offset = header_offset + len(info.tobuf(format=tarfile.USTAR_FORMAT))
        return data_offset, len(data)

    def close(self) -> None:
        try:
            self._tar.close()
            self._fh.close()
        except OSError as exc:  # the last blocks did not fit: nothing stays behind
            self.abort()
            if err := output_error(exc, self.path):
                raise err from exc
            raise
        self._ctx.__exit__(None, None, None)

    def abort(self) -> None:
        """Drop the temporary file (the disk may be full: closing must not stop that)."""
        with contextlib.suppress(OSError):
            self._tar.close()
        with contextlib.suppress(OSError):
            self._fh.close()
        with contextlib.suppress(Exception):
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> ImageStoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def store_member_name(key: str, ext: str = "jpg") -> str:
    """Tar member name for a stable key (slashes would make folders)."""
    return key.replace("/", "__") + "." + ext


def read_image_bytes(data_root, image_file: str, offset: int, size: int) -> bytes:
    """One image's bytes from its store; `data_root` is a folder or a treeoflife.storage
    Storage (shared storage such as S3, read by range)."""
    if isinstance(data_root, (str, Path)):
        with open(Path(data_root) / image_file, "rb") as fh:
            fh.seek(offset)
            data = fh.read(size)
    else:
        data = data_root.read_bytes(image_file, offset, offset + size)
    if len(data) != size:
        raise OSError(f"short read from {image_file} at {offset}: {len(data)} of {size} bytes")
    return data
