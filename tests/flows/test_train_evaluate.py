"""The trailing flows on the sample: train a tiny open_clip model on CPU, then zero-shot it."""

from __future__ import annotations

import json

import pytest

from tests.flows.conftest import SAMPLE_CONFIG

pytestmark = pytest.mark.slow


def test_train_then_evaluate_flows_on_the_sample(sample_build):
    from flows.evaluate import evaluate
    from flows.train import train

    root = sample_build["root"]
    trained = train(config_path=str(SAMPLE_CONFIG), data_root=str(root))
    ckpt = root / "models" / "run" / "checkpoints" / f"epoch_{sample_build['cfg'].train.epochs}.pt"
    assert ckpt.exists(), trained

    result = evaluate(config_path=str(SAMPLE_CONFIG), data_root=str(root))
    stored = json.loads((root / "eval" / "results.json").read_text())
    assert stored == result["results"]
    by_set = {r["evalset"]: r for r in stored}
    assert set(by_set) == {es.name for es in sample_build["cfg"].evalsets}
    for r in stored:
        assert 0.0 <= r["top1"] <= 1.0 and r["n"] > 0
    # Seen species are learnable from the sample: clearly above chance after a short CPU run.
    seen = by_set["seen_species"]
    assert seen["top1"] >= 2 * seen["chance"], seen
    assert "seen_species" in (root / "eval" / "results.md").read_text()
