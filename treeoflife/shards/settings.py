"""The shard settings, typed: what a split's shards are made with.

One frozen value travels from the config to the shard driver, its tasks and the release stage's
fingerprint, instead of eight loose arguments. Every setting but `workers` shapes the bytes
(`output_settings`); `validate` refuses a bad value before any work, naming its key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from treeoflife.config import ShardsConfig
from treeoflife.config_rules import Problems, build, raise_problems
from treeoflife.shards.resize import SHORTER_SIDE


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
        """One line per bad setting, naming its key (empty when every setting is usable): the
        rules declared on the config's ShardsConfig fields, so both always agree."""
        problems = Problems()
        build(ShardsConfig, dataclasses.asdict(self), "shards", problems)
        return list(problems)

    def validate(self) -> ShardSettings:
        """These settings, or a ConfigError listing every bad one (one line each)."""
        raise_problems(self.problems())
        return self

    def output_settings(self) -> dict:
        """The settings the shard bytes depend on: all but `workers` (the manifest's params
        and the release stage's fingerprint)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "workers"}
