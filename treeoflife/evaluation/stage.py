"""The evaluate stage: zero-shot and few-shot results of one model on every packaged evaluation
set, accumulated per model under the evaluate output folder (imports torch and open_clip)."""

from __future__ import annotations

from pathlib import Path

import torch

from treeoflife.config import BuildConfig
from treeoflife.errors import InputError
from treeoflife.evalsets.package import evalset_classnames
from treeoflife.evalsets.wds import list_wds_evalsets
from treeoflife.evaluation.suite import (
    evaluate_model,
    report_markdown,
    write_model_results,
    write_report,
)
from treeoflife.evaluation.zeroshot import load_model
from treeoflife.io import write_text_atomic
from treeoflife.layout import Layout
from treeoflife.progress import Progress
from treeoflife.train.paths import model_configs_dir
from treeoflife.train.stage import export_dir, latest_checkpoint


def run_evaluate(
    cfg: BuildConfig,
    checkpoint: str | None = None,
    name: str = "run",
    *,
    model: str | None = None,
    label: str | None = None,
    progress: Progress | None = None,
) -> dict:
    """Zero-shot and few-shot results of one model on every packaged evaluation set.

    The model: `model` (an open_clip name, `local-dir:DIR` or `hf-hub:ORG/REPO`) with an
    optional `checkpoint`; by default the run's exported model, else its newest checkpoint.
    Writes `<evaluate.output>/<label>/results.json`, then `results.json` + `results.md` over
    every model evaluated there (BioCLIP's tables: rows models, columns tasks); when the model
    is the run's export, its model card gets the results.
    """
    layout = Layout(cfg.root)
    exported = export_dir(cfg, name)
    if model is None and checkpoint is None and (exported / "open_clip_config.json").is_file():
        model = f"local-dir:{exported}"
    if model is None:
        model = cfg.train.model
        checkpoint = checkpoint or latest_checkpoint(cfg, name)
        if checkpoint is None:
            raise InputError("no model to evaluate: run `treeoflife train` first")
    if label is None:
        label = name if model == f"local-dir:{exported}" else _model_label(model, checkpoint)
    dirs = list_wds_evalsets(layout.evalsets_wds)
    if not dirs:
        raise InputError(f"no packaged evaluation sets in {layout.evalsets_wds}")
    ev = cfg.evaluate
    text_type = ev.zero_shot_text_type
    classnames = evalset_classnames(cfg, text_type) if text_type else None
    loaded = load_model(model, checkpoint, _eval_device(ev.device), model_configs_dir())
    results = evaluate_model(
        loaded,
        dirs,
        batch_size=ev.batch_size,
        templates=ev.templates or None,
        classnames=classnames,
        text_type=text_type or ev.text_type,
        shots=ev.shots,
        draws=ev.draws,
        seed=ev.seed,
        progress=progress,
    )
    out = cfg.path(ev.output)
    write_model_results(results, out, label)
    json_path, md_path = write_report(out)
    if model == f"local-dir:{exported}":
        card = exported / "README.md"
        if card.is_file():
            _add_results_to_card(card, report_markdown({label: results}))
    return {
        "model": model,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "label": label,
        "results": results,
        "markdown": md_path.read_text(),
        "outputs": {"json": str(json_path), "markdown": str(md_path)},
    }


def _model_label(model: str, checkpoint) -> str:
    if checkpoint is None:
        return model
    return f"{model} ({Path(str(checkpoint)).name})"


def _eval_device(device: str | None) -> str:
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _add_results_to_card(card: Path, results_md: str) -> None:
    text = card.read_text(encoding="utf-8")
    head, sep, _ = text.partition("## Results\n")
    if sep:
        write_text_atomic(card, f"{head}{sep}\n{results_md.rstrip()}\n")
