"""Where fan-out tasks read their inputs and leave their outputs: a folder or an fsspec URL.

A task (treeoflife.fanout) may run on another machine. With a POSIX folder every worker
mounts (one machine, NFS) the task uses the data root itself: `LocalStorage`. With object
storage (S3, GCS, Azure, any fsspec URL), the driver keeps its own data root (DuckDB, state,
catalog) and the fan-out stages exchange files through a shared prefix: `FsspecStorage`. The
driver pushes what tasks read (a split's row table, catalog parts, image stores), tasks read
image bytes by range and write each output as one whole object, and the driver pulls the
outputs back into its data root (treeoflife.exchange), so every later stage and every output
is the same as a build on one disk.

Both kinds take paths relative to their root and share one contract: a file under its final
name is complete. A local write goes to a temporary name and is renamed; an object store
shows an object only once its upload (single or multipart) has completed. Storage objects are
small and picklable: the fsspec filesystem is opened lazily in each process that uses it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from treeoflife.errors import ConfigError, OutputError
from treeoflife.io import atomic_path, write_bytes_atomic


def is_url(location: str | Path) -> bool:
    """True for `proto://...` (not for a plain or `file://`-less local path)."""
    return isinstance(location, str) and "://" in location


class LocalStorage:
    """A folder on a disk every worker sees (the data root on one machine or on NFS)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, LocalStorage) and other.root == self.root

    def __hash__(self) -> int:
        return hash(("local", str(self.root)))

    def url(self, rel: str) -> str:
        return str(self.root / rel)

    def local_path(self, rel: str) -> Path:
        return self.root / rel

    def folder(self, rel: str) -> LocalStorage:
        """The folder `rel` below this one, as a storage of its own."""
        return LocalStorage(self.root / rel) if rel else self

    def exists(self, rel: str) -> bool:
        return (self.root / rel).is_file()

    def size(self, rel: str) -> int | None:
        try:
            return (self.root / rel).stat().st_size
        except FileNotFoundError:
            return None

    def read_bytes(self, rel: str, start: int | None = None, stop: int | None = None) -> bytes:
        with open(self.root / rel, "rb") as fh:
            if start is None:
                return fh.read()
            fh.seek(start)
            return fh.read(None if stop is None else stop - start)

    @contextlib.contextmanager
    def open(self, rel: str) -> Iterator[IO[bytes]]:
        with open(self.root / rel, "rb") as fh:
            yield fh

    def write_bytes(self, rel: str, data: bytes) -> None:
        write_bytes_atomic(self.root / rel, data)

    def put(self, local: str | Path, rel: str) -> None:
        final = self.root / rel
        if Path(local).resolve() == final.resolve():
            return
        with atomic_path(final) as tmp:
            shutil.copyfile(local, tmp)

    def get(self, rel: str, local: str | Path) -> None:
        LocalStorage(Path(local).parent).put(self.root / rel, Path(local).name)

    def remove(self, rel: str) -> None:
        (self.root / rel).unlink(missing_ok=True)

    def remove_tree(self, rel: str) -> None:
        shutil.rmtree(self.root / rel, ignore_errors=True)

    def list(self, rel: str) -> list[str]:
        """Names of the files directly under folder `rel` (none if it does not exist)."""
        folder = self.root / rel
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_file())


_FILESYSTEMS: dict[tuple[str, str], tuple[Any, str]] = {}
_FS_LOCK = threading.Lock()


@dataclass(frozen=True)
class FsspecStorage:
    """A prefix on any fsspec filesystem (`s3://bucket/prefix`, `gs://...`, `memory://...`).

    `options` go to the filesystem (e.g. `{"client_kwargs": {"endpoint_url": ...}}` for an
    S3-compatible server); credentials come from the environment as the backend reads them.
    Listing caches are off: other processes write here, and a cached "absent" would lie.
    """

    location: str
    options: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if not is_url(self.location):
            raise ConfigError(f"storage.shared: {self.location!r} is not a URL (proto://...)")

    def _fs(self):
        key = (self.location, json.dumps(self.options, sort_keys=True, default=str))
        with _FS_LOCK:
            if key not in _FILESYSTEMS:
                import fsspec

                protocol = self.location.split("://", 1)[0]
                options = dict(self.options)
                if protocol in ("s3", "s3a", "gs", "gcs", "abfs", "az"):
                    options.setdefault("use_listings_cache", False)
                try:
                    fs, root = fsspec.core.url_to_fs(self.location, **options)
                except (ImportError, ValueError) as exc:
                    msg = f"storage.shared: cannot open {self.location}: {exc}"
                    raise ConfigError(msg) from exc
                _FILESYSTEMS[key] = (fs, root.rstrip("/"))
            return _FILESYSTEMS[key]

    def _path(self, rel: str) -> str:
        fs, root = self._fs()
        return f"{root}/{rel}" if rel else root

    def url(self, rel: str) -> str:
        return f"{self.location.rstrip('/')}/{rel}"

    def local_path(self, rel: str) -> None:
        return None

    def folder(self, rel: str) -> FsspecStorage:
        """The prefix `rel` below this one, as a storage of its own."""
        return FsspecStorage(self.url(rel), self.options) if rel else self

    def exists(self, rel: str) -> bool:
        fs, _ = self._fs()
        return bool(fs.isfile(self._path(rel)))

    def size(self, rel: str) -> int | None:
        fs, _ = self._fs()
        try:
            return int(fs.size(self._path(rel)))
        except FileNotFoundError:
            return None

    def read_bytes(self, rel: str, start: int | None = None, stop: int | None = None) -> bytes:
        fs, _ = self._fs()
        return fs.cat_file(self._path(rel), start=start, end=stop)

    @contextlib.contextmanager
    def open(self, rel: str) -> Iterator[IO[bytes]]:
        fs, _ = self._fs()
        with fs.open(self._path(rel), "rb") as fh:
            yield fh

    def write_bytes(self, rel: str, data: bytes) -> None:
        fs, _ = self._fs()
        with self._writing(rel):
            fs.pipe_file(self._path(rel), data)

    def put(self, local: str | Path, rel: str) -> None:
        fs, _ = self._fs()
        with self._writing(rel):
            fs.put_file(str(local), self._path(rel))

    def get(self, rel: str, local: str | Path) -> None:
        fs, _ = self._fs()
        with atomic_path(local) as tmp:
            fs.get_file(self._path(rel), str(tmp))

    def remove(self, rel: str) -> None:
        fs, _ = self._fs()
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(self._path(rel))

    def remove_tree(self, rel: str) -> None:
        fs, _ = self._fs()
        with contextlib.suppress(FileNotFoundError):
            fs.rm(self._path(rel), recursive=True)

    def list(self, rel: str) -> list[str]:
        fs, _ = self._fs()
        try:
            entries = fs.ls(self._path(rel), detail=True)
        except FileNotFoundError:
            return []
        return sorted(e["name"].rsplit("/", 1)[-1] for e in entries if e["type"] == "file")

    @contextlib.contextmanager
    def _writing(self, rel: str) -> Iterator[None]:
        try:
            yield
        except PermissionError as exc:
            raise OutputError(f"cannot write {self.url(rel)}: {exc}") from exc


Storage = LocalStorage | FsspecStorage


def open_storage(location: str | Path, options: dict | None = None) -> Storage:
    """LocalStorage for a path (or `file://` URL), FsspecStorage for any other URL."""
    if isinstance(location, str) and location.startswith("file://"):
        location = location[len("file://") :]
    if is_url(location):
        return FsspecStorage(str(location), dict(options or {}))
    return LocalStorage(location)


@contextlib.contextmanager
def output_path(storage: Storage, rel: str, *, renames_itself: bool = False) -> Iterator[Path]:
    """A local path to write `rel` to; it is `rel` in `storage` once the block ends without
    error (atomically: renamed on a disk, uploaded whole to object storage). A writer that
    `renames_itself` into place (ShardFile) gets the final path on a disk."""
    local = storage.local_path(rel)
    if local is not None:
        if renames_itself:
            yield local
            return
        with atomic_path(local) as tmp:
            yield tmp
        return
    with tempfile.TemporaryDirectory(prefix="treeoflife-") as scratch:
        tmp = Path(scratch) / Path(rel).name
        yield tmp
        storage.put(tmp, rel)


def shared_storage(cfg) -> FsspecStorage | None:
    """A BuildConfig's `storage.shared` (the object storage fan-out tasks exchange files
    through), or None when they use the data root itself."""
    if cfg.storage.shared is None:
        return None
    return FsspecStorage(cfg.storage.shared, dict(cfg.storage.options))


def _read_ledger(ledger: Path) -> dict[str, list]:
    """rel -> [shared url, size, mtime_ns] from the JSON-lines ledger (the last line wins; a
    line cut by a kill is skipped)."""
    entries: dict[str, list] = {}
    try:
        lines = Path(ledger).read_text(encoding="utf-8").splitlines()
    except OSError:
        return entries
    for line in lines:
        try:
            rel, *stamp = json.loads(line)
        except ValueError:
            continue
        entries[rel] = stamp
    return entries


def _stamp(shared: Storage, local: Path) -> list:
    st = local.stat()
    return [shared.url(""), st.st_size, st.st_mtime_ns]


def _append(ledger: Path, rel: str, stamp: list) -> None:
    ledger.parent.mkdir(parents=True, exist_ok=True)
    with open(ledger, "a", encoding="utf-8") as fh:
        fh.write(json.dumps([rel, *stamp]) + "\n")


def push_files(local_root: str | Path, rels: list[str], shared: Storage, ledger: Path) -> int:
    """Copy files (relative to `local_root`) to `shared` unless they are there already, as
    rsync judges it: the same local size and mtime as when this driver last pushed (or pulled)
    them, kept in the JSON-lines `ledger`, and the same size there. Resumable: each copied file
    is noted as soon as it is there. Returns the number of files copied."""
    local_root, ledger = Path(local_root), Path(ledger)
    known = _read_ledger(ledger)
    copied = 0
    for rel in rels:
        stamp = _stamp(shared, local_root / rel)
        if known.get(rel) == stamp and shared.size(rel) == stamp[1]:
            continue
        shared.put(local_root / rel, rel)
        _append(ledger, rel, stamp)
        copied += 1
    return copied


def note_copied(ledger: Path, rel: str, storage: Storage, local: str | Path) -> None:
    """Note that `rel` in `storage` and the file at `local` are the same (a pull): a later
    push_files does not send it back."""
    _append(Path(ledger), rel, _stamp(storage, Path(local)))
