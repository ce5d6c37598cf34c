"""A shard sample as tar parts: key and members in their fixed order, as TarStream takes them.

One sample = `<id>.jpg`, BioCLIP's ten text members, a plain `<id>.txt` (the only caption stock
open_clip reads: it drops samples without one) and `<id>.json` (the catalog row, see
sample_json). The members are always in this order, with compact sorted JSON, so the same row
and settings give the same bytes whichever driver or task packs it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import orjson

from treeoflife.errors import InputError
from treeoflife.shards.sample_json import sample_json
from treeoflife.shards.settings import ShardSettings
from treeoflife.shards.tar import padded
from treeoflife.shards.text import CAPTION_MEMBERS, caption_members, text_for

SAMPLE_MEMBERS = ("jpg", *CAPTION_MEMBERS, "txt", "json")
"""Member suffixes of a sample, in the order they are written."""

SHARD_PATTERN = "shard-{:06d}.tar"
SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
"""A webdataset sample key: no dots (they start the suffix) and no slashes."""

SampleParts = tuple[str, tuple[str, bytes], tuple[tuple[str, bytes], ...], tuple[str, bytes]]
"""(key, ("jpg", image), ((caption suffix, text), ..., ("txt", text)), ("json", row))."""


def shard_name(index: int) -> str:
    """The file name of a split's shard number `index` (shard-000000.tar, ...)."""
    return SHARD_PATTERN.format(index)


def dump_json(value) -> bytes:
    """Compact JSON with sorted keys, UTF-8 (orjson: ~7x faster than json, same bytes for the
    strings, ints, bools and nulls of a catalog row; anything orjson refuses goes to json)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sample_parts(sample: Mapping) -> SampleParts:
    """A ready sample ({__key__, jpg, captions, txt, json}) as parts, members checked."""
    key = sample.get("__key__")
    if not isinstance(key, str) or not SAFE_KEY.match(key):
        raise ValueError(f"__key__ must be a webdataset-safe name without dots or slashes: {key!r}")
    missing = [m for m in SAMPLE_MEMBERS if m not in sample]
    if missing:
        raise ValueError(f"sample {key} lacks members {missing}")
    texts = tuple((m, str(sample[m]).encode("utf-8")) for m in CAPTION_MEMBERS)
    texts += (("txt", str(sample["txt"]).encode("utf-8")),)
    return key, ("jpg", bytes(sample["jpg"])), texts, ("json", dump_json(sample["json"]))


def sample_id(row: Mapping) -> str:
    """A catalog row's treeoflife_id, the key of its sample (InputError if unusable)."""
    tid = row.get("treeoflife_id")
    if not tid or not SAFE_KEY.match(str(tid)):
        raise InputError(f"row {row.get('key')!r}: bad treeoflife_id {tid!r}")
    return str(tid)


def row_parts(row: Mapping, jpg: bytes, settings: ShardSettings) -> SampleParts:
    """A catalog row's sample (its shard JPEG, BioCLIP captions, txt, json row) as parts."""
    tid = sample_id(row)
    try:
        captions = caption_members(row)
        txt = text_for(row, settings.text_type, str(row["key"]), settings.seed)
    except ValueError as exc:
        raise InputError(f"row {row.get('key')!r}: {exc}") from exc
    return sample_parts(
        {"__key__": tid, "jpg": jpg, **captions, "txt": txt, "json": sample_json(row)}
    )


def packed_size(parts: SampleParts) -> int:
    """Bytes a sample takes in a tar (headers, data, padding)."""
    _, first, texts, last = parts
    return padded(len(first[1])) + sum(padded(len(d)) for _, d in texts) + padded(len(last[1]))


def located(row: Mapping, split: str, index: int, position: int) -> dict:
    """`row` placed at `position` of the split's shard `index` (its json member says where)."""
    return {**row, "shard": f"{split}/{shard_name(index)}", "shard_position": position}
