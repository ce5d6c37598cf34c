"""Export a training checkpoint as a self-contained open_clip model folder.

    <out_dir>/open_clip_config.json         {"model_cfg": ..., "preprocess_cfg": ...}
    <out_dir>/open_clip_model.safetensors   weights only (no optimizer state)

It is the layout open_clip reads with `create_model_and_transforms("local-dir:<out_dir>")` and
the one its Hugging Face Hub uploads use, so the model no longer needs our config registry.
Same checkpoint -> same bytes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from treeoflife.io import atomic_path, write_text_atomic
from treeoflife.train.paths import model_configs_dir

log = logging.getLogger(__name__)

CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"


def export_model(
    checkpoint: Path | str,
    model: str,
    out_dir: Path | str,
    model_configs: Path | None = None,
) -> Path:
    """Write `checkpoint`'s weights and `model`'s config to `out_dir`; return `out_dir`."""
    import open_clip
    from safetensors.torch import save_file

    open_clip.add_model_config(Path(model_configs or model_configs_dir()))
    model_cfg = open_clip.get_model_config(model)
    if model_cfg is None:
        raise ValueError(f"unknown model config {model!r}")
    clip = open_clip.create_model(model, pretrained=str(checkpoint), device="cpu")
    preprocess_cfg = open_clip.get_model_preprocess_cfg(clip)
    tensors = {
        name: tensor.detach().to("cpu").contiguous().clone()
        for name, tensor in sorted(clip.state_dict().items())
    }
    out_dir = Path(out_dir)
    with atomic_path(out_dir / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp))
    config = {"model_cfg": model_cfg, "preprocess_cfg": _jsonable(preprocess_cfg)}
    write_text_atomic(out_dir / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=True) + "\n")
    log.info("exported %s (%s) to %s", checkpoint, model, out_dir)
    return out_dir


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
