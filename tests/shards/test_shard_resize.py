import io

import numpy as np
import pytest
from PIL import Image

from treeoflife.errors import ImageRejected
from treeoflife.shards.resize import resize_for_shard, target_size


def _image(width, height, mode="RGB", fmt="JPEG", **save):
    rng = np.random.default_rng(width * 1000 + height)
    if mode in ("RGB", "RGBA"):
        arr = rng.integers(0, 255, (height, width, len(mode)), dtype=np.uint8)
        # A smooth gradient on top of noise so downscaling has structure to keep.
        arr[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
        img = Image.fromarray(arr, mode)
    elif mode == "I;16":
        arr = np.tile(np.linspace(0, 65535, width, dtype=np.uint16), (height, 1))
        img = Image.fromarray(arr)
    else:
        img = Image.new(mode, (width, height))
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


def _open(data):
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.mark.parametrize(("w", "h"), [(1200, 800), (800, 1200), (640, 641), (3000, 500)])
def test_shorter_side_is_size_and_aspect_kept(w, h):
    out = _open(resize_for_shard(_image(w, h), 224, 90))
    assert out.format == "JPEG" and out.mode == "RGB"
    assert min(out.size) == 224
    assert abs(out.size[0] / out.size[1] - w / h) < 0.01


def test_output_is_deterministic():
    data = _image(1500, 1000)
    a = resize_for_shard(data, 128, 90)
    assert a == resize_for_shard(data, 128, 90)
    assert a != resize_for_shard(data, 128, 70)


def test_small_jpeg_kept_as_is_and_zero_keeps_everything():
    small = _image(100, 80)
    assert resize_for_shard(small, 224, 90) == small
    big = _image(1000, 900)
    assert resize_for_shard(big, 0, 90) == big


def test_draft_decoding_matches_full_decode_closely():
    data = _image(2400, 1600, quality=95)
    fast = np.asarray(_open(resize_for_shard(data, 150, 95)), dtype=np.int16)
    full = Image.open(io.BytesIO(data)).convert("RGB")
    full = full.resize(target_size(2400, 1600, 150), Image.Resampling.BICUBIC)
    assert fast.shape == np.asarray(full).shape
    # The red channel is a gradient: both paths must agree on it to a few grey levels.
    assert np.abs(fast[..., 0] - np.asarray(full, dtype=np.int16)[..., 0]).mean() < 6


def test_png_with_alpha_and_16_bit_become_rgb_jpeg():
    for data in (_image(300, 200, "RGBA", "PNG"), _image(300, 200, "I;16", "PNG")):
        out = _open(resize_for_shard(data, 100, 90))
        assert out.format == "JPEG" and out.mode == "RGB" and out.size == (150, 100)
    grad = np.asarray(_open(resize_for_shard(_image(300, 200, "I;16", "PNG"), 100, 90)))
    assert grad[:, -5:].mean() > 200 and grad[:, :5].mean() < 50  # scaled, not clipped


def test_exif_rotation_is_applied():
    img = Image.fromarray(np.zeros((100, 400, 3), dtype=np.uint8))  # 400 wide, 100 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: displayed 100 wide, 400 high
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    out = _open(resize_for_shard(buf.getvalue(), 50, 90))
    assert out.size == (50, 200)


def test_undecodable_bytes_are_rejected_with_a_reason():
    with pytest.raises(ImageRejected) as err:
        resize_for_shard(b"<html>not an image</html>", 224, 90)
    assert err.value.reason == "undecodable_image"


def test_square_mode_is_bioclip_size_and_never_keeps_a_non_square_original():
    data = _image(640, 480)
    out = _open(resize_for_shard(data, 224, 90, "square"))
    assert out.size == (224, 224) and out.format == "JPEG"
    small = _image(100, 80)  # smaller than the target: enlarged to the square like BioCLIP
    assert _open(resize_for_shard(small, 224, 90, "square")).size == (224, 224)
    exact = _image(224, 224)
    assert resize_for_shard(exact, 224, 90, "square") == exact
    with pytest.raises(ValueError, match="resize mode"):
        resize_for_shard(data, 224, 90, "crop")
