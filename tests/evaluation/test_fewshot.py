"""SimpleShot few-shot accuracy: checked against a direct transcription of BioCLIP's
`get_acc` (CL2N + nearest centroid), and on features whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from treeoflife.evaluation.fewshot import few_shot_metrics, simpleshot_draw


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _bioclip_get_acc(support, support_labels, queries, query_labels, n_class, k):
    """BioCLIP src/evaluation/few_shot.py `get_acc`, in numpy, support grouped by class."""
    mean = support.mean(axis=0)

    def cl2n(x):
        x = x - mean
        return x / np.linalg.norm(x, 2, 1)[:, None]

    centres = cl2n(support).reshape(n_class, k, support.shape[-1]).mean(1)
    distance = np.linalg.norm(centres[:, None, :] - cl2n(queries), 2, axis=-1)
    nearest = np.take(support_labels[::k], distance.argmin(axis=0))
    return float((nearest == np.asarray(query_labels)).mean())


def _clustered(n_classes=6, per_class=9, dim=16, spread=0.9, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    labels = np.repeat(np.arange(n_classes), per_class)
    feats = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    order = rng.permutation(len(labels))  # classes interleaved, as shards deliver them
    return torch.tensor(_normalised(feats[order]), dtype=torch.float32), torch.tensor(labels[order])


@pytest.mark.parametrize("k", [1, 3, 5])
def test_one_draw_equals_bioclips_computation(k):
    features, labels = _clustered()
    acc, queries, classes = simpleshot_draw(features, labels, k, seed=7)

    # Rebuild the same draw (same generator) and score it the way BioCLIP does.
    rng = np.random.default_rng(7)
    lab = labels.numpy()
    support, support_labels, query_feats, query_labels = [], [], [], []
    for cls in classes:
        members = np.flatnonzero(lab == cls)
        members = members[rng.permutation(len(members))]
        support.append(features.numpy()[members[:k]].astype(np.float64))
        support_labels += [cls] * k
        query_feats.append(features.numpy()[members[k:]].astype(np.float64))
        query_labels += [cls] * (len(members) - k)
    expected = _bioclip_get_acc(
        np.vstack(support),
        np.array(support_labels),
        np.vstack(query_feats),
        query_labels,
        len(classes),
        k,
    )
    assert acc == pytest.approx(expected, abs=1e-12)
    assert queries == 6 * (9 - k) and classes == list(range(6))


def test_separable_classes_are_all_right_and_noise_is_near_chance():
    features, labels = _clustered(spread=0.05)
    assert few_shot_metrics(features, labels, shots=(1, 5))["1"]["top1"] == 1.0
    rng = np.random.default_rng(3)
    noise = torch.tensor(_normalised(rng.normal(size=(600, 32))), dtype=torch.float32)
    noise_labels = torch.tensor(np.repeat(np.arange(10), 60))
    result = few_shot_metrics(noise, noise_labels, shots=(5,), draws=5)["5"]
    assert abs(result["top1"] - 0.1) < 0.05, result


def test_mean_and_population_spread_over_seeded_draws_and_reproducible():
    features, labels = _clustered(spread=1.2)
    result = few_shot_metrics(features, labels, shots=(1,), draws=5, seed=3)["1"]
    runs = [simpleshot_draw(features, labels, 1, seed)[0] for seed in range(3, 8)]
    assert result["top1_runs"] == runs
    assert result["top1"] == pytest.approx(np.mean(runs))
    assert result["top1_std"] == pytest.approx(np.std(runs))
    assert len(set(runs)) > 1  # the draws differ
    assert few_shot_metrics(features, labels, shots=(1,), draws=5, seed=3)["1"] == result


def test_classes_too_small_are_counted_and_exact_k_classes_only_give_centroids():
    features, labels = _clustered(n_classes=4, per_class=6, spread=0.05)
    lab = labels.clone()
    keep = torch.ones(len(lab), dtype=torch.bool)
    # class 3 keeps 2 images (< 5 shots: left out); class 2 keeps exactly 5 (centroid only)
    for cls, n in ((3, 2), (2, 5)):
        idx = torch.nonzero(lab == cls).flatten()
        keep[idx[n:]] = False
    result = few_shot_metrics(features[keep], lab[keep], shots=(5,))["5"]
    assert result["classes"] == 3 and result["classes_skipped"] == 1
    assert result["queries"] == 2  # one query each from classes 0 and 1
    assert result["chance"] == pytest.approx(1 / 3)


def test_a_k_with_no_query_or_one_class_is_reported_not_raised():
    features, labels = _clustered(n_classes=3, per_class=5)
    out = few_shot_metrics(features, labels, shots=(1, 5, 6))
    assert out["1"]["top1"] is not None
    assert out["5"]["top1"] is None and "no query" in out["5"]["reason"]
    assert out["6"]["top1"] is None and "at least 2 classes" in out["6"]["reason"]
    with pytest.raises(ValueError):
        simpleshot_draw(features, labels, 0, seed=0)
