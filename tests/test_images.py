"""normalize_image: every stored image is a complete upright RGB JPEG, or a recorded reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from treeoflife.errors import ImageRejected
from treeoflife.images import ResizePolicy, decode_outcome, normalize_image
from treeoflife.io import md5_hex


def noise_rgb(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def rejected_reason(data: bytes, **kwargs) -> str:
    with pytest.raises(ImageRejected) as info:
        normalize_image(data, **kwargs)
    return info.value.reason


def test_baseline_rgb_jpeg_keeps_source_bytes():
    data = encode(noise_rgb(64, 48), "JPEG", quality=90)
    out = normalize_image(data)
    assert out.converted is False
    assert out.data == data
    assert md5_hex(out.data) == md5_hex(data)
    assert (out.width, out.height) == (64, 48)


def test_progressive_jpeg_is_reencoded_as_baseline():
    data = encode(noise_rgb(40, 30), "JPEG", progressive=True)
    out = normalize_image(data)
    assert out.converted is True
    img = decode(out.data)
    assert img.format == "JPEG" and img.mode == "RGB"
    assert not img.info.get("progressive") and not img.info.get("progression")


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (32, 16), (0, 255, 255, 0))  # pure red in CMYK
    out = normalize_image(encode(cmyk, "JPEG"))
    img = decode(out.data)
    assert out.converted and img.mode == "RGB" and img.size == (32, 16)
    r, g, b = img.getpixel((16, 8))
    assert r > 200 and g < 60 and b < 60


def test_rgba_png_is_composited_on_white():
    img = Image.new("RGBA", (20, 10), (0, 0, 255, 255))
    for x in range(10):
        for y in range(10):
            img.putpixel((x, y), (0, 0, 0, 0))  # left half fully transparent
    out = normalize_image(encode(img, "PNG"))
    rgb = decode(out.data)
    assert rgb.mode == "RGB"
    assert all(c > 240 for c in rgb.getpixel((2, 5)))  # transparent -> white, not black
    r, g, b = rgb.getpixel((17, 5))
    assert b > 200 and r < 60


def test_la_and_grey_become_rgb():
    la = Image.new("LA", (8, 8), (0, 0))  # black, fully transparent -> white
    grey = Image.new("L", (8, 8), 100)
    out_la = decode(normalize_image(encode(la, "PNG")).data)
    out_grey = normalize_image(encode(grey, "JPEG"))
    assert out_la.mode == "RGB" and min(out_la.getpixel((4, 4))) > 240
    assert out_grey.converted and decode(out_grey.data).mode == "RGB"


def test_animated_gif_keeps_first_frame():
    red = Image.new("P", (16, 16))
    red.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    blue = red.copy()
    blue.paste(1, (0, 0, 16, 16))
    data = encode(red, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    out = normalize_image(data)
    r, g, b = decode(out.data).getpixel((8, 8))
    assert r > 200 and b < 60


def test_16bit_png_is_scaled_to_8bit():
    arr = np.full((10, 12), 0x8000, dtype=np.uint16)
    arr[:, 6:] = 0xFFFF
    img = Image.fromarray(arr)
    data = encode(img, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = normalize_image(data)
    rgb = decode(out.data)
    assert (out.width, out.height) == (12, 10)
    assert abs(rgb.getpixel((2, 5))[0] - 128) <= 3
    assert rgb.getpixel((10, 5))[0] >= 250


def test_exif_orientation_6_swaps_width_and_height():
    img = noise_rgb(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(img, "JPEG", exif=exif.tobytes())
    out = normalize_image(data)
    assert out.converted is True
    assert (out.width, out.height) == (20, 40)
    assert decode(out.data).size == (20, 40)
    assert decode(out.data).getexif().get(0x0112) in (None, 1)


def test_exif_orientation_1_keeps_bytes():
    exif = Image.Exif()
    exif[0x0112] = 1
    data = encode(noise_rgb(30, 20), "JPEG", exif=exif.tobytes())
    out = normalize_image(data)
    assert out.converted is False and out.data == data


def test_truncated_jpeg():
    data = encode(noise_rgb(128, 128), "JPEG", quality=95)
    assert rejected_reason(data[: len(data) // 2]) == "truncated_image"


def test_truncated_png():
    data = encode(noise_rgb(64, 64), "PNG")
    assert rejected_reason(data[: len(data) // 2]) == "truncated_image"


def test_html_and_text_are_not_images():
    html = b"<!DOCTYPE html><html><body>404 Not Found</body></html>"
    assert rejected_reason(html) == "not_an_image"
    assert rejected_reason(b"  \n<html>rate limited</html>") == "not_an_image"
    assert rejected_reason(b'{"error": "forbidden"}') == "not_an_image"
    assert rejected_reason(bytes(range(7, 200))) == "not_an_image"


def test_empty_file():
    assert rejected_reason(b"") == "empty_file"


def test_decompression_bomb_guard():
    data = encode(noise_rgb(30, 30), "PNG")
    assert rejected_reason(data, max_pixels=899) == "image_too_large"
    assert normalize_image(data, max_pixels=900).width == 30


def test_garbage_after_jpeg_header_is_a_decode_error():
    data = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF\x00" + bytes(range(256)) * 4
    assert rejected_reason(data) == "decode_error"
    assert decode_outcome(data) == "decode_error"


def test_reencoding_is_deterministic():
    data = encode(Image.new("RGBA", (50, 30), (10, 200, 30, 128)), "PNG")
    a, b = normalize_image(data), normalize_image(data)
    assert a.converted and a.data == b.data


def test_decode_outcome_returns_reason_instead_of_raising():
    assert decode_outcome(b"") == "empty_file"
    ok = decode_outcome(encode(noise_rgb(8, 8), "JPEG"))
    assert not isinstance(ok, str) and ok.width == 8


def smooth_rgb(width: int, height: int) -> Image.Image:
    """A gradient photo stand-in (noise would make resampling comparisons meaningless)."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    arr = np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def test_resize_shorter_and_max_side_keep_aspect_and_never_enlarge():
    data = encode(smooth_rgb(1600, 1000), "JPEG", quality=90)
    shorter = normalize_image(data, resize=ResizePolicy("shorter_side", 256))
    assert (shorter.width, shorter.height) == (410, 256) and shorter.converted
    assert decode(shorter.data).size == (410, 256)
    longest = normalize_image(data, resize=ResizePolicy("max_side", 500))
    assert (longest.width, longest.height) == (500, 312)
    small = encode(smooth_rgb(300, 200), "JPEG", quality=90)
    kept = normalize_image(small, resize=ResizePolicy("shorter_side", 256))
    assert kept.converted is False and kept.data == small  # already small enough: source bytes


def test_resize_through_draft_matches_a_full_decode():
    img = smooth_rgb(1600, 1200)
    data = encode(img, "JPEG", quality=95)
    out = decode(normalize_image(data, resize=ResizePolicy("shorter_side", 200)).data)
    reference = img.resize(out.size, Image.Resampling.LANCZOS)
    diff = np.abs(np.asarray(out, dtype=np.int16) - np.asarray(reference, dtype=np.int16))
    assert out.size == (267, 200) and diff.mean() < 3


def test_resize_applies_exif_rotation_and_converts_modes():
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(smooth_rgb(800, 400), "JPEG", exif=exif.tobytes())
    out = normalize_image(data, resize=ResizePolicy("max_side", 200))
    assert (out.width, out.height) == (100, 200)
    rgba = Image.new("RGBA", (600, 300), (0, 0, 255, 0))
    png = normalize_image(encode(rgba, "PNG"), resize=ResizePolicy("shorter_side", 100))
    assert (png.width, png.height) == (200, 100)
    assert decode(png.data).getpixel((50, 50))[0] > 240  # transparent -> white


def test_resize_still_rejects_truncated_and_html():
    data = encode(noise_rgb(800, 600), "JPEG", quality=95)
    policy = ResizePolicy("shorter_side", 100)
    assert rejected_reason(data[: len(data) // 2], resize=policy) == "truncated_image"
    assert rejected_reason(b"<html><body>404</body></html>", resize=policy) == "not_an_image"
    assert decode_outcome(data[:2000], resize=policy) == "truncated_image"


def test_resize_policy_rejects_bad_settings():
    with pytest.raises(ValueError, match="not one of"):
        ResizePolicy("crop", 10)
    with pytest.raises(ValueError, match="positive size"):
        ResizePolicy("max_side", 0)


def test_resize_of_grey_and_cmyk_jpegs_gives_rgb():
    grey = smooth_rgb(800, 600).convert("L")
    out = normalize_image(encode(grey, "JPEG"), resize=ResizePolicy("shorter_side", 150))
    assert (out.width, out.height) == (200, 150) and decode(out.data).mode == "RGB"
    cmyk = Image.new("CMYK", (800, 400), (0, 255, 255, 0))  # red
    out = normalize_image(encode(cmyk, "JPEG"), resize=ResizePolicy("max_side", 100))
    img = decode(out.data)
    assert img.size == (100, 50) and img.mode == "RGB"
    r, g, b = img.getpixel((50, 25))
    assert r > 200 and g < 60 and b < 60
