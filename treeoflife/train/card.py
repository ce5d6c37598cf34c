"""A model card (README.md) for an exported model folder, in the Hugging Face Hub format.

The front matter says `library_name: open_clip`, so the Hub and `open_clip` tooling recognise
the folder; the body records the training data, the hyperparameters and, once evaluated, the
results tables. Same inputs -> same bytes (no dates).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

from treeoflife.config import TrainConfig
from treeoflife.io import write_text_atomic

CARD_NAME = "README.md"


def model_card(
    train: TrainConfig,
    data: Mapping,
    results_markdown: str | None = None,
    title: str | None = None,
) -> str:
    """The card's text. `data`: {"shards", "num_samples", "text_type", "checkpoint", ...}."""
    front = [
        "---",
        "library_name: open_clip",
        "pipeline_tag: zero-shot-image-classification",
        "tags:",
        "- clip",
        "- biology",
        "- zero-shot-image-classification",
        "---",
        "",
    ]
    title = title or f"{train.model} trained on a TreeOfLife-style dataset"
    hyper = dataclasses.asdict(train)
    lines = [
        f"# {title}",
        "",
        "A CLIP model trained with stock `open_clip_train` on webdataset shards written by",
        "`treeoflife` (BioCLIP's recipe: images paired with taxonomic and common-name captions).",
        "",
        "```python",
        "import open_clip",
        "",
        'model, _, preprocess = open_clip.create_model_and_transforms("local-dir:<this folder>")',
        'tokenizer = open_clip.get_tokenizer("local-dir:<this folder>")',
        "```",
        "",
        "## Training data",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {_cell(v)} |" for k, v in sorted(data.items())],
        "",
        "## Hyperparameters",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {_cell(v)} |" for k, v in sorted(hyper.items())],
        "",
        "## Results",
        "",
        (results_markdown or "Not evaluated yet: run `treeoflife evaluate`.").rstrip(),
        "",
    ]
    return "\n".join(front + lines)


def write_model_card(
    folder: Path,
    train: TrainConfig,
    data: Mapping,
    results_markdown: str | None = None,
    title: str | None = None,
) -> Path:
    """Write `<folder>/README.md` atomically; returns its path."""
    path = Path(folder) / CARD_NAME
    write_text_atomic(path, model_card(train, data, results_markdown, title))
    return path


def _cell(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return str(text).replace("|", "\\|").replace("\n", " ")
