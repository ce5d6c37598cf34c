"""Evaluation sets in CLIP_benchmark's webdataset layout (`clip_benchmark eval --dataset wds/NAME`).

    <out_dir>/<split>/0.tar .. <n-1>.tar    (unpadded numbers)
    <out_dir>/<split>/nshards.txt
    <out_dir>/classnames.txt                    one class name per line, line i = class i
    <out_dir>/zeroshot_classification_templates.txt   one template per line, `{c}` placeholder
    <out_dir>/dataset_type.txt                  "classification"

Samples hold `<id>.jpg`, `<id>.cls` (the class index as text) and `<id>.json` ({key, cls,
classname}); `<id>` is the item key made webdataset-safe. Items are sorted by key, tars have
fixed metadata, every file is written atomically and `nshards.txt` last (it marks completion).
"""

from __future__ import annotations

import json
import logging
import numbers
import re
from pathlib import Path

from treeoflife.io import write_text_atomic
from treeoflife.shards.tar import write_tar

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_NUMBERED_TAR = re.compile(r"^\d+\.tar$")


def wds_key(key: str) -> str:
    """A webdataset-safe sample name for a key (no dots or slashes)."""
    return _UNSAFE.sub("_", key)


def _check_lines(kind: str, values: list[str]) -> None:
    for value in values:
        if not value.strip() or "\n" in value or "\r" in value or value != value.strip():
            raise ValueError(f"{kind} must be non-empty single trimmed lines: {value!r}")


def write_wds_evalset(
    out_dir: Path,
    name: str,
    items: list[dict],
    classnames: list[str],
    templates: list[str],
    split: str = "test",
    samples_per_shard: int = 1000,
) -> dict:
    """Write one evaluation set; returns {name, split, samples, classes, nshards, shards}.

    items: {"key": str, "jpg": bytes, "cls": int}. Shard files of `split` beyond the new count
    (from an earlier, bigger build) are removed.
    """
    out_dir = Path(out_dir)
    if not items:
        raise ValueError(f"evaluation set {name!r} has no items")
    if samples_per_shard <= 0:
        raise ValueError(f"samples_per_shard must be > 0, got {samples_per_shard}")
    _check_lines("class names", classnames)
    if len(set(classnames)) != len(classnames):
        raise ValueError(f"evaluation set {name!r} has duplicate class names")
    _check_lines("templates", templates)
    if not templates or any("{c}" not in t for t in templates):
        raise ValueError("every zero-shot template needs a {c} placeholder")

    ordered = sorted(items, key=lambda it: str(it["key"]))
    seen: dict[str, str] = {}
    for item in ordered:
        cls = item["cls"]
        valid = isinstance(cls, numbers.Integral) and not isinstance(cls, bool)
        if not valid or not 0 <= cls < len(classnames):
            raise ValueError(f"item {item['key']!r}: cls {cls!r} not in 0..{len(classnames) - 1}")
        safe = wds_key(str(item["key"]))
        if safe in seen:
            raise ValueError(f"items {seen[safe]!r} and {item['key']!r} share sample name {safe}")
        seen[safe] = str(item["key"])

    split_dir = out_dir / split
    shards = []
    nshards = (len(ordered) + samples_per_shard - 1) // samples_per_shard
    for index in range(nshards):
        chunk = ordered[index * samples_per_shard : (index + 1) * samples_per_shard]
        size, sha = write_tar(split_dir / f"{index}.tar", _members(chunk, classnames))
        shards.append({"name": f"{index}.tar", "samples": len(chunk), "bytes": size, "sha256": sha})
    for stale in sorted(split_dir.glob("*.tar")):
        if _NUMBERED_TAR.match(stale.name) and int(stale.stem) >= nshards:
            log.warning("removing stale evaluation shard %s", stale)
            stale.unlink()

    write_text_atomic(out_dir / "classnames.txt", "".join(f"{c}\n" for c in classnames))
    write_text_atomic(
        out_dir / "zeroshot_classification_templates.txt", "".join(f"{t}\n" for t in templates)
    )
    write_text_atomic(out_dir / "dataset_type.txt", "classification\n")
    write_text_atomic(split_dir / "nshards.txt", f"{nshards}\n")
    log.info("wrote evaluation set %s: %d images in %d shards", name, len(ordered), nshards)
    return {
        "name": name,
        "split": split,
        "samples": len(ordered),
        "classes": len(classnames),
        "nshards": nshards,
        "shards": shards,
    }


def _members(chunk: list[dict], classnames: list[str]):
    for item in chunk:
        safe = wds_key(str(item["key"]))
        cls = int(item["cls"])
        meta = {"key": str(item["key"]), "cls": cls, "classname": classnames[cls]}
        yield f"{safe}.jpg", bytes(item["jpg"])
        yield f"{safe}.cls", str(cls).encode()
        yield (
            f"{safe}.json",
            json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(),
        )
