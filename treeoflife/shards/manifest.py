"""A split's records beside its shards, and the one rule by which a rerun keeps a shard.

- `sizes.json`: samples per shard (open_clip reads it instead of `--train-num-samples`);
- `manifest.json`: the settings the bytes depend on, and per shard its samples, bytes, sha256
  and the fingerprint of its inputs (name, rows, settings): the resume and verify record;
- `index.parquet`: one row per sample (treeoflife_id, key, shard, position, byte offset and size
  of the sample and of its jpg), one row group per shard, so a reader seeks straight to a sample.

The resume rule (`kept_shard`): a shard on disk is kept when its manifest entry names the same
inputs (fingerprint of the rows the plan puts in it), and the file has the entry's size and
sha256; anything else is written again. Same inputs and settings give the same bytes, so a kept
shard is the shard a fresh build would write.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from treeoflife.errors import InputError
from treeoflife.io import atomic_path, file_sha256, write_text_atomic
from treeoflife.schemas import SHARD_INDEX
from treeoflife.shards.parts import dump_json
from treeoflife.shards.sample_json import sample_json
from treeoflife.shards.shard_file import ShardInfo, scan_shard

log = logging.getLogger(__name__)

SIZES_FILE = "sizes.json"
MANIFEST_FILE = "manifest.json"
INDEX_FILE = "index.parquet"
INDEX_SCHEMA = SHARD_INDEX
IMAGE_LOCATION = ("image_file", "image_offset", "image_size")
_SHARD_FILE = re.compile(r"^shard-(\d{6,})\.tar$")


def shard_index(name: str) -> int | None:
    """The number of a shard file name (shard-000012.tar -> 12), None for any other name."""
    match = _SHARD_FILE.match(name)
    return int(match[1]) if match else None


class Fingerprint:
    """What a shard's bytes depend on: its name, the settings and each row (its json member and
    its image's location), added as the shard is written."""

    def __init__(self, name: str, params: Mapping):
        self._h = hashlib.sha256(dump_json({"shard": name, **params}))

    def add(self, json_member: bytes, row: Mapping) -> None:
        self._h.update(json_member)
        self._h.update(dump_json([row.get(c) for c in IMAGE_LOCATION]))

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def fingerprint_rows(name: str, rows: Sequence[Mapping], params: Mapping) -> str:
    """The fingerprint of shard `name` made of `rows` (as placed in it) with `params`."""
    fp = Fingerprint(name, params)
    for row in rows:
        fp.add(dump_json(sample_json(row)), row)
    return fp.hexdigest()


@dataclass(frozen=True)
class ShardEntry:
    """One shard's line in manifest.json."""

    samples: int
    bytes: int
    sha256: str
    fingerprint: str

    @classmethod
    def from_dict(cls, value) -> ShardEntry:
        """An entry read from JSON (ValueError naming what is wrong)."""
        if not isinstance(value, dict):
            raise ValueError(f"entry is {type(value).__name__}, not an object")
        types = {"samples": int, "bytes": int, "sha256": str, "fingerprint": str}
        for key, kind in types.items():
            v = value.get(key)
            if not isinstance(v, kind) or isinstance(v, bool) or (kind is int and v < 0):
                raise ValueError(f"{key} is {v!r}")
        return cls(**{k: value[k] for k in types})

    def info(self, name: str) -> ShardInfo:
        return ShardInfo(name, self.samples, self.bytes, self.sha256)


@dataclass(frozen=True)
class ShardResult:
    """A shard of a split, kept or written: its entry and index rows (in shard order)."""

    name: str
    entry: ShardEntry
    index: pa.Table

    @property
    def info(self) -> ShardInfo:
        return self.entry.info(self.name)


def index_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=INDEX_SCHEMA)


class SplitManifest:
    """manifest.json of a split: the settings (`params`) and an entry per shard name."""

    def __init__(self, params: dict, shards: dict[str, ShardEntry] | None = None):
        self.params = params
        self.shards: dict[str, ShardEntry] = dict(shards or {})

    @classmethod
    def read(cls, split_dir: Path) -> tuple[SplitManifest, dict[str, str]]:
        """The manifest, and {name: problem} of its malformed entries (left out). InputError
        when the file is missing, not JSON or not shaped as a manifest."""
        path = Path(split_dir) / MANIFEST_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{MANIFEST_FILE}: cannot read it: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("shards"), dict):
            raise InputError(f"{MANIFEST_FILE}: malformed: no object of shards")
        params = data.get("params") if isinstance(data.get("params"), dict) else {}
        manifest, problems = cls(params), {}
        for name, value in data["shards"].items():
            try:
                if shard_index(name) is None:
                    raise ValueError("not a shard file name")
                manifest.shards[name] = ShardEntry.from_dict(value)
            except ValueError as exc:
                problems[name] = f"{MANIFEST_FILE}: malformed entry {name!r}: {exc}"
        return manifest, problems

    @classmethod
    def load(cls, split_dir: Path) -> SplitManifest:
        """What an earlier run recorded, as far as it is readable (nothing if not at all)."""
        try:
            return cls.read(split_dir)[0]
        except InputError as exc:
            if (Path(split_dir) / MANIFEST_FILE).exists():
                log.warning("%s: every shard will be checked by writing it again", exc)
            return cls({})

    def write(self, split_dir: Path) -> None:
        shards = {name: asdict(entry) for name, entry in sorted(self.shards.items())}
        manifest = {
            "params": self.params,
            "samples": sum(e.samples for e in self.shards.values()),
            "shards": shards,
        }
        text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
        write_text_atomic(Path(split_dir) / MANIFEST_FILE, text)

    def beyond(self, index: int) -> dict[str, ShardEntry]:
        """Entries of shards after number `index` (not reached yet by a rerun)."""
        return {n: e for n, e in self.shards.items() if (shard_index(n) or 0) > index}


def file_size(path: Path) -> int | None:
    try:
        return Path(path).stat().st_size
    except OSError:
        return None


def file_matches(path: Path, entry: ShardEntry) -> bool:
    """The file at `path` is the shard `entry` describes (size, then sha256)."""
    return file_size(path) == entry.bytes and file_sha256(path) == entry.sha256


def kept_shard(
    split_dir: Path,
    name: str,
    entry: ShardEntry | None,
    located_rows: Callable[[], Sequence[Mapping]],
    params: Mapping,
) -> ShardResult | None:
    """The shard `name` on disk, if it can stay: its entry's fingerprint is that of the rows
    the plan puts in it (`located_rows()`, asked only when the file has the entry's size) and
    the file has the entry's sha256. None: write it again."""
    path = Path(split_dir) / name
    if entry is None or entry.samples <= 0 or file_size(path) != entry.bytes:
        return None
    rows = located_rows()
    if len(rows) != entry.samples or fingerprint_rows(name, rows, params) != entry.fingerprint:
        return None
    if file_sha256(path) != entry.sha256:
        return None
    try:
        index = scan_shard(path)
    except InputError:
        return None
    log.info("shard %s already written, skipping", path)
    return ShardResult(name, entry, index_table(index))


@contextlib.contextmanager
def index_writer(split_dir: Path) -> Iterator[Callable[[pa.Table], None]]:
    """`add(index rows of a shard)`, in shard order, into index.parquet (one row group per
    shard); the file is in place once the block ends without error."""
    with (
        atomic_path(Path(split_dir) / INDEX_FILE) as tmp,
        pq.ParquetWriter(tmp, INDEX_SCHEMA, compression="zstd") as writer,
    ):
        yield writer.write_table


def write_sizes(split_dir: Path, infos: Sequence[ShardInfo]) -> None:
    sizes = {info.name: info.samples for info in infos}
    text = json.dumps(sizes, indent=1, sort_keys=True) + "\n"
    write_text_atomic(Path(split_dir) / SIZES_FILE, text)


def remove_stale_shards(split_dir: Path, keep: set[str]) -> None:
    """Remove shard files that are no longer part of the split (an earlier, longer plan)."""
    for path in sorted(Path(split_dir).glob("shard-*.tar")):
        if shard_index(path.name) is not None and path.name not in keep:
            log.warning("removing shard %s: no longer part of this split", path)
            path.unlink()
