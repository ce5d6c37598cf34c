from __future__ import annotations

import json

import pytest

from tests.conftest import REPO
from treeoflife.config import load_config

SAMPLE_CONFIG = REPO / "configs" / "sample.yaml"


@pytest.fixture(scope="session")
def sample_build(prefect_harness, tmp_path_factory):
    """The parent flow `tree-of-life` run once on the bundled sample, in a fresh data root."""
    from flows.tree_of_life import tree_of_life

    root = tmp_path_factory.mktemp("sample-build")
    result = tree_of_life(config_path=str(SAMPLE_CONFIG), data_root=str(root))
    cfg = load_config(SAMPLE_CONFIG, data_root=str(root))
    expected = json.loads((root / "sample" / "expected.json").read_text())
    return {"root": root, "cfg": cfg, "result": result, "expected": expected}
