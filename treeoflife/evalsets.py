"""Evaluation sets: read Rare-Species-style metadata, label each image by its resolved taxon.

Class names are the same caption text the training shards carry (minus the "a photo of"
template), so zero-shot evaluation with the template "a photo of {c}." asks exactly the
question the model was trained on.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from treeoflife.errors import ImageRejected
from treeoflife.images import normalize_image
from treeoflife.shards.resize import resize_for_shard
from treeoflife.shards.text import caption_members

log = logging.getLogger(__name__)

_PREFIX, _SUFFIX = "a photo of ", "."


def class_name(label: dict, text_type: str) -> str:
    """The class text of a resolved taxon for a caption kind (sci, com, taxon, taxon_com ...)."""
    caption = caption_members(label)[f"{text_type}.txt"]
    return caption.removeprefix(_PREFIX).removesuffix(_SUFFIX)


def wds_key(name: str, filepath: str) -> str:
    """The sample key of an evaluation image in the packaged wds set (stable, dot-free)."""
    return hashlib.sha1(f"{name}/{filepath}".encode()).hexdigest()[:20]


def _label_from_verbatim(row: dict) -> dict:
    return {
        "kingdom": row.get("kingdom"),
        "phylum": row.get("phylum"),
        "class": row.get("cls") or row.get("class"),
        "order": row.get("order"),
        "family": row.get("family"),
        "genus": row.get("genus"),
        "species": row.get("species"),
        "common_name": row.get("common_name"),
    }


def evalset_items(
    name: str,
    rows: list[dict],
    root: Path,
    hashes: pa.Table,
    resolve: Callable[[dict], dict | None],
    text_type: str,
    image_size: int,
    jpeg_quality: int,
) -> tuple[list[dict], list[str], dict[str, int]]:
    """Samples ({key, jpg, cls}), sorted class names, and counts of skipped images by reason.

    An image the hashing stage could not read is skipped with its recorded reason.
    """
    status = {r["eval_key"]: (r["status"], r["reason"]) for r in hashes.to_pylist()}
    labelled = []
    skipped: dict[str, int] = {}
    for row in rows:
        st, reason = status.get(row["filepath"], ("failed", "not_hashed"))
        if st != "ok":
            skipped[reason or "failed"] = skipped.get(reason or "failed", 0) + 1
            continue
        resolved = resolve(row)
        label = resolved if resolved and resolved.get("kingdom") else _label_from_verbatim(row)
        if not label.get("common_name"):
            label = {**label, "common_name": row.get("common_name")}
        try:
            data = normalize_image((root / row["filepath"]).read_bytes()).data
        except (OSError, ImageRejected) as exc:
            reason = getattr(exc, "reason", "unreadable")
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        labelled.append((row["filepath"], class_name(label, text_type), data))
    classnames = sorted({c for _, c, _ in labelled})
    index = {c: i for i, c in enumerate(classnames)}
    items = []
    for filepath, cls, data in sorted(labelled):
        key = wds_key(name, filepath)
        items.append(
            {
                "key": key,
                "jpg": resize_for_shard(data, image_size, jpeg_quality),
                "cls": index[cls],
            }
        )
    log.info("evaluation set %s: %d images, %d classes", name, len(items), len(classnames))
    return items, classnames, dict(sorted(skipped.items()))
