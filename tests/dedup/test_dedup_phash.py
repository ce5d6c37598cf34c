from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from PIL import Image

from treeoflife.dedup import (
    PHASH_ALGO,
    hamming,
    phash64,
    phash_from_pixels,
    phash_many,
    phash_pixels,
)


def reference_phash(pixels: np.ndarray) -> int:
    """imagehash.phash written out: 2-D DCT-II by the definition, 8x8 low block, > median."""
    n = len(pixels)
    px = pixels.tolist()
    coeffs = []
    for u in range(8):
        for v in range(8):
            total = 0.0
            for x in range(n):
                cu = 2 * math.cos(math.pi * u * (2 * x + 1) / (2 * n))
                row = px[x]
                for y in range(n):
                    total += cu * 2 * math.cos(math.pi * v * (2 * y + 1) / (2 * n)) * row[y]
            coeffs.append(total)
    median = statistics.median(coeffs)
    return int("".join("1" if c > median else "0" for c in coeffs), 2)


def test_algo_name_is_versioned():
    assert PHASH_ALGO == "dct64-v1"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_phash_matches_reference_on_same_pixels(make_jpeg, seed):
    data = make_jpeg(seed)
    pixels = phash_pixels(data)
    assert pixels.shape == (32, 32)
    assert phash64(data) == reference_phash(pixels)


def test_png_decode_matches_plain_pillow_path(make_photo, encode_image):
    """For a non-JPEG, the decode is exactly imagehash's: convert('L'), LANCZOS to 32x32."""
    img = make_photo(5)
    data = encode_image(img, "PNG")
    plain = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), np.float64)
    assert np.array_equal(phash_pixels(data), plain)
    assert phash64(data) == reference_phash(plain)


def test_jpeg_draft_close_to_full_decode(make_photo, encode_image):
    """Draft mode (DCT-domain downscale) barely moves the hash versus decoding every pixel."""
    for seed in range(6):
        img = make_photo(seed)
        full = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), np.float64)
        data = encode_image(img, "JPEG", quality=95)
        assert hamming(phash64(data), int(phash_from_pixels(full))) <= 4


def test_robust_to_reencode_and_resize(make_photo, encode_image):
    worst = 0
    for seed in range(12):
        img = make_photo(seed)
        original = phash64(encode_image(img, "JPEG", quality=92))
        small = img.resize((int(img.width * 0.6), int(img.height * 0.6)), Image.Resampling.BICUBIC)
        worst = max(worst, hamming(original, phash64(encode_image(small, "JPEG", quality=70))))
    assert worst <= 8


def test_unrelated_images_are_far(make_jpeg):
    hashes = [phash64(make_jpeg(seed)) for seed in range(100, 116)]
    dists = [hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]]
    assert np.mean(np.array(dists) > 16) >= 0.9
    assert min(dists) > 8  # none would be taken for a near duplicate


def test_phash_many_equals_phash64(make_jpeg, make_photo, encode_image):
    datas = [make_jpeg(s) for s in range(5)] + [encode_image(make_photo(9), "PNG")]
    many = phash_many(datas)
    assert many.dtype == np.uint64
    assert [int(h) for h in many] == [phash64(d) for d in datas]
    assert phash_many([]).shape == (0,)


def test_bit_order_msb_is_dc_coefficient():
    """Row-major 8x8, first coefficient (DC) is bit 63: a pixel stack crafted to test it."""
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (32, 32))
    h = int(phash_from_pixels(pixels))
    assert h == reference_phash(pixels)
    # DC of a positive image is the largest coefficient, so always above the median.
    assert h >> 63 == 1


def test_exif_rotation_is_applied(make_photo, encode_image):
    img = make_photo(3)
    upright = phash64(encode_image(img, "JPEG", quality=95))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated; viewers rotate 90 degrees clockwise to display
    stored = img.transpose(Image.Transpose.ROTATE_90)
    rotated = encode_image(stored, "JPEG", quality=95, exif=exif.tobytes())
    assert hamming(upright, phash64(rotated)) <= 4
    plain = encode_image(stored, "JPEG", quality=95)
    assert hamming(upright, phash64(plain)) > 8  # the tag is what made them match


def test_sixteen_bit_grey_scaled_not_clipped(make_photo, encode_image):
    grey = np.asarray(make_photo(4).convert("L"), dtype=np.uint16)
    wide = Image.fromarray(grey * 257)
    assert wide.mode.startswith("I")
    narrow = Image.fromarray(grey.astype(np.uint8))
    assert hamming(phash64(encode_image(wide, "PNG")), phash64(encode_image(narrow, "PNG"))) <= 2


def test_cmyk_and_palette_images_hash(make_photo, encode_image):
    img = make_photo(6)
    base = phash64(encode_image(img, "PNG"))
    assert hamming(base, phash64(encode_image(img.convert("CMYK"), "JPEG", quality=95))) <= 8
    assert hamming(base, phash64(encode_image(img.convert("P"), "PNG"))) <= 8


def test_not_an_image_raises():
    with pytest.raises(Exception):  # noqa: B017 - PIL raises UnidentifiedImageError
        phash64(b"<html><body>404</body></html>")
    with pytest.raises(Exception):  # noqa: B017
        phash_many([b"\xff\xd8\xff"])


def test_hamming_int_and_array():
    assert hamming(0b1011, 0b0001) == 2
    a = np.array([0, 2**64 - 1], dtype=np.uint64)
    assert hamming(a, np.zeros(2, np.uint64)).tolist() == [0, 64]
