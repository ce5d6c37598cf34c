"""ShardSettings: built from the config's `shards` section, refused with every bad key named by
the rules declared on the config's fields."""

import dataclasses

import pytest

from treeoflife.config import ShardsConfig
from treeoflife.errors import ConfigError
from treeoflife.shards.settings import ShardSettings


def test_from_config_takes_every_key_and_the_bytes_depend_on_all_but_workers():
    section = ShardsConfig(samples_per_shard=7, max_shard_bytes=9, text_type="sci", workers=3)
    settings = ShardSettings.from_config(section)
    assert dataclasses.asdict(settings) == dataclasses.asdict(section)
    # What the release stage fingerprints and each manifest records: the section without
    # `workers` (the bytes do not depend on it).
    expected = {k: v for k, v in dataclasses.asdict(section).items() if k != "workers"}
    assert settings.output_settings() == expected
    assert settings.validate() is settings


def test_every_bad_setting_is_listed_at_once_naming_its_key():
    bad = ShardSettings(
        image_size=-1,
        jpeg_quality=1000,
        text_type="prose",
        seed="abc",
        samples_per_shard=0,
        max_shard_bytes=-3,
        resize_mode="fit",
        workers=True,
    )
    with pytest.raises(ConfigError) as err:
        bad.validate()
    lines = str(err.value).splitlines()
    keys = [line.split(":", 1)[0] for line in lines]
    assert sorted(keys) == sorted(f"shards.{f.name}" for f in dataclasses.fields(bad))
    # The rules declared on the config's fields, so a setting refused here is refused there.
    assert "shards.jpeg_quality: must be in 1..100, got 1000" in lines
    assert "shards.seed: expected int, got 'abc'" in lines
    assert "shards.workers: expected int, got True" in lines


@pytest.mark.parametrize(
    "key, value", [("samples_per_shard", 1), ("max_shard_bytes", 0), ("image_size", 0)]
)
def test_edge_values_are_accepted(key, value):
    settings = ShardSettings(image_size=64, jpeg_quality=1, text_type="random", seed=0)
    assert dataclasses.replace(settings, **{key: value}).problems() == []
