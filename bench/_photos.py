"""Real photographs for the hash robustness study and the hashing benchmark.

scikit-image bundles a few real photos inside its wheel (no download needed); only those are
used. scikit-image is a study/benchmark dependency, imported lazily, never needed by a build.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Bundled in the scikit-image wheel (checked offline): real photographs, not drawings.
BUNDLED_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "camera",
    "moon",
    "coins",
    "grass",
    "gravel",
    "brick",
    "clock",
    "cell",
    "page",
)


def _as_rgb(array: np.ndarray) -> Image.Image:
    if array.ndim == 2:
        return Image.fromarray(array.astype(np.uint8), "L").convert("RGB")
    return Image.fromarray(array[..., :3].astype(np.uint8), "RGB")


def bundled_photos() -> dict[str, Image.Image]:
    """name -> RGB photo, plus the stereo pair's two views (same scene, different photo)."""
    from skimage import data

    out = {name: _as_rgb(getattr(data, name)()) for name in BUNDLED_PHOTOS}
    left, right, _ = data.stereo_motorcycle()
    out["motorcycle_left"] = _as_rgb(left)
    out["motorcycle_right"] = _as_rgb(right)
    return out


def photo_corpus(max_side: int = 500) -> dict[str, Image.Image]:
    """Distinct photos: each bundled photo, and of the big ones two disjoint half crops.

    Every image is scaled so its longer side is at most `max_side` (iNat21's size). The two
    halves of one photo are different pictures of one scene: the unrelated look-alikes.
    """
    out: dict[str, Image.Image] = {}
    for name, img in bundled_photos().items():
        out[name] = _fit(img, max_side)
        w, h = img.size
        if min(w, h) >= 400:
            out[f"{name}_left"] = _fit(img.crop((0, 0, w // 2, h)), max_side)
            out[f"{name}_right"] = _fit(img.crop((w - w // 2, 0, w, h)), max_side)
    return out


def _fit(img: Image.Image, max_side: int) -> Image.Image:
    scale = max_side / max(img.size)
    if scale >= 1:
        return img.copy()
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()
