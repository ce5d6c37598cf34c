"""The BioCLIP evaluation of one model: zero-shot and few-shot on every evaluation set.

    results = evaluate_model(load_model("local-dir:models/run/export", None), set_dirs)
    write_model_results(results, eval_dir, "BioCLIP-tiny")   # eval/<label>/results.json
    collect_results(eval_dir)                                # every model evaluated so far
    report_markdown(collect_results(eval_dir))               # BioCLIP-style tables

Each set's images are encoded once; zero-shot (top-1, top-5, balanced top-1) and SimpleShot
(k = 1 and 5, mean and spread over seeded draws) both use those features. Tables are shaped
like BioCLIP's: rows are models, columns are tasks, then the mean over tasks.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from treeoflife.errors import InputError
from treeoflife.evalsets.wds import read_wds_evalset
from treeoflife.evaluation.features import encode_evalset
from treeoflife.evaluation.fewshot import DEFAULT_DRAWS, DEFAULT_SHOTS, few_shot_metrics
from treeoflife.evaluation.templates import Template
from treeoflife.evaluation.zeroshot import (
    LoadedModel,
    metric_value,
    results_table_markdown,
    zero_shot_metrics,
)
from treeoflife.io import write_text_atomic
from treeoflife.progress import Progress

log = logging.getLogger(__name__)

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"

_SHOT_WORDS = {1: "One", 2: "Two", 3: "Three", 4: "Four", 5: "Five", 10: "Ten"}


def _tables(rows: Mapping[str, list[dict]]) -> list[tuple[str, str]]:
    """(title, metric path) of the report's tables: BioCLIP's zero-shot and k-shot first."""
    shots = sorted(
        {int(k) for results in rows.values() for r in results for k in r.get("few_shot", {})}
    )
    return [
        ("Zero-shot top-1", "top1"),
        *[
            (
                f"{_SHOT_WORDS.get(k, k)}-shot top-1 (SimpleShot, mean of draws)",
                f"few_shot.{k}.top1",
            )
            for k in shots
        ],
        ("Zero-shot top-5", "top5"),
        ("Zero-shot balanced top-1", "balanced_top1"),
    ]


def evaluate_model(
    loaded: LoadedModel,
    evalset_dirs: Sequence[Path],
    batch_size: int = 64,
    templates: Sequence[Template] | None = None,
    *,
    classnames: Mapping[str, Sequence[str]] | None = None,
    text_type: str | None = None,
    shots: Sequence[int] = DEFAULT_SHOTS,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    split: str = "test",
    progress: Progress | None = None,
) -> list[dict]:
    """Zero-shot and few-shot results of `loaded` on each set (in the order given).

    `classnames` maps a set name to class names replacing its `classnames.txt` (e.g. another
    text type, recorded as `text_type`).
    """
    if not evalset_dirs:
        raise InputError("no evaluation sets to evaluate on")
    results = []
    for i, folder in enumerate(evalset_dirs, 1):
        evalset = read_wds_evalset(folder, split)
        stage = f"evaluate {evalset.name} ({i}/{len(evalset_dirs)})"
        encoded = encode_evalset(loaded, evalset, batch_size, progress=progress, stage=stage)
        names = (classnames or {}).get(evalset.name)
        result = zero_shot_metrics(loaded, encoded, templates, classnames=names)
        result["text_type"] = text_type
        if shots:
            result["few_shot"] = few_shot_metrics(
                encoded.features, encoded.labels, shots, draws, seed
            )
        log.info(
            "%s on %s: zero-shot top-1 %.3f%s",
            loaded.name,
            evalset.name,
            result["top1"],
            "".join(
                f", {k}-shot {v['top1']:.3f}"
                for k, v in result.get("few_shot", {}).items()
                if v.get("top1") is not None
            ),
        )
        results.append(result)
    return results


def model_slug(label: str) -> str:
    """A folder name for a model label."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._")
    return slug or "model"


def write_model_results(results: list[dict], eval_dir: Path, label: str) -> Path:
    """`<eval_dir>/<slug>/results.json` ({"model": label, "results": [...]}); returns it."""
    path = Path(eval_dir) / model_slug(label) / RESULTS_JSON
    payload = {"model": label, "results": results}
    write_text_atomic(path, json.dumps(payload, indent=1, sort_keys=True) + "\n")
    return path


def collect_results(eval_dir: Path) -> dict[str, list[dict]]:
    """Every model's results under `eval_dir`, by label (sorted by folder name)."""
    rows: dict[str, list[dict]] = {}
    for path in sorted(Path(eval_dir).glob(f"*/{RESULTS_JSON}")):
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            rows[str(payload["model"])] = list(payload["results"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"cannot read results {path}: {exc}") from exc
    return rows


def report_markdown(rows: Mapping[str, list[dict]]) -> str:
    """BioCLIP-style tables (rows models, columns tasks, then the mean), values in %."""
    parts = []
    for title, metric in _tables(rows):
        values = [metric_value(r, metric) for results in rows.values() for r in results]
        if all(v is None for v in values):
            continue
        parts.append(f"### {title}\n\n" + results_table_markdown(dict(rows), metric))
    return "\n".join(parts)


def write_report(eval_dir: Path) -> tuple[Path, Path]:
    """`<eval_dir>/results.json` (every model) and `results.md` (the tables)."""
    eval_dir = Path(eval_dir)
    rows = collect_results(eval_dir)
    json_path, md_path = eval_dir / RESULTS_JSON, eval_dir / RESULTS_MD
    write_text_atomic(json_path, json.dumps(rows, indent=1, sort_keys=True) + "\n")
    write_text_atomic(md_path, report_markdown(rows))
    return json_path, md_path
