"""Photo-like test images made by code: smooth colour waves, blurred shapes, sensor noise."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter


def photo(seed: int, size: tuple[int, int] = (480, 360)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    base = np.zeros((h, w, 3))
    for c in range(3):
        a, b, phase = rng.uniform(-3, 3, 3)
        base[..., c] = 128 + 90 * np.sin(6 * a * x + 6 * b * y + phase)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(8):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(15, 90))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=colour)
        else:
            draw.rectangle([x0 - r, y0 - r // 2, x0 + r, y0 + r // 2], fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(2))
    noisy = np.asarray(img, dtype=np.float64) + rng.normal(0, 8, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def encode(img: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        kwargs.setdefault("quality", 92)
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


@pytest.fixture
def make_photo():
    return photo


@pytest.fixture
def make_jpeg():
    def _make(seed: int, size: tuple[int, int] = (480, 360), quality: int = 92) -> bytes:
        return encode(photo(seed, size), "JPEG", quality=quality)

    return _make


@pytest.fixture
def encode_image():
    return encode
