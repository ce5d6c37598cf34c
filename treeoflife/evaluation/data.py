"""Read evaluation sets in CLIP_benchmark's `wds/` layout.

    <set>/classnames.txt                          one class name per line (label = line index)
    <set>/zeroshot_classification_templates.txt   one template per line with {c}
    <set>/<split>/nshards.txt                     n
    <set>/<split>/0.tar .. <n-1>.tar              samples: <key>.jpg|png|webp + <key>.cls

Samples that cannot be used (no image, undecodable image, no or bad label) are counted by
reason, never dropped silently; a shard that is not a readable tar is an `InputError`.
"""

from __future__ import annotations

import collections
import io
import logging
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import webdataset as wds
from PIL import Image

from treeoflife.errors import InputError
from treeoflife.evaluation.templates import read_templates

log = logging.getLogger(__name__)

CLASSNAMES_FILE = "classnames.txt"
NSHARDS_FILE = "nshards.txt"
IMAGE_EXTENSIONS = ("webp", "png", "jpg", "jpeg")  # CLIP_benchmark's order of preference

# Reasons a sample is skipped (keys of the `skipped` counter).
IMAGE_MISSING = "image_missing"
IMAGE_UNDECODABLE = "image_undecodable"
LABEL_MISSING = "label_missing"
LABEL_UNREADABLE = "label_unreadable"
LABEL_OUT_OF_RANGE = "label_out_of_range"


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


def count_samples(evalset: WdsEvalSet) -> int:
    """Samples in the set's shards, from the tar headers alone (for a progress total)."""
    keys = set()
    for shard in evalset.shard_files:
        try:
            with tarfile.open(shard) as tar:
                keys.update(m.name.split(".", 1)[0] for m in tar if m.isfile())
        except (OSError, tarfile.TarError) as exc:
            raise InputError(f"evaluation shard {shard} is not a readable tar: {exc}") from exc
    return len(keys)


def iter_labelled_images(
    evalset: WdsEvalSet, skipped: collections.Counter[str]
) -> Iterator[LabelledImage]:
    """The set's usable samples in shard order; unusable ones are counted in `skipped`."""
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
        skipped[IMAGE_MISSING] += 1
        return None
    if "cls" not in sample:
        skipped[LABEL_MISSING] += 1
        return None
    try:
        label = int(bytes(sample["cls"]).decode("utf-8").strip())
    except (UnicodeDecodeError, ValueError):
        skipped[LABEL_UNREADABLE] += 1
        return None
    if not 0 <= label < n_classes:
        skipped[LABEL_OUT_OF_RANGE] += 1
        return None
    try:
        with Image.open(io.BytesIO(sample[ext])) as img:
            image = img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        log.debug("sample %s: undecodable %s: %s", key, ext, exc)
        skipped[IMAGE_UNDECODABLE] += 1
        return None
    return LabelledImage(key=key, image=image, label=label)
