import json

import yaml

from treeoflife.release.card import render_dataset_card, size_category, write_dataset_card
from treeoflife.schemas import CATALOG

SUMMARY = {
    "images": 120,
    "by_source": {
        "bioscan": {"kept": 30, "excluded": 10},
        "eol": {"kept": 20, "failed": 15},
        "inat21": {"kept": 40, "removed": 5},
    },
    "by_status": {"excluded": 10, "failed": 15, "kept": 90, "removed": 5},
    "by_reason": {"failed:http_404": 15, "removed:held_out_species": 5},
    "by_split": {"train": 80, "val": 10, "train_small": 24},
    "pretty_name": "TreeOfLife sample",
    "evalsets": {"rare_species": {"images": 30, "classes": 3, "skipped": 0}},
}


def _release(tmp_path, shards: dict[str, int]):
    release = tmp_path / "release"
    for split, n in shards.items():
        d = release / "shards" / split
        d.mkdir(parents=True)
        sizes = {f"shard-{i:06d}.tar": 10 for i in range(n)}
        (d / "sizes.json").write_text(json.dumps(sizes))
    return release


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    end = text.index("\n---\n", 4)
    return yaml.safe_load(text[4:end])


def test_card_front_matter_is_valid_hub_yaml(tmp_path):
    release = _release(tmp_path, {"train": 8, "val": 1})
    path = write_dataset_card(release, SUMMARY)
    assert path == release / "README.md"
    front = _front_matter(path.read_text())
    assert front["language"] == ["en"]
    assert front["task_categories"] == ["zero-shot-image-classification", "image-classification"]
    assert front["size_categories"] == ["n<1K"]
    assert front["pretty_name"] == "TreeOfLife sample"
    assert front["license"] == "other" and front["license_link"] == "licenses.csv"
    default = next(c for c in front["configs"] if c["config_name"] == "default")
    assert default["data_files"] == [
        {"split": "train", "path": "shards/train/shard-*.tar"},
        {"split": "val", "path": "shards/val/shard-*.tar"},
    ]


def test_card_body_counts_usage_and_columns(tmp_path):
    release = _release(tmp_path, {"train": 8, "val": 1, "train_small": 2})
    text = write_dataset_card(release, SUMMARY).read_text()
    assert "--train-data 'shards/train/shard-{000000..000007}.tar'" in text
    assert "--dataset-type webdataset" in text
    assert "| inat21 | 45 | 0 | 0 | 40 | 5 |" in text  # source, total, per status
    assert "| removed:held_out_species | 5 |" in text
    assert "| train | 80 | 8 |" in text and "| val | 10 | 1 |" in text
    assert "| train_small | 24 | 2 |" in text and "shards repeat those samples" in text
    assert "croissant.json" in text and "index.parquet" in text and "`random`" in text
    for field in CATALOG:
        assert f"| `{field.name}` |" in text
    assert "stevens2024bioclip" in text
    assert "| rare_species | 30 | 3 |" in text
    assert "None" not in text


def test_card_is_deterministic_and_atomic(tmp_path):
    release = _release(tmp_path, {"train": 3})
    a = write_dataset_card(release, SUMMARY).read_bytes()
    b = write_dataset_card(release, dict(reversed(list(SUMMARY.items())))).read_bytes()
    assert a == b
    assert sorted(p.name for p in release.iterdir()) == ["README.md", "shards"]


def test_card_without_shards_and_with_flat_counts():
    text = render_dataset_card({"by_source": {"eol": 3}, "license": "cc-by-4.0"}, {})
    front = _front_matter(text)
    assert front["license"] == "cc-by-4.0" and "license_link" not in front
    # no shards, no config: the catalog's configs are in metadata/'s own card (release.hub)
    assert "configs" not in front and "dataset_info" not in front
    assert "| eol | 3 |" in text


def test_size_categories():
    assert size_category(999) == "n<1K"
    assert size_category(1000) == "1K<n<10K"
    assert size_category(9_500_000) == "1M<n<10M"
    assert size_category(10_400_000) == "10M<n<100M"
