"""Zero-shot evaluation mechanics with the tiny model (random weights saved to a real file).

That a trained checkpoint scores well above chance is tested end to end in
tests/train/test_train_clip.py.
"""

from __future__ import annotations

import json

import open_clip
import pytest
import torch

from tests.train.synthetic import CLASSNAMES, write_wds_evalset
from treeoflife.errors import InputError
from treeoflife.evaluation.zeroshot import (
    accuracy_metrics,
    evaluate_all,
    evaluate_zero_shot,
    register_model_configs,
    results_markdown,
    results_table_markdown,
    write_results,
)

MODEL = "treeoflife-tiny"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A bare state dict of the tiny model, as a file (what open_clip calls pretrained)."""
    register_model_configs()
    torch.manual_seed(1)
    model = open_clip.create_model(MODEL, pretrained=None)
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def wds_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("wds")
    write_wds_evalset(root / "b_colours", per_class=4, nshards=2)
    write_wds_evalset(
        root / "a_shapes",
        per_class=2,
        nshards=1,
        seed=5,
        extra_samples={"broken": {"jpg": b"no image here", "cls": b"0"}},
    )
    return root


def test_evaluate_zero_shot_result_fields(weights, wds_root):
    result = evaluate_zero_shot(MODEL, weights, wds_root / "a_shapes", batch_size=3)
    assert result["evalset"] == "a_shapes"
    assert result["n"] == 2 * len(CLASSNAMES)
    assert result["skipped"] == {"image_undecodable": 1}
    assert result["classes"] == len(CLASSNAMES) and result["chance"] == 1 / len(CLASSNAMES)
    assert result["templates"] == 1  # the set's own templates file
    for key in ("top1", "top5", "balanced_top1"):
        assert 0.0 <= result[key] <= 1.0
    assert result["top5"] == 1.0  # 5 classes
    assert result["checkpoint"] == str(weights) and result["model"] == MODEL


def test_results_do_not_depend_on_batch_size_and_templates_can_be_given(weights, wds_root):
    evalset = wds_root / "b_colours"
    small = evaluate_zero_shot(MODEL, weights, evalset, batch_size=1)
    large = evaluate_zero_shot(MODEL, weights, evalset, batch_size=64)
    assert {k: small[k] for k in ("top1", "top5", "balanced_top1")} == {
        k: large[k] for k in ("top1", "top5", "balanced_top1")
    }
    custom = evaluate_zero_shot(
        MODEL, weights, evalset, templates=["{c}", "an image of {c}", "{c}, a species"]
    )
    assert custom["templates"] == 3 and custom["n"] == small["n"]


def test_set_without_templates_file_uses_openai_templates(weights, tmp_path):
    root = tmp_path / "plain"
    write_wds_evalset(root, per_class=1, nshards=1)
    (root / "zeroshot_classification_templates.txt").unlink()
    assert evaluate_zero_shot(MODEL, weights, root)["templates"] == 80


def test_evaluate_all_covers_every_set_sorted(weights, wds_root):
    results = evaluate_all(MODEL, weights, wds_root)
    assert [r["evalset"] for r in results] == ["a_shapes", "b_colours"]
    assert [r["n"] for r in results] == [10, 20]
    with pytest.raises(InputError, match="no evaluation sets"):
        evaluate_all(MODEL, weights, wds_root / "a_shapes" / "test")


def test_missing_checkpoint_is_an_input_error(wds_root, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        evaluate_zero_shot(MODEL, tmp_path / "nope.pt", wds_root / "a_shapes")


def test_accuracy_metrics_from_ranked_predictions():
    # 3 samples of class 0 (2 right), 1 of class 1 (right), 2 of class 2 (none right at top 1)
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    ranked = torch.tensor(
        [
            [0, 1, 2, 3, 4],
            [0, 2, 1, 3, 4],
            [1, 2, 3, 4, 0],  # right only at rank 5
            [1, 0, 2, 3, 4],
            [0, 1, 3, 2, 4],  # right at rank 4
            [5, 6, 7, 8, 9],  # never right
        ]
    )
    metrics = accuracy_metrics(ranked, labels, n_classes=10)
    assert metrics["top1"] == pytest.approx(3 / 6)
    assert metrics["top5"] == pytest.approx(5 / 6)
    assert metrics["balanced_top1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    few = accuracy_metrics(ranked[:, :3], labels, n_classes=3)
    assert few["top5"] is None


def test_results_markdown_table():
    results = [
        {"evalset": "rare_species", "top1": 0.25},
        {"evalset": "birds_525", "top1": 0.5},
    ]
    table = results_markdown(results, "BioCLIP (ours)")
    lines = table.strip().splitlines()
    assert lines[0] == "| Model | rare_species | birds_525 | Mean |"
    assert lines[2] == "| BioCLIP (ours) | 25.0 | 50.0 | 37.5 |"
    both = results_table_markdown(
        {"a": results, "b": [{"evalset": "birds_525", "top1": 0.1}]}
    ).splitlines()
    assert both[3] == "| b | - | 10.0 | 10.0 |"


def test_write_results_writes_json_and_markdown(tmp_path):
    results = [{"evalset": "toy", "top1": 0.5, "n": 2}]
    json_path, md_path = write_results(results, tmp_path / "eval", "tiny")
    assert json.loads(json_path.read_text()) == {"model": "tiny", "results": results}
    assert "| tiny | 50.0 | 50.0 |" in md_path.read_text()
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["results.json", "results.md"]
