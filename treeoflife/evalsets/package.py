"""Evaluation sets packaged for the release, in CLIP_benchmark's `wds/` layout.

Each image is labelled by its resolved taxon (treeoflife.evalsets.labels), resized like the
training shards, and keyed by `wds_key`; the set's hashes travel with it so a later build (or
another project) can dedup against the packaged set without rehashing it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from treeoflife.errors import ImageRejected
from treeoflife.evalsets.files import SetFolder
from treeoflife.evalsets.labels import class_name, labeller, rename_classes
from treeoflife.evalsets.sets import evalset_folder, read_evalset
from treeoflife.evalsets.wds import read_wds_evalset, wds_key, write_wds_evalset
from treeoflife.images import normalize_image
from treeoflife.io import write_parquet_atomic
from treeoflife.layout import Layout
from treeoflife.progress import Progress
from treeoflife.shards.resize import resize_for_shard
from treeoflife.vocabulary import IngestStatus, Reason

if TYPE_CHECKING:
    from treeoflife.config import BuildConfig

log = logging.getLogger(__name__)

TEMPLATES = ["a photo of {c}."]  # the training captions' template


def evalset_items(
    name: str,
    rows: list[dict],
    folder: SetFolder,
    hashes: pa.Table,
    label: Callable[[dict], dict],
    text_type: str,
    image_size: int,
    jpeg_quality: int,
) -> tuple[list[dict], list[str], dict[str, int]]:
    """Samples ({key, jpg, cls}), sorted class names, and counts of skipped images by reason.

    An image the hashing stage could not read (missing, outside the set's folder ...) is
    skipped with its recorded reason; images are read only inside the set's folder.
    """
    status = {r["eval_key"]: (r["status"], r["reason"]) for r in hashes.to_pylist()}
    labelled = []
    skipped: dict[str, int] = {}
    for row in rows:
        st, reason = status.get(
            row["filepath"], (IngestStatus.FAILED.value, Reason.NOT_HASHED.value)
        )
        if st != IngestStatus.OK:
            skipped[reason or "failed"] = skipped.get(reason or "failed", 0) + 1
            continue
        data, reason = folder.read(row["filepath"])
        try:
            if data is None:
                raise ImageRejected(reason)
            data = normalize_image(data).data
        except ImageRejected as exc:
            skipped[exc.reason] = skipped.get(exc.reason, 0) + 1
            continue
        labelled.append((row["filepath"], class_name(label(row), text_type), data))
    classnames = sorted({c for _, c, _ in labelled})
    index = {c: i for i, c in enumerate(classnames)}
    items = [
        {
            "key": wds_key(name, filepath),
            "jpg": resize_for_shard(data, image_size, jpeg_quality),
            "cls": index[cls],
        }
        for filepath, cls, data in sorted(labelled)
    ]
    log.info("evaluation set %s: %d images, %d classes", name, len(items), len(classnames))
    return items, classnames, dict(sorted(skipped.items()))


def _taxa_by_query(layout: Layout) -> dict[str, dict]:
    return {r["query_id"]: r for r in pq.read_table(layout.taxa).to_pylist()}


def package_evalsets(cfg: BuildConfig, progress: Progress | None = None) -> dict:
    """Each evaluation set in CLIP_benchmark's wds layout, classes named by resolved taxon.

    Returns {set name: {images, classes, skipped: {reason: count}}}.
    """
    layout = Layout(cfg.root)
    taxa = _taxa_by_query(layout)
    out = {}
    for es in cfg.evalsets:
        hashes = pq.read_table(layout.evalset_hashes(es.name))
        items, classnames, skipped = evalset_items(
            es.name,
            read_evalset(es, cfg),
            evalset_folder(es, cfg),
            hashes,
            labeller(es.name, taxa),
            text_type=cfg.evaluate.text_type,
            image_size=cfg.shards.image_size,
            jpeg_quality=cfg.shards.jpeg_quality,
        )
        if not items:  # CLIP_benchmark cannot read a set with no shards: report, don't write
            log.warning("evaluation set %s has no usable images (%s)", es.name, skipped)
            out[es.name] = {"images": 0, "classes": 0, "skipped": skipped}
            continue
        folder = layout.evalsets_wds / es.name
        write_wds_evalset(folder, es.name, items, classnames, TEMPLATES)
        keys = [wds_key(es.name, k) for k in hashes.column("eval_key").to_pylist()]
        keyed = hashes.append_column("wds_key", pa.array(keys))
        write_parquet_atomic(keyed, folder / "hashes.parquet")
        out[es.name] = {"images": len(items), "classes": len(classnames), "skipped": skipped}
    return out


def evalset_classnames(cfg: BuildConfig, text_type: str) -> dict[str, list[str]]:
    """Each packaged evaluation set's class names rewritten in `text_type` (same order)."""
    layout = Layout(cfg.root)
    taxa = _taxa_by_query(layout)
    out = {}
    for es in cfg.evalsets:
        folder = layout.evalsets_wds / es.name
        if not (folder / "classnames.txt").is_file():
            continue
        label = labeller(es.name, taxa)
        labels = [label(row) for row in read_evalset(es, cfg)]
        packaged = read_wds_evalset(folder).classnames
        out[es.name] = rename_classes(packaged, labels, cfg.evaluate.text_type, text_type)
    return out
