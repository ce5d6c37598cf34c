"""Shrink stored images for the shards: shorter side to the configured size, JPEG out.

Large JPEGs are decoded through PIL's draft mode, which lets libjpeg scale by 1/2, 1/4 or 1/8 in
the DCT domain (several times faster than a full decode followed by a resize). Encoding uses fixed
settings and no metadata, so the same input bytes always give the same output bytes.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from treeoflife.errors import ImageRejected
from treeoflife.vocabulary import Reason

Image.MAX_IMAGE_PIXELS = 30_000**2  # BioCLIP's limit; larger files are decompression bombs

SHORTER_SIDE = "shorter_side"  # shorter side to image_size, aspect kept (never upscaled)
SQUARE = "square"  # exactly image_size x image_size, aspect not kept (BioCLIP's make_wds.py)
RESIZE_MODES = (SHORTER_SIDE, SQUARE)


def target_size(width: int, height: int, image_size: int) -> tuple[int, int]:
    """(width, height) with the shorter side = image_size and the aspect ratio kept."""
    if min(width, height) <= image_size:
        return width, height
    if width <= height:
        return image_size, max(1, round(height * image_size / width))
    return max(1, round(width * image_size / height)), image_size


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB pixels: alpha flattened onto white, 16-bit and float images scaled to 8 bits."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr * (255.0 / top), 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def resize_for_shard(data: bytes, image_size: int, quality: int, mode: str = SHORTER_SIDE) -> bytes:
    """JPEG bytes resized per `mode` (see RESIZE_MODES); image_size 0 keeps `data` as is.

    An RGB/greyscale JPEG that is already the right size and needs no rotation is returned
    unchanged (no second lossy pass). Raises ImageRejected when the bytes do not decode.
    """
    if image_size == 0:
        return data
    if image_size < 0:
        raise ValueError(f"image_size must be >= 0, got {image_size}")
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; expected one of {RESIZE_MODES}")
    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
        orientation = img.getexif().get(0x0112, 1) if img.format == "JPEG" else 1
        if mode == SQUARE:
            small = (width, height) == (image_size, image_size)
        else:
            small = min(width, height) <= image_size
        if small and img.format == "JPEG" and img.mode in ("RGB", "L") and orientation == 1:
            return data
        if img.format == "JPEG" and not small:
            # Ask libjpeg for the smallest DCT scale that keeps both sides >= image_size.
            img.draft("RGB", (image_size, image_size))
        img.load()
        img = ImageOps.exif_transpose(img)
        img = _to_rgb(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(Reason.UNDECODABLE_IMAGE, str(exc)) from exc
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    if mode == SQUARE:
        size = (image_size, image_size)
    else:
        size = target_size(width, height, image_size)
    if img.size != size:
        img = img.resize(size, Image.Resampling.BICUBIC, reducing_gap=None)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality, optimize=False, progressive=False)
    return out.getvalue()
