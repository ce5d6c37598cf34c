from pathlib import Path

import pytest

from treeoflife.config import BuildConfig, config_from_dict, load_config
from treeoflife.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["sample.yaml", "tol10m.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(REPO / "configs" / name)
    assert isinstance(cfg, BuildConfig)
    assert cfg.taxonomy.backbone


def test_sample_config_points_at_the_sample_world():
    cfg = load_config(REPO / "configs/sample.yaml", data_root="/tmp/x")
    assert cfg.root == Path("/tmp/x")
    assert cfg.path(cfg.sources.bioscan.metadata) == Path(
        "/tmp/x/sample/bioscan/BIOSCAN_Insect_Dataset_metadata.tsv"
    )
    assert cfg.path("/abs/file") == Path("/abs/file")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"shards": {"samples_per_shardd": 3}}, "shards: unknown key(s) samples_per_shardd"),
        ({"shards": {"image_size": "big"}}, "shards.image_size: expected int"),
        ({"splits": {"val_fraction": "x"}}, "splits.val_fraction: expected float"),
        ({"evalsets": [{"name": "a"}]}, "missing required key metadata"),
        ({"sources": {"eol": {"manifests": "one.csv"}}}, "sources.eol.manifests: expected a list"),
        ({"bogus": 1}, "unknown key(s) bogus"),
        ({"shards": {"image_size": True}}, "shards.image_size: expected int"),
    ],
)
def test_bad_config_is_rejected_naming_the_key(data, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert message in str(err.value)


def test_int_accepted_where_float_expected():
    cfg = config_from_dict({"splits": {"val_fraction": 0}})
    assert cfg.splits.val_fraction == 0.0 and isinstance(cfg.splits.val_fraction, float)


def test_unreadable_config_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("shards: [unclosed")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
