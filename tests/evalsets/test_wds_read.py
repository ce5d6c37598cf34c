"""Reading CLIP_benchmark `wds/` evaluation sets and their templates."""

from __future__ import annotations

import collections
import io

import pytest
from PIL import Image

from tests.train.synthetic import CLASSNAMES, write_wds_evalset
from treeoflife.errors import InputError
from treeoflife.evalsets.wds import (
    TEMPLATES_FILE,
    iter_labelled_images,
    list_wds_evalsets,
    read_templates,
    read_wds_evalset,
)
from treeoflife.vocabulary import Reason


def _png(colour=(10, 200, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (12, 12), colour).save(out, format="PNG")
    return out.getvalue()


BAD_SAMPLES = {
    "x_no_image": {"cls": b"1"},
    "x_broken_jpg": {"jpg": b"\xff\xd8 not really a jpeg", "cls": b"1"},
    "x_no_label": {"jpg": _png()},  # bytes are PNG; the extension does not matter to PIL
    "x_bad_label": {"png": _png(), "cls": b"three"},
    "x_label_99": {"png": _png(), "cls": b"99"},
    "x_good_png": {"png": _png(), "cls": b" 4\n"},
}


def test_reads_the_layout_and_counts_every_unusable_sample(tmp_path):
    root = tmp_path / "wds" / "toy"
    n = write_wds_evalset(root, per_class=3, nshards=3, extra_samples=BAD_SAMPLES)
    evalset = read_wds_evalset(root)

    assert evalset.name == "toy" and evalset.split == "test"
    assert evalset.classnames == tuple(CLASSNAMES)
    assert evalset.templates == ("a photo of {c}.",)
    assert [p.name for p in evalset.shard_files] == ["0.tar", "1.tar", "2.tar"]

    skipped: collections.Counter[str] = collections.Counter()
    items = list(iter_labelled_images(evalset, skipped))
    assert len(items) == n + 1  # the regular images and the good PNG
    assert dict(skipped) == {
        Reason.IMAGE_MISSING: 1,
        Reason.IMAGE_UNDECODABLE: 1,
        Reason.LABEL_MISSING: 1,
        Reason.LABEL_UNREADABLE: 1,
        Reason.LABEL_OUT_OF_RANGE: 1,
    }
    assert len(items) + sum(skipped.values()) == n + len(BAD_SAMPLES)
    png = next(i for i in items if i.key == "x_good_png")
    assert png.label == 4 and png.image.mode == "RGB" and png.image.size == (12, 12)
    # labels follow the shards in order: class 0 first
    assert items[0].label == 0 and items[n - 1].label == len(CLASSNAMES) - 1


def test_missing_or_inconsistent_metadata_is_an_input_error(tmp_path):
    root = tmp_path / "set"
    write_wds_evalset(root, per_class=1, nshards=2)
    (root / "test" / "1.tar").unlink()
    with pytest.raises(InputError, match=r"missing \['1.tar'\]"):
        read_wds_evalset(root)
    (root / "test" / "nshards.txt").write_text("two\n")
    with pytest.raises(InputError, match="shard count"):
        read_wds_evalset(root)
    (root / "classnames.txt").write_text("a\n\nc\n")
    with pytest.raises(InputError, match="empty class name"):
        read_wds_evalset(root)
    (root / "classnames.txt").unlink()
    with pytest.raises(InputError, match="classnames.txt"):
        read_wds_evalset(root)


def test_a_shard_that_is_not_a_tar_is_an_input_error(tmp_path):
    root = tmp_path / "set"
    write_wds_evalset(root, per_class=1, nshards=2)
    good = (root / "test" / "1.tar").read_bytes()
    (root / "test" / "1.tar").write_bytes(good[:700])  # cut inside the first member
    evalset = read_wds_evalset(root)
    with pytest.raises(InputError, match="1.tar"):
        list(iter_labelled_images(evalset, collections.Counter()))


def test_list_wds_evalsets_finds_only_complete_sets(tmp_path):
    for name in ("b_set", "a_set"):
        write_wds_evalset(tmp_path / name, per_class=1, nshards=1)
    (tmp_path / "notes").mkdir()
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "classnames.txt").write_text("x\n")
    assert [p.name for p in list_wds_evalsets(tmp_path)] == ["a_set", "b_set"]
    with pytest.raises(InputError):
        list_wds_evalsets(tmp_path / "nowhere")


def test_templates_file_parsing(tmp_path):
    assert read_templates(tmp_path) is None
    (tmp_path / TEMPLATES_FILE).write_text("a photo of {c}.\n\n  a {c} in {the} wild  \n")
    assert read_templates(tmp_path) == ["a photo of {c}.", "a {c} in {the} wild"]
    (tmp_path / TEMPLATES_FILE).write_text("a photo of a {}.\n")
    with pytest.raises(InputError, match="placeholder"):
        read_templates(tmp_path)
    (tmp_path / TEMPLATES_FILE).write_text("\n \n")
    with pytest.raises(InputError, match="no templates"):
        read_templates(tmp_path)
