"""Write webdataset shards that BioCLIP's tooling and stock open_clip both read.

One sample = `<id>.jpg`, BioCLIP's ten text members, a plain `<id>.txt` (the only caption stock
open_clip reads: it drops samples without one) and `<id>.json` (the catalog row). Members are
written in a fixed order with fixed tar metadata, so the same rows and config give the same bytes.
Each split folder also gets `sizes.json` (open_clip reads it instead of `--train-num-samples`) and
`manifest.json` (per-shard sample count, size, sha256 and input fingerprint: the resume record).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from treeoflife.errors import ImageRejected, InputError
from treeoflife.io import (
    TMP_SUFFIX,
    atomic_path,
    read_image_bytes,
    tar_member_info,
    write_text_atomic,
)
from treeoflife.progress import Progress, or_null
from treeoflife.schemas import CATALOG
from treeoflife.shards.resize import resize_for_shard
from treeoflife.shards.text import CAPTION_MEMBERS, caption_members, text_for

log = logging.getLogger(__name__)

SHARD_PATTERN = "shard-{:06d}.tar"
SIZES_FILE = "sizes.json"
MANIFEST_FILE = "manifest.json"
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_SHARD_FILE = re.compile(r"^shard-\d{6}\.tar$")
CATALOG_COLUMNS = tuple(CATALOG.names)


@dataclass(frozen=True)
class ShardInfo:
    name: str  # file name, e.g. shard-000000.tar
    samples: int
    bytes: int
    sha256: str


def assign_shards(
    keys_in_order: Sequence[str], split: str, samples_per_shard: int
) -> list[tuple[str, int]]:
    """(shard name like "train/shard-000000.tar", position) for each key, in the given order."""
    if samples_per_shard <= 0:
        raise ValueError(f"samples_per_shard must be > 0, got {samples_per_shard}")
    return [
        (f"{split}/{SHARD_PATTERN.format(i // samples_per_shard)}", i % samples_per_shard)
        for i in range(len(keys_in_order))
    ]


class _HashingWriter:
    """A write-only file wrapper that hashes and counts what goes through it."""

    def __init__(self, fh):
        self._fh = fh
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._fh.write(data)

    def tell(self) -> int:
        return self.size


def write_tar(path: Path, members: Iterable[tuple[str, bytes]]) -> tuple[int, str]:
    """Write (name, data) members to an uncompressed tar atomically; return (bytes, sha256)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        sink = _HashingWriter(fh)
        with tarfile.open(fileobj=sink, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, data in members:
                tar.addfile(tar_member_info(name, len(data)), io.BytesIO(data))
    return sink.size, sink.sha256.hexdigest()


def _dump_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _sample_members(sample: Mapping) -> list[tuple[str, bytes]]:
    key = sample.get("__key__")
    if not isinstance(key, str) or not _SAFE_KEY.match(key):
        raise ValueError(f"__key__ must be a webdataset-safe name without dots or slashes: {key!r}")
    missing = [m for m in ("jpg", *CAPTION_MEMBERS, "txt", "json") if m not in sample]
    if missing:
        raise ValueError(f"sample {key} lacks members {missing}")
    members = [(f"{key}.jpg", bytes(sample["jpg"]))]
    members += [(f"{key}.{m}", str(sample[m]).encode("utf-8")) for m in CAPTION_MEMBERS]
    members.append((f"{key}.txt", str(sample["txt"]).encode("utf-8")))
    members.append((f"{key}.json", _dump_json(sample["json"])))
    return members


def write_shard(path: Path, samples: Iterable[dict]) -> ShardInfo:
    """Write one shard (members per sample in the fixed order) atomically."""
    count = 0

    def members() -> Iterator[tuple[str, bytes]]:
        nonlocal count
        for sample in samples:
            yield from _sample_members(sample)
            count += 1

    size, sha = write_tar(Path(path), members())
    return ShardInfo(name=Path(path).name, samples=count, bytes=size, sha256=sha)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def catalog_json(row: Mapping) -> dict:
    """The `json` member: the row's CATALOG columns (not the image-store location)."""
    return {c: row.get(c) for c in CATALOG_COLUMNS}


def _fingerprint(rows: list[dict], params: dict) -> str:
    """What a shard's bytes depend on: its rows (md5 included) and the shard settings."""
    h = hashlib.sha256(_dump_json(params))
    for row in rows:
        h.update(_dump_json(catalog_json(row)))
        h.update(_dump_json([row.get(c) for c in ("image_file", "image_offset", "image_size")]))
    return h.hexdigest()


def _group_by_shard(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows per shard file name, each list in shard_position order (checked to be 0..n-1)."""
    prefixes = set()
    groups: dict[str, list[dict]] = {}
    for row in rows:
        shard, pos = row.get("shard"), row.get("shard_position")
        if not shard or pos is None:
            raise InputError(f"row {row.get('key')!r} has no shard/shard_position")
        prefix, _, name = str(shard).rpartition("/")
        if not _SHARD_FILE.match(name):
            raise InputError(f"row {row.get('key')!r}: bad shard name {shard!r}")
        prefixes.add(prefix)
        groups.setdefault(name, []).append(row)
    if len(prefixes) > 1:
        raise InputError(f"rows of one split span several shard folders: {sorted(prefixes)}")
    out = {}
    for name in sorted(groups):
        group = sorted(groups[name], key=lambda r: int(r["shard_position"]))
        positions = [int(r["shard_position"]) for r in group]
        if positions != list(range(len(group))):
            raise InputError(f"{name}: shard positions are not 0..{len(group) - 1}")
        out[name] = group
    return out


def _load_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        return dict(manifest.get("shards", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def _write_manifest(split_dir: Path, entries: dict[str, dict]) -> None:
    manifest = {
        "samples": sum(e["samples"] for e in entries.values()),
        "shards": dict(sorted(entries.items())),
    }
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    write_text_atomic(split_dir / MANIFEST_FILE, text)


def _is_finished(path: Path, entry: dict | None, fingerprint: str, samples: int) -> bool:
    if entry is None or not path.exists():
        return False
    if entry.get("fingerprint") != fingerprint or entry.get("samples") != samples:
        return False
    if path.stat().st_size != entry.get("bytes"):
        return False
    return file_sha256(path) == entry.get("sha256")


def write_split_shards(
    rows: list[dict],
    split_dir: Path,
    data_root: Path,
    image_size: int,
    jpeg_quality: int,
    text_type: str,
    seed: int,
    progress: Progress | None = None,
) -> list[ShardInfo]:
    """Write every shard of one split, then `sizes.json` and `manifest.json` beside them.

    Rows are catalog rows carrying `shard`/`shard_position` and the image-store location.
    A shard whose file and manifest entry (sha256 and input fingerprint) agree is skipped, so
    an interrupted run resumes; any other shard is (re)written. Shard files of this split that
    the rows no longer name are deleted. Memory holds one sample at a time.
    """
    split_dir, data_root = Path(split_dir), Path(data_root)
    progress = or_null(progress)
    groups = _group_by_shard(rows)
    params = {
        "image_size": image_size,
        "jpeg_quality": jpeg_quality,
        "text_type": text_type,
        "seed": seed,
    }
    # Fail before writing anything if a row cannot be captioned.
    for row in rows:
        if not row.get("treeoflife_id") or not _SAFE_KEY.match(str(row["treeoflife_id"])):
            tid = row.get("treeoflife_id")
            raise InputError(f"row {row.get('key')!r}: bad treeoflife_id {tid!r}")
        text_for(row, text_type, str(row["key"]), seed)

    split_dir.mkdir(parents=True, exist_ok=True)
    for tmp in sorted(split_dir.glob(f".*{TMP_SUFFIX}")):  # left by a killed run
        log.warning("removing interrupted temporary %s", tmp)
        tmp.unlink()
    old_entries = _load_manifest(split_dir / MANIFEST_FILE)
    entries = {n: e for n, e in old_entries.items() if n in groups}
    for stale in sorted(split_dir.glob("shard-*.tar")):
        if stale.name not in groups and _SHARD_FILE.match(stale.name):
            log.warning("removing shard %s: no longer part of this split", stale)
            stale.unlink()

    infos: list[ShardInfo] = []
    progress.start(f"shards {split_dir.name}", len(rows))
    for name, group in groups.items():
        path = split_dir / name
        fingerprint = _fingerprint(group, params)
        entry = old_entries.get(name)
        if _is_finished(path, entry, fingerprint, len(group)):
            log.info("shard %s already written, skipping", path)
            info = ShardInfo(name, entry["samples"], entry["bytes"], entry["sha256"])
        else:
            if path.exists():
                log.warning("rewriting shard %s (missing from manifest or changed)", path)
            info = write_shard(path, _samples(group, data_root, params))
            entries[name] = {**asdict(info), "fingerprint": fingerprint}
            entries[name].pop("name")
            _write_manifest(split_dir, entries)
        infos.append(info)
        progress.advance(len(group))
    progress.finish()

    sizes = {info.name: info.samples for info in infos}
    write_text_atomic(split_dir / SIZES_FILE, json.dumps(sizes, indent=1, sort_keys=True) + "\n")
    _write_manifest(split_dir, entries)
    return infos


def _samples(group: list[dict], data_root: Path, params: dict) -> Iterator[dict]:
    for row in group:
        try:
            data = read_image_bytes(
                data_root, row["image_file"], int(row["image_offset"]), int(row["image_size"])
            )
            jpg = resize_for_shard(data, params["image_size"], params["jpeg_quality"])
        except (ImageRejected, OSError, KeyError, TypeError) as exc:
            raise InputError(f"kept row {row.get('key')!r}: cannot read its image: {exc}") from exc
        yield {
            "__key__": str(row["treeoflife_id"]),
            "jpg": jpg,
            **caption_members(row),
            "txt": text_for(row, params["text_type"], str(row["key"]), params["seed"]),
            "json": catalog_json(row),
        }
