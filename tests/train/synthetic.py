"""A small learnable image-text data set, made by code: each class is a colour and a shape.

Training shards follow our release layout (`shard-%06d.tar` + `sizes.json`, samples with
`jpg` + `txt`); the evaluation set follows CLIP_benchmark's `wds/` layout.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from treeoflife.io import tar_member_info

# class name -> (RGB colour, shape)
CLASSES: dict[str, tuple[tuple[int, int, int], str]] = {
    "Quercus robur": ((220, 40, 40), "disc"),
    "Canis lupus": ((40, 200, 60), "square"),
    "Apis mellifera": ((50, 70, 230), "triangle"),
    "Amanita muscaria": ((235, 215, 40), "bar"),
    "Danaus plexippus": ((200, 60, 210), "cross"),
}
CLASSNAMES = list(CLASSES)
TEMPLATE = "a photo of {c}."


def caption(classname: str) -> str:
    return TEMPLATE.replace("{c}", classname)


def make_image(label: int, rng: np.random.Generator, size: int = 40) -> bytes:
    """A noisy grey background with the class's shape in the class's colour, as JPEG."""
    colour, shape = CLASSES[CLASSNAMES[label]]
    background = rng.normal(128, 30, size=(size, size, 3)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(background, "RGB")
    draw = ImageDraw.Draw(image)
    half = int(rng.integers(size // 4, size // 3 + 1))
    cx, cy = (int(v) for v in rng.integers(half, size - half, size=2))
    jitter = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in colour)
    box = (cx - half, cy - half, cx + half, cy + half)
    if shape == "disc":
        draw.ellipse(box, fill=jitter)
    elif shape == "square":
        draw.rectangle(box, fill=jitter)
    elif shape == "triangle":
        draw.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=jitter)
    elif shape == "bar":
        draw.rectangle((cx - half, cy - half // 3, cx + half, cy + half // 3), fill=jitter)
    else:  # cross
        t = max(2, half // 3)
        draw.rectangle((cx - half, cy - t, cx + half, cy + t), fill=jitter)
        draw.rectangle((cx - t, cy - half, cx + t, cy + half), fill=jitter)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(tar_member_info(name, len(data)), io.BytesIO(data))


def write_train_shards(
    shard_dir: Path, per_class: int = 40, samples_per_shard: int = 50, seed: int = 0
) -> int:
    """`shard-%06d.tar` + `sizes.json` in `shard_dir`; returns the number of samples."""
    rng = np.random.default_rng(seed)
    shard_dir.mkdir(parents=True, exist_ok=True)
    labels = [label for label in range(len(CLASSNAMES)) for _ in range(per_class)]
    rng.shuffle(labels)
    sizes: dict[str, int] = {}
    for start in range(0, len(labels), samples_per_shard):
        name = f"shard-{start // samples_per_shard:06d}.tar"
        chunk = labels[start : start + samples_per_shard]
        with tarfile.open(shard_dir / name, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i, label in enumerate(chunk):
                key = f"s{start + i:06d}"
                _add(tar, f"{key}.jpg", make_image(label, rng))
                _add(tar, f"{key}.txt", caption(CLASSNAMES[label]).encode())
                row = {"key": key, "label": CLASSNAMES[label]}
                _add(tar, f"{key}.json", json.dumps(row).encode())
        sizes[name] = len(chunk)
    (shard_dir / "sizes.json").write_text(json.dumps(sizes, sort_keys=True))
    return len(labels)


def write_wds_evalset(
    evalset_dir: Path,
    per_class: int = 10,
    seed: int = 1,
    nshards: int = 2,
    templates: tuple[str, ...] = (TEMPLATE,),
    extra_samples: dict[str, dict[str, bytes]] | None = None,
) -> int:
    """A CLIP_benchmark wds set of fresh images; `extra_samples` (key -> members) are appended
    to the last shard as they are. Returns the number of regular samples."""
    rng = np.random.default_rng(seed)
    split_dir = evalset_dir / "test"
    split_dir.mkdir(parents=True, exist_ok=True)
    (evalset_dir / "classnames.txt").write_text("\n".join(CLASSNAMES) + "\n")
    (evalset_dir / "zeroshot_classification_templates.txt").write_text("\n".join(templates) + "\n")
    labels = [label for label in range(len(CLASSNAMES)) for _ in range(per_class)]
    per_shard = -(-len(labels) // nshards)
    for shard in range(nshards):
        with tarfile.open(split_dir / f"{shard}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(shard * per_shard, min(len(labels), (shard + 1) * per_shard)):
                _add(tar, f"e{i:05d}.jpg", make_image(labels[i], rng))
                _add(tar, f"e{i:05d}.cls", str(labels[i]).encode())
            if shard == nshards - 1:
                for key, members in (extra_samples or {}).items():
                    for ext, data in members.items():
                        _add(tar, f"{key}.{ext}", data)
    (split_dir / "nshards.txt").write_text(f"{nshards}\n")
    return len(labels)
