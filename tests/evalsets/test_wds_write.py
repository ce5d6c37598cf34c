import collections
import hashlib
import io
import re
import tarfile

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from treeoflife.evalsets.wds import (
    iter_labelled_images,
    read_wds_evalset,
    wds_key,
    write_wds_evalset,
)

CLASSNAMES = [
    "Animalia Chordata Aves Passeriformes Corvidae Corvus corax",
    "Plantae Tracheophyta Magnoliopsida Rosales Rosaceae Rosa canina",
    "Fungi Basidiomycota Agaricomycetes Agaricales Amanitaceae Amanita muscaria",
]
TEMPLATES = ["a photo of {c}.", "a photo of the {c}."]


def _items(n: int) -> list[dict]:
    items = []
    for i in range(n):
        arr = np.full((24, 32, 3), i * 9 % 255, dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG")
        items.append({"key": f"rare_species/img.{i:03d}.jpg", "jpg": buf.getvalue(), "cls": i % 3})
    return items


def _read_like_clip_benchmark(root, split="test"):
    """What CLIP_benchmark's build_wds_dataset does for a local classification dataset."""
    nshards = int((root / split / "nshards.txt").read_text())
    pattern = str(root / split / f"{{0..{nshards - 1}}}.tar")
    dataset = (
        wds.WebDataset(pattern, nodesplitter=lambda src: src, shardshuffle=False)
        .decode(wds.autodecode.ImageHandler("pil", extensions=["webp", "png", "jpg", "jpeg"]))
        .to_tuple(["webp", "png", "jpg", "jpeg"], "cls")
    )
    classes = [line.strip() for line in (root / "classnames.txt").read_text().splitlines()]
    templates = (root / "zeroshot_classification_templates.txt").read_text().splitlines()
    return list(dataset), classes, templates


def test_layout_matches_clip_benchmark(tmp_path):
    root = tmp_path / "wds" / "rare_species"
    items = _items(25)
    info = write_wds_evalset(root, "rare", items, CLASSNAMES, TEMPLATES, samples_per_shard=10)
    assert info["nshards"] == 3 and info["samples"] == 25 and info["classes"] == 3
    assert sorted(p.name for p in (root / "test").iterdir()) == [
        "0.tar",
        "1.tar",
        "2.tar",
        "nshards.txt",
    ]
    assert (root / "dataset_type.txt").read_text().strip() == "classification"
    samples, classes, templates = _read_like_clip_benchmark(root)
    assert classes == CLASSNAMES and templates == TEMPLATES
    assert len(samples) == 25
    assert sorted(cls for _, cls in samples) == sorted(it["cls"] for it in items)
    assert all(isinstance(cls, int) and img.size == (32, 24) for img, cls in samples)


def test_sample_names_are_safe_and_json_keeps_the_key(tmp_path):
    root = tmp_path / "es"
    write_wds_evalset(root, "es", _items(3), CLASSNAMES, TEMPLATES)
    with tarfile.open(root / "test" / "0.tar") as tar:
        names = tar.getnames()
    assert names[:3] == [
        "rare_species_img_000_jpg.jpg",
        "rare_species_img_000_jpg.cls",
        "rare_species_img_000_jpg.json",
    ]
    sample = next(iter(wds.WebDataset(str(root / "test" / "0.tar"), shardshuffle=False).decode()))
    expected = {"key": "rare_species/img.000.jpg", "cls": 0, "classname": CLASSNAMES[0]}
    assert sample["json"] == expected


def test_reproducible_and_order_independent(tmp_path):
    items = _items(12)
    a = write_wds_evalset(tmp_path / "a", "x", items, CLASSNAMES, TEMPLATES, samples_per_shard=5)
    b = write_wds_evalset(
        tmp_path / "b", "x", list(reversed(items)), CLASSNAMES, TEMPLATES, samples_per_shard=5
    )
    assert a == b
    for rel in ("test/0.tar", "test/2.tar", "classnames.txt", "test/nshards.txt"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_rewrite_with_fewer_items_removes_stale_shards(tmp_path):
    write_wds_evalset(tmp_path, "x", _items(30), CLASSNAMES, TEMPLATES, samples_per_shard=10)
    write_wds_evalset(tmp_path, "x", _items(8), CLASSNAMES, TEMPLATES, samples_per_shard=10)
    assert sorted(p.name for p in (tmp_path / "test").glob("*.tar")) == ["0.tar"]
    samples, _, _ = _read_like_clip_benchmark(tmp_path)
    assert len(samples) == 8


@pytest.mark.parametrize(
    ("items", "classnames", "templates", "message"),
    [
        ([], CLASSNAMES, TEMPLATES, "no items"),
        ([{"key": "a", "jpg": b"x", "cls": 3}], CLASSNAMES, TEMPLATES, "cls"),
        ([{"key": "a", "jpg": b"x", "cls": 0}], CLASSNAMES, ["a photo of {}"], "placeholder"),
        ([{"key": "a", "jpg": b"x", "cls": 0}], ["a", "a"], TEMPLATES, "duplicate"),
        ([{"key": "a", "jpg": b"x", "cls": 0}], ["a\nb"], TEMPLATES, "single"),
        (
            [{"key": "a/b", "jpg": b"x", "cls": 0}, {"key": "a.b", "jpg": b"x", "cls": 0}],
            CLASSNAMES,
            TEMPLATES,
            "share",
        ),
    ],
)
def test_invalid_inputs_are_refused_before_writing(tmp_path, items, classnames, templates, message):
    with pytest.raises(ValueError, match=message):
        write_wds_evalset(tmp_path / "x", "x", items, classnames, templates)
    assert not (tmp_path / "x").exists()


def test_our_reader_reads_what_the_release_writes(tmp_path):
    root = tmp_path / "wds" / "rare_species"
    items = _items(7)
    write_wds_evalset(root, "rare", items, CLASSNAMES, TEMPLATES, samples_per_shard=3)
    evalset = read_wds_evalset(root)
    assert evalset.name == "rare_species" and len(evalset.shard_files) == 3
    assert evalset.classnames == tuple(CLASSNAMES) and evalset.templates == tuple(TEMPLATES)
    skipped: collections.Counter[str] = collections.Counter()
    got = list(iter_labelled_images(evalset, skipped))
    assert not skipped
    assert sorted(i.label for i in got) == sorted(it["cls"] for it in items)
    assert all(i.image.size == (32, 24) for i in got)


def test_wds_key_is_a_stable_digest_that_needs_no_escaping():
    """The packaged sets and their hashes.parquet are keyed by it: it must not drift."""
    key = wds_key("rare_species", "Ailurus_fulgens/0356.jpg")
    expected = hashlib.sha1(b"rare_species/Ailurus_fulgens/0356.jpg").hexdigest()[:20]
    assert key == expected and re.fullmatch(r"[0-9a-f]{20}", key)
    assert key != wds_key("seen_species", "Ailurus_fulgens/0356.jpg")
