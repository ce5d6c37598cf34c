"""The exported model's card: Hub front matter, training data, hyperparameters, results."""

from __future__ import annotations

import yaml

from treeoflife.config import TrainConfig
from treeoflife.train import model_card, write_model_card


def test_card_front_matter_data_hyperparameters_and_bytes(tmp_path):
    train = TrainConfig(model="treeoflife-tiny", epochs=3, lr=0.001, pretrained="openai")
    data = {"num_samples": 357, "text_type": "taxon_com", "shards": "a|b"}
    text = model_card(train, data)
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["library_name"] == "open_clip"
    assert front["pipeline_tag"] == "zero-shot-image-classification"
    assert "| num_samples | 357 |" in text and "| text_type | taxon_com |" in text
    assert "| shards | a\\|b |" in text  # table cells escaped
    assert "| lr | 0.001 |" in text and "| pretrained | openai |" in text
    assert "| epochs | 3 |" in text
    assert "Not evaluated yet" in text
    path = write_model_card(tmp_path, train, data, "| Model | x |\n")
    assert path.name == "README.md" and path.read_text().rstrip().endswith("| Model | x |")
    assert write_model_card(tmp_path, train, data, "| Model | x |\n").read_bytes() == (
        path.read_bytes()
    )
