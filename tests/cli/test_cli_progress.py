"""What `treeoflife summary`, `train` and `evaluate` show a user on a terminal (real processes
on the sample build; stderr is not a TTY here, so progress comes as plain lines)."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from tests.conftest import REPO, run_cli
from treeoflife.train.steps import TrainStep, describe_step, parse_train_step, seconds_left


def _args(config, root) -> list[str]:
    return ["--config", str(config), "--data-root", str(root)]


def test_summary_prints_what_build_printed(built_sample):
    root = built_sample["root"]
    proc = run_cli("summary", *_args("configs/sample.yaml", root))
    assert proc.returncode == 0, proc.stderr
    printed = built_sample["stdout"].rstrip("\n").splitlines()
    assert printed[-1].startswith("finished in") and "images: 427" in printed
    assert proc.stdout.rstrip("\n").splitlines() == printed[:-1]

    as_json = run_cli("summary", *_args("configs/sample.yaml", root), "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == json.loads((root / "release/summary.json").read_text())


def test_a_step_line_says_where_the_run_is_and_how_long_is_left():
    step = TrainStep(
        epoch=1, samples=96, samples_per_epoch=384, loss=2.5, loss_avg=2.75, samples_per_second=48
    )
    # epoch 2 of 3: 288 samples left in it and 384 in epoch 3, at 48/s: 14 s
    assert seconds_left(step, epochs=3) == (288 + 384) / 48
    assert describe_step(step, 3, 32) == (
        "epoch 2/3  step 3/12  loss 2.5000 (avg 2.7500)  48.0 samples/s  ETA 0:00:14"
    )
    assert parse_train_step("2026-12-07,02:00:37 | INFO | Start epoch 0") is None


@pytest.fixture(scope="module")
def trained(built_sample, tmp_path_factory) -> dict:
    """`treeoflife train` for 2 epochs on a copy of the sample build (logging every 3 steps)."""
    root = tmp_path_factory.mktemp("train") / "data"
    shutil.copytree(built_sample["root"], root)
    settings = yaml.safe_load((REPO / "configs/sample.yaml").read_text())
    settings["train"].update(epochs=2, log_every_n_steps=3)
    config = root.parent / "train.yaml"
    config.write_text(yaml.safe_dump(settings))
    proc = run_cli("train", *_args(config, root))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"root": root, "config": config, "proc": proc}


@pytest.mark.slow
def test_train_streams_open_clip_steps_to_the_terminal_and_the_log(trained):
    stderr = trained["proc"].stderr
    shown = [line for line in stderr.splitlines() if line.startswith("epoch ")]
    log = (trained["root"] / "models/run/train.log").read_text()
    logged = [s for s in map(parse_train_step, log.splitlines()) if s is not None]
    # every step open_clip logged reaches the terminal as it happens, with loss, speed, ETA
    assert len(shown) == len(logged) >= 4
    for line, step in zip(shown, logged, strict=True):
        assert f"epoch {step.epoch + 1}/2" in line and f"loss {step.loss:.4f}" in line
        assert f"{step.samples_per_second:.1f} samples/s" in line
        assert re.search(r"ETA \d+:\d\d:\d\d$", line)
    assert shown[-1].endswith("ETA 0:00:00")
    assert re.search(r"train: 2 items in \d", stderr)  # the epoch progress, one line per stage


@pytest.mark.slow
def test_evaluate_shows_progress_per_evaluation_set(trained):
    proc = run_cli("evaluate", *_args(trained["config"], trained["root"]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    per_set = re.findall(r"evaluate (\w+) \((\d)/(\d)\): (\d+) items in", proc.stderr)
    assert [(name, i, n) for name, i, n, _ in per_set] == [
        ("rare_species", "1", "2"),
        ("seen_species", "2", "2"),
    ]
    images = {name: int(k) for name, _, _, k in per_set}
    assert images == {"rare_species": 40, "seen_species": 100}  # the packaged sets, whole
    assert "rare_species" in proc.stdout  # then the results table
