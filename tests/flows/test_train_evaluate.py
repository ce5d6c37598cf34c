"""The trailing flows on the sample: train a tiny open_clip model on CPU through the `train`
flow, export it, reload it as `local-dir:`, evaluate it through the `evaluate` flow (zero-shot
and SimpleShot), and cross-check the zero-shot top-1 against `clip_benchmark eval`.

The sample is learnable: after 10 epochs on 357 images the seen species are well above chance.
Its evaluation sets hold 10 images per species, so 1- and 5-shot both keep query images.
"""

from __future__ import annotations

import dataclasses
import json
import os

import open_clip
import pytest
import torch
import yaml

from tests.conftest import REPO
from tests.flows.conftest import SAMPLE_CONFIG
from treeoflife.evalsets.package import evalset_classnames
from treeoflife.evaluation.stage import run_evaluate
from treeoflife.train.stage import latest_checkpoint

pytestmark = pytest.mark.slow

CLIP_BENCHMARK_VENV = os.environ.get(
    "TREEOFLIFE_CLIP_BENCHMARK_VENV", str(REPO / "bench" / ".venvs" / "clip-benchmark")
)


@pytest.fixture(scope="module")
def trained(sample_build):
    from flows.evaluate import evaluate
    from flows.train import train

    root = sample_build["root"]
    result = train(config_path=str(SAMPLE_CONFIG), data_root=str(root))
    evaluated = evaluate(config_path=str(SAMPLE_CONFIG), data_root=str(root))
    return {**sample_build, "train": result, "evaluate": evaluated}


def test_train_flow_checkpoints_and_exports_a_local_dir_model(trained):
    cfg = trained["cfg"]
    root = trained["root"]
    ckpt = root / "models" / "run" / "checkpoints" / f"epoch_{cfg.train.epochs}.pt"
    assert trained["train"]["checkpoint"] == str(ckpt) and ckpt.exists()
    export = root / "models" / "run" / "export"
    assert trained["train"]["model"] == f"local-dir:{export}"
    assert sorted(p.name for p in export.iterdir()) == [
        "README.md",
        "open_clip_config.json",
        "open_clip_model.safetensors",
    ]
    _, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{export}")
    assert preprocess is not None
    reference = open_clip.create_model(f"local-dir:{export}")
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    weights = {k.removeprefix("module."): v for k, v in checkpoint.items()}
    assert all(torch.equal(v, weights[k]) for k, v in reference.state_dict().items())
    card = (export / "README.md").read_text()
    assert yaml.safe_load(card.split("---\n")[1])["library_name"] == "open_clip"
    assert "| num_samples | 357 |" in card and "| model | treeoflife-tiny |" in card


def test_evaluate_flow_zero_and_few_shot_above_chance(trained):
    root = trained["root"]
    result = trained["evaluate"]
    assert result["model"].startswith("local-dir:") and result["label"] == "run"
    stored = json.loads((root / "eval" / "run" / "results.json").read_text())
    assert stored == {"model": "run", "results": result["results"]}
    by_set = {r["evalset"]: r for r in stored["results"]}
    assert set(by_set) == {es.name for es in trained["cfg"].evalsets}
    seen, rare = by_set["seen_species"], by_set["rare_species"]
    assert seen["n"] == 100 and seen["classes"] == 10 and rare["classes"] == 4
    # Seen species were trained on: zero-shot at least twice chance (measured 64-72%).
    assert seen["top1"] >= 2 * seen["chance"], seen
    # Few-shot needs no class names: even the held-out rare species sit well above chance.
    for r in (seen, rare):
        for k in ("1", "5"):
            shot = r["few_shot"][k]
            assert shot["draws"] == 5 and shot["top1"] >= 1.5 * shot["chance"], (
                r["evalset"],
                k,
                shot,
            )
    md = (root / "eval" / "results.md").read_text()
    assert "| Model | rare_species | seen_species | Mean |" in md
    assert f"| run | {100 * rare['top1']:.1f} | {100 * seen['top1']:.1f} |" in md
    card = (root / "models" / "run" / "export" / "README.md").read_text()
    assert "### Zero-shot top-1" in card and "Not evaluated yet" not in card


def test_other_text_type_and_models_become_rows_of_one_table(trained):
    cfg = trained["cfg"]
    root = trained["root"]
    sci = dataclasses.replace(
        cfg, evaluate=dataclasses.replace(cfg.evaluate, zero_shot_text_type="scientific")
    )
    names = evalset_classnames(sci, "scientific")["seen_species"]
    assert all(len(n.split()) == 2 for n in names)  # "Genus epithet"
    result = run_evaluate(sci, label="run, scientific names")
    assert all(r["text_type"] == "scientific" for r in result["results"])
    checkpoint = latest_checkpoint(cfg)
    run_evaluate(
        dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, shots=[1])),
        str(checkpoint),
    )
    rows = json.loads((root / "eval" / "results.json").read_text())
    assert set(rows) == {"run", "run, scientific names", f"treeoflife-tiny ({checkpoint.name})"}
    # the checkpoint and its export are the same model: same numbers
    by_label = {k: {r["evalset"]: r for r in v} for k, v in rows.items()}
    ckpt_row = by_label[f"treeoflife-tiny ({checkpoint.name})"]["seen_species"]
    assert ckpt_row["top1"] == by_label["run"]["seen_species"]["top1"]
    md = (root / "eval" / "results.md").read_text()
    assert md.count("| run, scientific names |") >= 3  # zero-shot, one-shot, top-5 ...


def test_zero_shot_top1_equals_clip_benchmark(trained):
    from tests.support.crosscheck import clip_benchmark_zero_shot, ensure_clip_benchmark_env

    python = ensure_clip_benchmark_env(CLIP_BENCHMARK_VENV)
    root = trained["root"]
    export = root / "models" / "run" / "export"
    ours = {r["evalset"]: r for r in trained["evaluate"]["results"]}["seen_species"]
    theirs = clip_benchmark_zero_shot(
        python, f"local-dir:{export}", root / "release" / "evalsets" / "wds" / "seen_species"
    )
    assert theirs["acc1"] == pytest.approx(ours["top1"], abs=1e-9)
    assert theirs["acc5"] == pytest.approx(ours["top5"], abs=1e-9)
    assert theirs["mean_per_class_recall"] == pytest.approx(ours["balanced_top1"], abs=1e-9)
