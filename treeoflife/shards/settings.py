"""The shard settings, typed: what a split's shards are made with.

One frozen value travels from the config to the shard driver, its tasks and the release stage's
fingerprint, instead of eight loose arguments. Every setting but `workers` shapes the bytes
(`output_settings`); `validate` refuses a bad value before any work, naming its key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from treeoflife.config import ShardsConfig
from treeoflife.errors import ConfigError
from treeoflife.shards.resize import RESIZE_MODES, SHORTER_SIDE
from treeoflife.shards.text import RANDOM, TEXT_TYPES

TEXT_CHOICES = (*TEXT_TYPES, RANDOM)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ShardSettings:
    """How shards are made (see ShardsConfig for what each setting means)."""

    image_size: int
    jpeg_quality: int
    text_type: str
    seed: int
    samples_per_shard: int = 10_000
    max_shard_bytes: int = 0
    resize_mode: str = SHORTER_SIDE
    workers: int = 1

    @classmethod
    def from_config(cls, shards: ShardsConfig) -> ShardSettings:
        """The settings of a config's `shards` section (not validated: see `validate`)."""
        return cls(**{f.name: getattr(shards, f.name) for f in dataclasses.fields(cls)})

    def problems(self) -> list[str]:
        """One line per bad setting, naming its key (empty when every setting is usable)."""
        out = []
        ranges = {  # key: (lowest, highest or None)
            "image_size": (0, None),  # 0 keeps the stored image
            "jpeg_quality": (1, 100),
            "seed": (None, None),
            "samples_per_shard": (1, None),
            "max_shard_bytes": (0, None),  # 0: no byte limit
            "workers": (1, None),
        }
        for key, (low, high) in ranges.items():
            value = getattr(self, key)
            if not _is_int(value):
                out.append(f"shards.{key}: {value!r} is not an integer")
            elif (low is not None and value < low) or (high is not None and value > high):
                bounds = f">= {low}" if high is None else f"from {low} to {high}"
                out.append(f"shards.{key}: {value!r} is out of range (must be {bounds})")
        if self.text_type not in TEXT_CHOICES:
            out.append(f"shards.text_type: {self.text_type!r} not in {TEXT_CHOICES}")
        if self.resize_mode not in RESIZE_MODES:
            out.append(f"shards.resize_mode: {self.resize_mode!r} not in {RESIZE_MODES}")
        return out

    def validate(self) -> ShardSettings:
        """These settings, or a ConfigError listing every bad one (one line each)."""
        if problems := self.problems():
            raise ConfigError("\n".join(problems))
        return self

    def output_settings(self) -> dict:
        """The settings the shard bytes depend on: all but `workers` (the manifest's params
        and the release stage's fingerprint)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "workers"}
