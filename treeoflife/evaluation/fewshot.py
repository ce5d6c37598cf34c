"""Few-shot accuracy with SimpleShot, as BioCLIP reports it (Wang et al. 2019, arXiv:1911.04623).

For each draw, k images per class are the support set and every other image of the class a
query. Features (already L2-normalised by the encoder) are centred on the support mean and
L2-normalised again ("CL2N"); a query takes the class of the nearest support centroid (Euclidean
distance). BioCLIP's `src/evaluation/few_shot.py` does the same over 5 seeded draws and reports
the mean and the spread (population standard deviation) of top-1 accuracy.

As in BioCLIP, a class with exactly k images gives a centroid and no query; a class with fewer
than k images cannot give k shots: it is left out of the task and counted in
`classes_skipped`, never silently.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)

DEFAULT_SHOTS = (1, 5)
DEFAULT_DRAWS = 5


def _centred_l2(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    centred = x - mean
    return centred / centred.norm(dim=1, keepdim=True).clamp_min(1e-12)


def simpleshot_draw(
    features: torch.Tensor, labels: torch.Tensor, k: int, seed: int
) -> tuple[float, int, list[int]]:
    """Top-1 accuracy of one seeded draw; returns (accuracy, queries, classes used).

    The draw depends only on (labels, k, seed): the same seed picks the same support images
    whatever the model, so two models are compared on the same tasks.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    features = features.to(torch.float64)
    label_array = labels.cpu().numpy()
    rng = np.random.default_rng(seed)
    support_idx: list[np.ndarray] = []
    query_idx: list[np.ndarray] = []
    query_class: list[np.ndarray] = []
    classes = [int(c) for c in np.unique(label_array) if np.sum(label_array == c) >= k]
    if len(classes) < 2:
        raise ValueError(f"{k}-shot needs at least 2 classes with {k} or more images")
    if all(np.sum(label_array == c) == k for c in classes):
        raise ValueError(f"{k}-shot leaves no query image: no class has more than {k} images")
    for position, cls in enumerate(classes):
        members = np.flatnonzero(label_array == cls)
        members = members[rng.permutation(len(members))]
        support_idx.append(members[:k])
        query_idx.append(members[k:])
        query_class.append(np.full(len(members) - k, position))
    support = features[torch.from_numpy(np.concatenate(support_idx))]
    queries = features[torch.from_numpy(np.concatenate(query_idx))]
    mean = support.mean(dim=0, keepdim=True)
    support = _centred_l2(support, mean)
    queries = _centred_l2(queries, mean)
    centroids = support.reshape(len(classes), k, -1).mean(dim=1)
    nearest = torch.cdist(queries, centroids).argmin(dim=1).numpy()
    truth = np.concatenate(query_class)
    return float(np.mean(nearest == truth)), len(truth), classes


def few_shot_metrics(
    features: torch.Tensor,
    labels: torch.Tensor,
    shots: Sequence[int] = DEFAULT_SHOTS,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
) -> dict[str, dict]:
    """`{"1": {...}, "5": {...}}`: mean and std of top-1 over `draws` seeded draws per k.

    A k that no two classes can support gives `{"top1": None, "reason": ...}`.
    """
    n_classes = int(torch.unique(labels).numel())
    out: dict[str, dict] = {}
    for k in shots:
        try:
            runs = [simpleshot_draw(features, labels, k, seed + draw) for draw in range(draws)]
        except ValueError as exc:
            log.warning("%d-shot not evaluated: %s", k, exc)
            out[str(k)] = {"top1": None, "reason": str(exc)}
            continue
        accs = [acc for acc, _, _ in runs]
        used = len(runs[0][2])
        mean = sum(accs) / len(accs)
        out[str(k)] = {
            "top1": mean,
            "top1_std": math.sqrt(sum((a - mean) ** 2 for a in accs) / len(accs)),
            "top1_runs": accs,
            "draws": draws,
            "queries": runs[0][1],
            "classes": used,
            "classes_skipped": n_classes - used,
            "chance": 1.0 / used,
        }
    return out
