"""Image features of an evaluation set, computed once and shared by zero-shot and few-shot."""

from __future__ import annotations

import collections
import logging
import tarfile
from dataclasses import dataclass, field

import torch

from treeoflife.errors import InputError
from treeoflife.evalsets.wds import WdsEvalSet, iter_labelled_images
from treeoflife.progress import Progress, or_null

log = logging.getLogger(__name__)


@dataclass
class EncodedSet:
    """L2-normalised image features, in the set's sample order, with their labels."""

    evalset: WdsEvalSet
    features: torch.Tensor  # [n, embed_dim], float32 on CPU
    labels: torch.Tensor  # [n], int64
    skipped: dict[str, int] = field(default_factory=dict)  # unusable samples by reason


def count_samples(evalset: WdsEvalSet) -> int:
    """Samples in the set's shards, from the tar headers alone (the total of its progress)."""
    keys = set()
    for shard in evalset.shard_files:
        try:
            with tarfile.open(shard) as tar:
                keys.update(m.name.split(".", 1)[0] for m in tar if m.isfile())
        except (OSError, tarfile.TarError) as exc:
            raise InputError(f"evaluation shard {shard} is not a readable tar: {exc}") from exc
    return len(keys)


def encode_evalset(
    loaded,
    evalset: WdsEvalSet,
    batch_size: int = 64,
    *,
    progress: Progress | None = None,
    stage: str | None = None,
) -> EncodedSet:
    """Every usable image of `evalset` through `loaded.model.encode_image` (normalised);
    `progress` counts images under `stage` (default "encode <set>")."""
    progress = or_null(progress)
    skipped: collections.Counter[str] = collections.Counter()
    chunks: list[torch.Tensor] = []
    labels: list[int] = []
    batch: list[torch.Tensor] = []
    progress.start(stage or f"encode {evalset.name}", count_samples(evalset))

    def flush() -> None:
        if not batch:
            return
        images = torch.stack(batch).to(loaded.device)
        with torch.no_grad():
            chunks.append(loaded.model.encode_image(images, normalize=True).float().cpu())
        progress.advance(len(batch))
        batch.clear()

    for item in iter_labelled_images(evalset, skipped):
        batch.append(loaded.preprocess(item.image))
        labels.append(item.label)
        if len(batch) >= batch_size:
            flush()
    flush()
    progress.finish()
    if not labels:
        raise InputError(
            f"evaluation set {evalset.root} has no usable samples (skipped: {dict(skipped)})"
        )
    if skipped:
        log.warning("%s: skipped samples %s", evalset.name, dict(sorted(skipped.items())))
    return EncodedSet(
        evalset=evalset,
        features=torch.cat(chunks),
        labels=torch.tensor(labels, dtype=torch.int64),
        skipped=dict(sorted(skipped.items())),
    )
