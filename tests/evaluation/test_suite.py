"""One model's zero-shot + few-shot results per set, stored per model, reported as BioCLIP's
tables (rows models, columns tasks, mean); class names in another text type."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch

from tests.train.synthetic import CLASSNAMES, write_wds_evalset
from treeoflife.errors import InputError
from treeoflife.evalsets.wds import read_wds_evalset
from treeoflife.evaluation.suite import (
    collect_results,
    evaluate_model,
    model_slug,
    report_markdown,
    write_model_results,
    write_report,
)
from treeoflife.evaluation.zeroshot import evaluate_loaded, load_model, register_model_configs

MODEL = "treeoflife-tiny"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    register_model_configs()
    torch.manual_seed(2)
    path = tmp_path_factory.mktemp("w") / "tiny.pt"
    torch.save(open_clip.create_model(MODEL, pretrained=None).state_dict(), path)
    return load_model(MODEL, path)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("wds")
    write_wds_evalset(root / "b_set", per_class=7, nshards=2)
    write_wds_evalset(root / "a_set", per_class=3, nshards=1, seed=4)
    return [root / "b_set", root / "a_set"]


def test_evaluate_model_gives_zero_and_few_shot_per_set_in_order(loaded, sets):
    results = evaluate_model(loaded, sets, batch_size=8, shots=(1, 5), draws=3)
    assert [r["evalset"] for r in results] == ["b_set", "a_set"]
    b, a = results
    assert b["n"] == 35 and b["classes"] == 5
    assert set(b["few_shot"]) == {"1", "5"}
    assert b["few_shot"]["5"]["queries"] == 10 and b["few_shot"]["5"]["draws"] == 3
    assert a["few_shot"]["5"]["top1"] is None  # 3 images per class: no 5-shot task
    # zero-shot part equals the zero-shot-only path on the same set
    alone = evaluate_loaded(loaded, read_wds_evalset(sets[0]), batch_size=5)
    for key in ("n", "top1", "top5", "balanced_top1"):
        assert b[key] == alone[key]


def test_classnames_override_is_used_in_the_given_order(loaded, sets):
    [plain] = evaluate_model(loaded, sets[:1], shots=())
    same = {"b_set": list(CLASSNAMES)}
    [renamed] = evaluate_model(loaded, sets[:1], shots=(), classnames=same, text_type="common")
    assert renamed["text_type"] == "common" and "few_shot" not in renamed
    for key in ("n", "top1", "top5", "balanced_top1"):
        assert renamed[key] == plain[key]
    with pytest.raises(InputError, match="class names given"):
        evaluate_model(loaded, sets[:1], shots=(), classnames={"b_set": ["only one"]})


def test_results_accumulate_per_model_into_bioclip_tables(tmp_path):
    def result(task, top1, five):
        return {"evalset": task, "top1": top1, "top5": None, "few_shot": {"5": {"top1": five}}}

    write_model_results([result("rare", 0.5, 0.75), result("birds", 0.25, None)], tmp_path, "B/x")
    write_model_results([result("rare", 0.1, 0.2)], tmp_path, "A model")
    assert (tmp_path / model_slug("B/x") / "results.json").is_file()
    rows = collect_results(tmp_path)
    assert list(rows) == ["A model", "B/x"]  # sorted by folder
    md = report_markdown(rows)
    assert "### Zero-shot top-1" in md and "### Five-shot top-1" in md
    assert "top-5" not in md  # no model has a top-5 value
    zero = md.split("### Five-shot")[0]
    assert "| Model | rare | birds | Mean |" in zero
    assert "| B/x | 50.0 | 25.0 | 37.5 |" in zero
    assert "| A model | 10.0 | - | 10.0 |" in zero
    assert "| B/x | 75.0 | - | 75.0 |" in md.split("### Five-shot")[1]
    json_path, md_path = write_report(tmp_path)
    assert json.loads(json_path.read_text()) == rows
    assert md_path.read_text() == md
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{not json")
    with pytest.raises(InputError, match="broken"):
        collect_results(tmp_path)
