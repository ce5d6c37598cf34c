"""Evaluation sets in CLIP_benchmark's webdataset layout (`clip_benchmark eval --dataset wds/NAME`):
the writer the release uses and the reader the evaluation uses.

    <set>/<split>/0.tar .. <n-1>.tar                (unpadded numbers)
    <set>/<split>/nshards.txt                       n
    <set>/classnames.txt                            one class name per line, line i = class i
    <set>/zeroshot_classification_templates.txt     one template per line, `{c}` placeholder
    <set>/dataset_type.txt                          "classification"

Written samples hold `<id>.jpg`, `<id>.cls` (the class index as text) and `<id>.json` ({key,
cls, classname}); `<id>` is the item key made webdataset-safe (the release's keys are
`wds_key`s, already safe). Items are sorted by key, tars have fixed metadata, every file is
written atomically and `nshards.txt` last (it marks completion).

Read samples that cannot be used (no image, undecodable image, no or bad label) are counted by
reason, never dropped silently; a shard that is not a readable tar is an `InputError`.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import logging
import numbers
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from treeoflife.errors import InputError
from treeoflife.io import write_text_atomic
from treeoflife.shards.tar import write_tar
from treeoflife.vocabulary import Reason

log = logging.getLogger(__name__)

CLASSNAMES_FILE = "classnames.txt"
NSHARDS_FILE = "nshards.txt"
TEMPLATES_FILE = "zeroshot_classification_templates.txt"
PLACEHOLDER = "{c}"
IMAGE_EXTENSIONS = ("webp", "png", "jpg", "jpeg")  # CLIP_benchmark's order of preference

# Reasons a read sample is skipped (keys of the `skipped` counter): Reason.IMAGE_MISSING ...

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_NUMBERED_TAR = re.compile(r"^\d+\.tar$")


def wds_key(name: str, filepath: str) -> str:
    """The sample key of an evaluation image in its packaged set (stable, webdataset-safe)."""
    return hashlib.sha1(f"{name}/{filepath}".encode()).hexdigest()[:20]


def _sample_name(key: str) -> str:
    """A webdataset-safe sample name for an item key (no dots or slashes)."""
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
    if not templates or any(PLACEHOLDER not in t for t in templates):
        raise ValueError(f"every zero-shot template needs a {PLACEHOLDER} placeholder")

    ordered = sorted(items, key=lambda it: str(it["key"]))
    seen: dict[str, str] = {}
    for item in ordered:
        cls = item["cls"]
        valid = isinstance(cls, numbers.Integral) and not isinstance(cls, bool)
        if not valid or not 0 <= cls < len(classnames):
            raise ValueError(f"item {item['key']!r}: cls {cls!r} not in 0..{len(classnames) - 1}")
        safe = _sample_name(str(item["key"]))
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

    write_text_atomic(out_dir / CLASSNAMES_FILE, "".join(f"{c}\n" for c in classnames))
    write_text_atomic(out_dir / TEMPLATES_FILE, "".join(f"{t}\n" for t in templates))
    write_text_atomic(out_dir / "dataset_type.txt", "classification\n")
    write_text_atomic(split_dir / NSHARDS_FILE, f"{nshards}\n")
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
        safe = _sample_name(str(item["key"]))
        cls = int(item["cls"])
        meta = {"key": str(item["key"]), "cls": cls, "classname": classnames[cls]}
        yield f"{safe}.jpg", bytes(item["jpg"])
        yield f"{safe}.cls", str(cls).encode()
        yield (
            f"{safe}.json",
            json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(),
        )


# --------------------------------------------------------------------------- reading


def parse_templates(text: str) -> list[str]:
    """Templates from a templates file's text (blank lines ignored, like CLIP_benchmark)."""
    templates = [line.strip() for line in text.splitlines() if line.strip()]
    bad = [t for t in templates if PLACEHOLDER not in t]
    if bad:
        raise InputError(f"template(s) without the {PLACEHOLDER} placeholder: {bad[:3]}")
    return templates


def read_templates(evalset_dir: str | Path) -> list[str] | None:
    """The set's own templates, or None when it ships no templates file."""
    path = Path(evalset_dir) / TEMPLATES_FILE
    if not path.is_file():
        return None
    templates = parse_templates(path.read_text(encoding="utf-8"))
    if not templates:
        raise InputError(f"{path} holds no templates")
    return templates


@dataclass(frozen=True)
class WdsEvalSet:
    name: str  # the folder name, e.g. rare_species
    root: Path
    split: str
    classnames: tuple[str, ...]
    templates: tuple[str, ...] | None  # None: the set ships no templates file
    shard_files: tuple[Path, ...]


@dataclass(frozen=True)
class LabelledImage:
    key: str
    image: Image.Image  # RGB
    label: int


def read_wds_evalset(evalset_dir: str | Path, split: str = "test") -> WdsEvalSet:
    """The metadata and shard list of one evaluation set."""
    root = Path(evalset_dir)
    classnames_path = root / CLASSNAMES_FILE
    try:
        classnames = [line.strip() for line in classnames_path.read_text("utf-8").splitlines()]
    except OSError as exc:
        raise InputError(f"cannot read {classnames_path}: {exc}") from exc
    while classnames and not classnames[-1]:
        classnames.pop()
    if not classnames:
        raise InputError(f"{classnames_path} lists no classes")
    empty = [i for i, name in enumerate(classnames) if not name]
    if empty:
        raise InputError(f"{classnames_path}: empty class name on line(s) {empty[:5]}")
    split_dir = root / split
    nshards_path = split_dir / NSHARDS_FILE
    try:
        nshards = int(nshards_path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the shard count {nshards_path}: {exc}") from exc
    shard_files = tuple(split_dir / f"{i}.tar" for i in range(nshards))
    missing = [p.name for p in shard_files if not p.is_file()]
    if missing:
        raise InputError(f"{split_dir}: nshards.txt says {nshards}, missing {missing[:5]}")
    templates = read_templates(root)
    return WdsEvalSet(
        name=root.name,
        root=root,
        split=split,
        classnames=tuple(classnames),
        templates=tuple(templates) if templates is not None else None,
        shard_files=shard_files,
    )


def list_wds_evalsets(wds_root: str | Path, split: str = "test") -> list[Path]:
    """Every evaluation set folder under `wds_root` (by name) that has the `split`."""
    wds_root = Path(wds_root)
    if not wds_root.is_dir():
        raise InputError(f"evaluation set folder {wds_root} does not exist")
    return sorted(
        p
        for p in wds_root.iterdir()
        if (p / CLASSNAMES_FILE).is_file() and (p / split / NSHARDS_FILE).is_file()
    )


def iter_labelled_images(
    evalset: WdsEvalSet, skipped: collections.Counter[str]
) -> Iterator[LabelledImage]:
    """The set's usable samples in shard order; unusable ones are counted in `skipped`."""
    import webdataset as wds  # imports torch (~3 s): only evaluation reads sets

    n_classes = len(evalset.classnames)
    for shard in evalset.shard_files:
        pipeline = wds.DataPipeline(wds.SimpleShardList([str(shard)]), wds.tarfile_to_samples())
        try:
            for sample in pipeline:
                item = _labelled_image(sample, n_classes, skipped)
                if item is not None:
                    yield item
        except (OSError, ValueError, tarfile.TarError) as exc:
            raise InputError(f"evaluation shard {shard} is not a readable tar: {exc}") from exc


def _labelled_image(
    sample: dict, n_classes: int, skipped: collections.Counter[str]
) -> LabelledImage | None:
    key = sample.get("__key__", "")
    ext = next((e for e in IMAGE_EXTENSIONS if e in sample), None)
    if ext is None:
        skipped[Reason.IMAGE_MISSING] += 1
        return None
    if "cls" not in sample:
        skipped[Reason.LABEL_MISSING] += 1
        return None
    try:
        label = int(bytes(sample["cls"]).decode("utf-8").strip())
    except (UnicodeDecodeError, ValueError):
        skipped[Reason.LABEL_UNREADABLE] += 1
        return None
    if not 0 <= label < n_classes:
        skipped[Reason.LABEL_OUT_OF_RANGE] += 1
        return None
    try:
        with Image.open(io.BytesIO(sample[ext])) as img:
            image = img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        log.debug("sample %s: undecodable %s: %s", key, ext, exc)
        skipped[Reason.IMAGE_UNDECODABLE] += 1
        return None
    return LabelledImage(key=key, image=image, label=label)
