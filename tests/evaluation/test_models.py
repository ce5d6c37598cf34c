"""Any open_clip model evaluates: a train checkpoint, an exported `local-dir:` folder, and a
`hf-hub:` name read offline from a Hugging Face cache that holds it - all the same weights,
so all the same numbers."""

from __future__ import annotations

import shutil

import open_clip
import pytest
import torch

from tests.train.synthetic import write_wds_evalset
from treeoflife.errors import InputError
from treeoflife.evaluation.suite import evaluate_model
from treeoflife.evaluation.zeroshot import load_model, register_model_configs
from treeoflife.train import export_model

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    register_model_configs()
    torch.manual_seed(5)
    model = open_clip.create_model("treeoflife-tiny", pretrained=None)
    root = tmp_path_factory.mktemp("models")
    checkpoint = root / "epoch_1.pt"
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 1, "state_dict": state}, checkpoint)
    folder = export_model(checkpoint, "treeoflife-tiny", root / "export")
    # The Hugging Face cache layout of a repo `treeoflife/tiny-test` at one snapshot.
    repo = root / "hub" / "models--treeoflife--tiny-test"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(SNAPSHOT)
    shutil.copytree(folder, repo / "snapshots" / SNAPSHOT)
    evalset = root / "wds" / "toy"
    write_wds_evalset(evalset, per_class=6, nshards=1)
    return {"checkpoint": checkpoint, "folder": folder, "hub": root / "hub", "evalset": evalset}


def test_checkpoint_export_and_hub_copy_give_the_same_results(exported):
    evalset = [exported["evalset"]]
    loaded = [
        load_model("treeoflife-tiny", exported["checkpoint"]),
        load_model(f"local-dir:{exported['folder']}", None),
        load_model("hf-hub:treeoflife/tiny-test", None, cache_dir=exported["hub"]),
    ]
    results = [evaluate_model(m, evalset, shots=(1, 5), draws=2)[0] for m in loaded]
    for r in results[1:]:
        for key in ("n", "top1", "top5", "balanced_top1"):
            assert r[key] == results[0][key]
        assert r["few_shot"] == results[0]["few_shot"]


def test_a_folder_that_is_not_an_export_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not an exported open_clip model"):
        load_model(f"local-dir:{tmp_path}", None)
