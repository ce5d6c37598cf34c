"""open_clip_train arguments, torchrun command lines, checkpoint scanning, the tiny model config.

Arguments are checked by parsing them with open_clip_train's own argument parser.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import open_clip
import pytest
import torch
import webdataset as wds
from open_clip_train.params import parse_args

from tests.train.synthetic import write_train_shards
from treeoflife.config import TrainConfig
from treeoflife.errors import InputError
from treeoflife.train import (
    build_train_argv,
    checkpoint_epochs,
    export_model,
    model_configs_dir,
    torchrun_command,
)
from treeoflife.train.run import launch_command, read_shard_set, shard_pattern


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    shard_dir = tmp_path_factory.mktemp("shards") / "train"
    write_train_shards(shard_dir, per_class=6, samples_per_shard=7)  # 30 samples, 5 shards
    return shard_dir


def _config(**overrides) -> TrainConfig:
    values = dict(model="treeoflife-tiny", batch_size=16, epochs=3, lr=2e-3, warmup=7, wd=0.05)
    values.update(overrides)
    return TrainConfig(**values)


def test_argv_parses_with_open_clip_and_carries_the_config(shards, tmp_path):
    cfg = _config(precision="fp32", workers=2, seed=11)
    argv = build_train_argv(cfg, shards, tmp_path / "logs", "run-a")
    args = parse_args(argv)

    assert args.train_data == f"{shards.resolve()}/shard-{{000000..000004}}.tar"
    assert sorted(wds.shardlists.expand_urls(args.train_data)) == sorted(
        str(p) for p in shards.resolve().glob("shard-*.tar")
    )
    sizes = json.loads((shards / "sizes.json").read_text())
    assert args.train_num_samples == sum(sizes.values()) == 30
    assert args.dataset_type == "webdataset"
    assert (args.model, args.batch_size, args.epochs) == ("treeoflife-tiny", 16, 3)
    assert (args.lr, args.warmup, args.wd, args.seed) == (2e-3, 7, 0.05, 11)
    assert (args.precision, args.workers, args.device) == ("fp32", 2, "cpu")
    assert args.logs == str((tmp_path / "logs").resolve())
    assert args.name == "run-a"
    assert args.save_frequency == 1
    assert args.resume == "latest"
    assert "wandb" not in args.report_to and "tensorboard" not in args.report_to
    assert args.pretrained == ""  # nothing to download
    assert args.val_data is None


def test_argv_locking_accumulation_logging_options(shards, tmp_path):
    default = parse_args(build_train_argv(_config(), shards, tmp_path, "r"))
    assert not default.lock_image and not default.lock_text and not default.grad_checkpointing
    assert default.accum_freq == 1 and default.log_every_n_steps == 100
    cfg = _config(
        lock_image=True,
        lock_image_unlocked_groups=2,
        lock_text=True,
        lock_text_unlocked_layers=1,
        grad_checkpointing=True,
        accum_freq=4,
        report_to="tensorboard",
        log_every_n_steps=7,
    )
    args = parse_args(build_train_argv(cfg, shards, tmp_path, "r"))
    assert args.lock_image and args.lock_image_unlocked_groups == 2
    assert args.lock_text and args.lock_text_unlocked_layers == 1
    assert args.grad_checkpointing and args.accum_freq == 4
    assert args.report_to == "tensorboard" and args.log_every_n_steps == 7


def test_argv_caps_workers_at_shards_and_avoids_cuda_precision_on_cpu(shards, tmp_path):
    args = parse_args(build_train_argv(_config(workers=8, precision="amp"), shards, tmp_path, "r"))
    assert args.workers == 5  # open_clip asserts shards >= workers
    assert args.precision == "fp32"
    gpu = parse_args(
        build_train_argv(_config(precision="amp"), shards, tmp_path, "r", device="cuda")
    )
    assert (gpu.precision, gpu.device) == ("amp", "cuda")


def test_argv_pretrained_and_validation(shards, tmp_path):
    val_dir = tmp_path / "val"
    write_train_shards(val_dir, per_class=2, samples_per_shard=4, seed=3)
    cfg = _config(pretrained=str(tmp_path / "weights.pt"))
    args = parse_args(build_train_argv(cfg, shards, tmp_path, "r", val_shards=val_dir))
    assert args.pretrained == str(tmp_path / "weights.pt")
    assert args.val_num_samples == 10
    assert len(wds.shardlists.expand_urls(args.val_data)) == 3


def test_sizes_json_must_match_the_shards(shards, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    (broken / "shard-000009.tar").write_bytes((broken / "shard-000000.tar").read_bytes())
    with pytest.raises(InputError, match="shard-000009.tar"):
        build_train_argv(_config(), broken, tmp_path, "r")
    (broken / "shard-000009.tar").unlink()
    (broken / "sizes.json").unlink()
    with pytest.raises(InputError, match="sizes.json"):
        build_train_argv(_config(), broken, tmp_path, "r")
    with pytest.raises(InputError, match="does not exist"):
        build_train_argv(_config(), tmp_path / "nowhere", tmp_path, "r")


def test_non_contiguous_shards_are_listed(tmp_path):
    files = [tmp_path / "shard-000000.tar", tmp_path / "shard-000002.tar"]
    pattern = shard_pattern(files)
    assert "{" not in pattern
    assert wds.shardlists.expand_urls(pattern) == [str(p) for p in files]
    assert shard_pattern(files[:1]) == str(files[0])


def test_hidden_temporaries_are_not_shards(shards, tmp_path):
    folder = tmp_path / "with-tmp"
    shutil.copytree(shards, folder)
    (folder / ".shard-000005.tar").write_bytes(b"partial")
    assert len(read_shard_set(folder).files) == 5


def test_torchrun_command(shards, tmp_path):
    cfg = _config(workers=8, precision="amp")
    command = torchrun_command(cfg, shards, tmp_path, "big", nproc_per_node=2)
    assert command[:5] == [
        "torchrun",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "treeoflife.train.launch",
    ]
    args = parse_args(command[5:])
    assert args.local_loss and args.gather_with_grad
    assert (args.device, args.precision) == ("cuda", "amp")
    assert args.workers == 2  # 5 shards over 2 processes
    single = parse_args(torchrun_command(cfg, shards, tmp_path, "big", nproc_per_node=1)[5:])
    assert not single.local_loss and not single.gather_with_grad
    with pytest.raises(InputError, match="5 shards cannot feed 8"):
        torchrun_command(cfg, shards, tmp_path, "big", nproc_per_node=8)


def test_launch_command_uses_torchrun_for_several_processes(shards, tmp_path):
    single = launch_command(_config(), shards, tmp_path, "r", device="cpu")
    assert single[:3] == [sys.executable, "-m", "treeoflife.train.launch"]
    assert not parse_args(single[3:]).local_loss
    multi = launch_command(_config(nproc_per_node=2), shards, tmp_path, "r", device="cuda")
    assert multi[:6] == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
    ]
    assert multi[6] == "treeoflife.train.launch"
    args = parse_args(multi[7:])
    assert args.local_loss and args.gather_with_grad and args.device == "cuda"


def test_checkpoint_epochs_moves_incomplete_saves_aside(tmp_path):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    for epoch in (1, 2, 10):
        torch.save(
            {"epoch": epoch, "state_dict": {"w": torch.ones(64)}}, ckpt / f"epoch_{epoch}.pt"
        )
    data = (ckpt / "epoch_10.pt").read_bytes()
    (ckpt / "epoch_11.pt").write_bytes(data[: len(data) // 2])  # a save cut short
    (ckpt / "notes.txt").write_text("not a checkpoint")

    found = checkpoint_epochs(ckpt)

    assert list(found) == [1, 2, 10]
    assert not (ckpt / "epoch_11.pt").exists()
    assert (ckpt / "epoch_11.pt.incomplete").exists()
    assert torch.load(found[10], weights_only=True)["epoch"] == 10
    assert checkpoint_epochs(tmp_path / "missing") == {}


def test_tiny_model_config_builds_with_open_clip():
    config = json.loads((model_configs_dir() / "treeoflife-tiny.json").read_text())
    assert config["embed_dim"] == 32
    assert config["vision_cfg"]["image_size"] == 32 and config["vision_cfg"]["patch_size"] == 8
    assert config["text_cfg"]["context_length"] == 77

    open_clip.add_model_config(model_configs_dir())
    model = open_clip.create_model("treeoflife-tiny", pretrained=None)
    tokenizer = open_clip.get_tokenizer("treeoflife-tiny")
    with torch.no_grad():
        image = model.encode_image(torch.zeros(2, 3, 32, 32))
        text = model.encode_text(tokenizer(["a photo of Canis lupus."]))
    assert image.shape == (2, 32) and text.shape == (1, 32)
    assert model.visual.transformer.resblocks[0].attn.num_heads == 2
    assert len(model.visual.transformer.resblocks) == 2
    assert sum(p.numel() for p in model.parameters()) < 5_000_000


def test_export_model_folder_loads_with_open_clip_local_dir(tmp_path):
    open_clip.add_model_config(model_configs_dir())
    torch.manual_seed(3)
    model = open_clip.create_model("treeoflife-tiny", pretrained=None)
    model.eval()
    # an open_clip_train checkpoint as DDP writes it: epoch, optimizer, "module." prefixes
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    checkpoint = tmp_path / "epoch_3.pt"
    torch.save({"epoch": 3, "name": "x", "state_dict": state, "optimizer": {}}, checkpoint)

    out = export_model(checkpoint, "treeoflife-tiny", tmp_path / "exported")
    first_bytes = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert sorted(first_bytes) == ["open_clip_config.json", "open_clip_model.safetensors"]

    loaded, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
    loaded.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{out}")
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(images), model.encode_image(images))
        text = tokenizer(["a photo of Canis lupus."])
        assert torch.equal(loaded.encode_text(text), model.encode_text(text))
    assert preprocess.transforms[0].size in (32, [32], (32, 32), [32, 32])

    export_model(checkpoint, "treeoflife-tiny", out)  # same checkpoint -> same bytes
    assert {p.name: p.read_bytes() for p in sorted(out.iterdir())} == first_bytes
