"""Where the training package keeps its files (no torch: every module may import this)."""

from __future__ import annotations

from pathlib import Path


def model_configs_dir() -> Path:
    """Folder of our open_clip model configs (JSON), for `open_clip.add_model_config`."""
    return Path(__file__).resolve().parent / "model_configs"
