"""Zero-shot classification accuracy of a CLIP checkpoint on CLIP_benchmark-style sets.

The classifier is open_clip's `build_zero_shot_classifier` over class names x templates (the
set's own templates file unless templates are given); accuracy is top-1, top-5 (sets with at
least 5 classes) and balanced top-1 (mean of per-class accuracy over the classes present).
"""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch

from treeoflife.errors import InputError
from treeoflife.evalsets.wds import WdsEvalSet, list_wds_evalsets, read_wds_evalset
from treeoflife.evaluation.features import EncodedSet, encode_evalset
from treeoflife.evaluation.templates import OPENAI_IMAGENET_TEMPLATES, Template, as_callables
from treeoflife.io import write_text_atomic
from treeoflife.progress import Progress
from treeoflife.train.paths import model_configs_dir

log = logging.getLogger(__name__)

_registered_config_dirs: set[Path] = set()


@dataclass
class LoadedModel:
    """A CLIP model ready for inference, with its eval transform and tokenizer."""

    name: str
    checkpoint: str | None
    model: torch.nn.Module
    preprocess: object
    tokenizer: object
    device: torch.device


def register_model_configs(model_configs: Path | None = None) -> None:
    """Make our model configs (or `model_configs`) known to open_clip, once per folder."""
    if model_configs is None:
        model_configs = model_configs_dir()
    folder = Path(model_configs).resolve()
    if folder not in _registered_config_dirs:
        open_clip.add_model_config(folder)
        _registered_config_dirs.add(folder)


def load_model(
    model: str,
    checkpoint: Path | str | None,
    device: str = "cpu",
    model_configs: Path | None = None,
    cache_dir: Path | None = None,
) -> LoadedModel:
    """Build `model` and load `checkpoint`.

    `model` is an open_clip model name (ours or open_clip's), `local-dir:DIR` (an exported
    model folder) or `hf-hub:ORG/REPO` (read from the local Hugging Face cache when
    HF_HUB_OFFLINE=1). `checkpoint` is an open_clip_train checkpoint, a weights file or a
    pretrained tag (e.g. `openai`); None gives the model's own weights for `local-dir:` and
    `hf-hub:` models and a random initialisation otherwise (a chance baseline). `cache_dir`:
    where hub and pretrained downloads are cached (default: the Hugging Face cache).
    """
    register_model_configs(model_configs)
    if model.startswith("local-dir:"):
        folder = Path(model.removeprefix("local-dir:"))
        if not (folder / "open_clip_config.json").is_file():
            raise InputError(f"{folder} is not an exported open_clip model folder")
    pretrained = None if checkpoint is None else str(checkpoint)
    looks_like_path = isinstance(checkpoint, Path) or "/" in str(checkpoint or "")
    if pretrained is not None and looks_like_path and not Path(pretrained).is_file():
        raise InputError(f"checkpoint {pretrained} does not exist")
    cache = None if cache_dir is None else str(cache_dir)
    clip, _, preprocess = open_clip.create_model_and_transforms(
        model, pretrained=pretrained, device=device, cache_dir=cache
    )
    clip.eval()
    return LoadedModel(
        name=model,
        checkpoint=pretrained,
        model=clip,
        preprocess=preprocess,
        tokenizer=open_clip.get_tokenizer(model, cache_dir=cache),
        device=torch.device(device),
    )


def evaluate_zero_shot(
    model: str,
    checkpoint: Path | str | None,
    evalset_dir: Path,
    batch_size: int = 64,
    device: str = "cpu",
    templates: list[str] | None = None,
    model_configs: Path | None = None,
    *,
    split: str = "test",
    progress: Progress | None = None,
) -> dict:
    """Zero-shot accuracy of `model`+`checkpoint` on one wds evaluation set."""
    loaded = load_model(model, checkpoint, device, model_configs)
    evalset = read_wds_evalset(evalset_dir, split)
    return evaluate_loaded(loaded, evalset, batch_size, templates, progress=progress)


def evaluate_all(
    model: str,
    checkpoint: Path | str | None,
    wds_root: Path,
    batch_size: int = 64,
    device: str = "cpu",
    templates: list[str] | None = None,
    model_configs: Path | None = None,
    *,
    split: str = "test",
    progress: Progress | None = None,
) -> list[dict]:
    """`evaluate_zero_shot` over every set under `wds_root` (sorted by name), model loaded once."""
    dirs = list_wds_evalsets(wds_root, split)
    if not dirs:
        raise InputError(f"no evaluation sets (classnames.txt + {split}/nshards.txt) in {wds_root}")
    loaded = load_model(model, checkpoint, device, model_configs)
    return [
        evaluate_loaded(
            loaded, read_wds_evalset(d, split), batch_size, templates, progress=progress
        )
        for d in dirs
    ]


def evaluate_loaded(
    loaded: LoadedModel,
    evalset: WdsEvalSet,
    batch_size: int = 64,
    templates: Sequence[Template] | None = None,
    *,
    classnames: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> dict:
    """Zero-shot accuracy of an already loaded model on one set."""
    encoded = encode_evalset(loaded, evalset, batch_size, progress=progress)
    return zero_shot_metrics(loaded, encoded, templates, classnames=classnames)


def zero_shot_classifier(
    loaded: LoadedModel, classnames: Sequence[str], templates: Sequence[Template]
) -> torch.Tensor:
    """[embed_dim, classes]: the normalised mean text embedding of each class's prompts."""
    if not templates:
        raise InputError("no templates to build the zero-shot classifier from")
    with torch.no_grad():
        return (
            open_clip.build_zero_shot_classifier(
                loaded.model,
                tokenizer=loaded.tokenizer,
                classnames=list(classnames),
                templates=as_callables(templates),
                num_classes_per_batch=10,
                device=loaded.device,
            )
            .float()
            .cpu()
        )


def zero_shot_metrics(
    loaded: LoadedModel,
    encoded: EncodedSet,
    templates: Sequence[Template] | None = None,
    *,
    classnames: Sequence[str] | None = None,
) -> dict:
    """Zero-shot accuracy from a set's image features.

    `classnames` replaces the set's `classnames.txt` (same order, e.g. another text type);
    `templates` replaces the set's templates file (the OpenAI ImageNet templates when the set
    ships none).
    """
    evalset = encoded.evalset
    if classnames is None:
        classnames = evalset.classnames
    if len(classnames) != len(evalset.classnames):
        raise InputError(
            f"{evalset.name}: {len(classnames)} class names given for "
            f"{len(evalset.classnames)} classes"
        )
    if templates is None:
        templates = evalset.templates
    if templates is None:
        log.info("%s ships no templates file; using the OpenAI ImageNet templates", evalset.name)
        templates = OPENAI_IMAGENET_TEMPLATES
    classifier = zero_shot_classifier(loaded, classnames, templates)
    top5_k = min(5, len(classnames))
    ranked = (encoded.features @ classifier).topk(top5_k, dim=1).indices
    metrics = accuracy_metrics(ranked, encoded.labels, len(classnames))
    return {
        "evalset": evalset.name,
        "n": int(encoded.labels.numel()),
        "classes": len(classnames),
        **metrics,
        "chance": 1.0 / len(classnames),
        "skipped": dict(encoded.skipped),
        "templates": len(templates),
        "model": loaded.name,
        "checkpoint": loaded.checkpoint,
    }


def accuracy_metrics(ranked: torch.Tensor, labels: torch.Tensor, n_classes: int) -> dict:
    """top1, top5 (None under 5 classes) and balanced_top1 from ranked class predictions.

    `ranked[i]` holds sample i's best classes, best first (at least 5 columns when
    `n_classes >= 5`).
    """
    hit1 = (ranked[:, 0] == labels).tolist()
    n = len(hit1)
    top5 = None
    if n_classes >= 5:
        hit5 = (ranked[:, :5] == labels[:, None]).any(dim=1).tolist()
        top5 = sum(hit5) / n
    by_class: dict[int, list[bool]] = collections.defaultdict(list)
    for label, hit in zip(labels.tolist(), hit1, strict=True):
        by_class[label].append(hit)
    per_class = [sum(hits) / len(hits) for _, hits in sorted(by_class.items())]
    return {
        "top1": sum(hit1) / n,
        "top5": top5,
        "balanced_top1": sum(per_class) / len(per_class),
    }


def results_markdown(results: list[dict], model_label: str, metric: str = "top1") -> str:
    """A BioCLIP-style table (rows models, columns tasks, then the mean), values in %.

    `metric` is a result key or a dotted path into nested results (`few_shot.5.top1`).
    """
    return results_table_markdown({model_label: results}, metric)


def results_table_markdown(rows: dict[str, list[dict]], metric: str = "top1") -> str:
    """The table for several models: `rows` maps a model label to its results."""
    tasks: list[str] = []
    for results in rows.values():
        for r in results:
            if r["evalset"] not in tasks:
                tasks.append(r["evalset"])
    lines = [
        "| Model | " + " | ".join(tasks) + " | Mean |",
        "|---|" + "---:|" * (len(tasks) + 1),
    ]
    for label, results in rows.items():
        by_task = {r["evalset"]: metric_value(r, metric) for r in results}
        values = [by_task.get(t) for t in tasks]
        present = [v for v in values if v is not None]
        mean = sum(present) / len(present) if present else None
        cells = [_percent(v) for v in [*values, mean]]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def metric_value(result: dict, metric: str):
    """`result[metric]`, where a dotted metric (`few_shot.5.top1`) walks nested results."""
    value = result
    for part in metric.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def write_results(results: list[dict], out_dir: Path, model_label: str) -> tuple[Path, Path]:
    """`results.json` and `results.md` in `out_dir`, written atomically; returns both paths."""
    out_dir = Path(out_dir)
    json_path, md_path = out_dir / "results.json", out_dir / "results.md"
    payload = {"model": model_label, "results": results}
    write_text_atomic(json_path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    write_text_atomic(md_path, results_markdown(results, model_label))
    return json_path, md_path
