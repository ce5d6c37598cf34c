from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from PIL import Image, ImageOps

from treeoflife.dedup import (
    PHASH_ALGO,
    decode_grey,
    hamming,
    phash64,
    phash_from_pixels,
    phash_many,
)
from treeoflife.dedup.phash import lanczos_matrix, phash_many_lenient


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
    assert PHASH_ALGO == "dct64-v2"


def reference_pipeline(img: Image.Image) -> int:
    """dct64-v2 written with Pillow: grey, box-reduce while sides stay >= 32, float LANCZOS
    to 32x32 ('F' mode: no 8-bit rounding), then the DCT-by-definition reference."""
    grey = img.convert("L")
    factor = 1
    while factor < 8 and min(grey.size) // (factor * 2) >= 32:
        factor *= 2
    if factor > 1:
        grey = grey.reduce(factor)
    small = Image.fromarray(np.asarray(grey, np.float32), "F").resize(
        (32, 32), Image.Resampling.LANCZOS
    )
    return reference_phash(np.asarray(small, np.float64))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_png_hash_equals_reference_pipeline(make_photo, encode_image, seed):
    img = make_photo(seed)
    assert phash64(encode_image(img, "PNG")) == reference_pipeline(img)


@pytest.mark.parametrize("n_in", [20, 32, 47, 63, 500])
def test_lanczos_weights_are_pillows(n_in):
    rng = np.random.default_rng(n_in)
    a = rng.uniform(0, 255, (n_in, n_in + 7))
    pil = np.asarray(
        Image.fromarray(a.astype(np.float32), "F").resize((32, 32), Image.Resampling.LANCZOS)
    )
    ours = lanczos_matrix(n_in) @ a @ lanczos_matrix(n_in + 7).T
    assert np.abs(pil - ours).max() < 1e-3


def test_jpeg_fast_decode_is_small_and_close_to_full_decode(make_photo, encode_image):
    """The scaled decode (1/8 of a 480 px photo) barely moves the hash versus every pixel."""
    for seed in range(6):
        img = make_photo(seed)
        data = encode_image(img, "JPEG", quality=95)
        grey = decode_grey(data)
        assert min(grey.shape) >= 32 and max(grey.shape) <= 64
        assert hamming(phash64(data), reference_pipeline(img)) <= 4


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


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_like_pillow(make_photo, encode_image, orientation):
    img = make_photo(3)
    upright = phash64(encode_image(img, "JPEG", quality=95))
    exif = Image.Exif()
    exif[0x0112] = orientation
    # Store the pixels so that exif_transpose brings back the upright photo.
    inverse = {2: 0, 3: 3, 4: 1, 5: 5, 6: 2, 7: 6, 8: 4}
    stored = img if orientation == 1 else img.transpose(Image.Transpose(inverse[orientation]))
    data = encode_image(stored, "JPEG", quality=95, exif=exif.tobytes())
    with Image.open(__import__("io").BytesIO(data)) as check:
        assert hamming(upright, phash64(_png(ImageOps.exif_transpose(check)))) <= 4
    assert hamming(upright, phash64(data)) <= 4
    if orientation in (5, 6, 7, 8):
        plain = encode_image(stored, "JPEG", quality=95)
        assert hamming(upright, phash64(plain)) > 8  # the tag is what made them match


def _png(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


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


def test_truncated_jpeg_fails_on_both_decoders_and_lenient_records_it(make_jpeg):
    data = make_jpeg(7)
    hashes, errors = phash_many_lenient([data, data[: len(data) // 2], b"not an image"])
    assert errors[0] is None and hashes[0] == phash64(data)
    assert errors[1] is not None and errors[2] is not None
    assert hashes[1] == 0 and hashes[2] == 0


def test_hamming_int_and_array():
    assert hamming(0b1011, 0b0001) == 2
    a = np.array([0, 2**64 - 1], dtype=np.uint64)
    assert hamming(a, np.zeros(2, np.uint64)).tolist() == [0, 64]
