"""A 64-bit DCT perceptual hash (imagehash.phash's algorithm), computed with numpy.

Algorithm `dct64-v1`, fixed so hashes from different runs and machines compare:

1. Decode. JPEGs go through PIL's draft mode ('L', (64, 64)): the decoder downscales in the DCT
   domain by 1/2, 1/4 or 1/8 and returns luminance only, so a 500 px photo never gets fully
   decoded. EXIF orientation is applied (an EXIF-rotated copy looks like the original). Other
   formats are decoded normally (first frame of animations); 16-bit grey is scaled to 8 bits.
2. Grey ('L'), resized to 32x32 with LANCZOS (imagehash: hash_size 8 x highfreq_factor 4).
3. Unnormalised DCT-II over rows and columns (scipy.fftpack.dct's default:
   y[k] = 2 * sum_n x[n] cos(pi k (2n + 1) / 2N)), of which only the top-left 8x8 block
   (lowest frequencies, DC included) is kept.
4. bit = coefficient > median of those 64 coefficients.
5. Bit order: the 8x8 block in row-major order (row = vertical frequency), first bit as the most
   significant bit of the uint64. This is imagehash's `str(hash)` read as a hex integer.

A change to any of these steps must change PHASH_ALGO: stored hashes carry the name.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps

PHASH_ALGO = "dct64-v1"

HASH_SIZE = 8
IMAGE_SIZE = 32  # HASH_SIZE * highfreq_factor 4
DRAFT_SIZE = (64, 64)


def _dct_matrix(n: int, rows: int) -> np.ndarray:
    """Rows of the unnormalised DCT-II matrix: C[k, i] = 2 cos(pi k (2i + 1) / 2n)."""
    k = np.arange(rows, dtype=np.float64)[:, None]
    i = np.arange(n, dtype=np.float64)[None, :]
    return 2.0 * np.cos(np.pi * k * (2.0 * i + 1.0) / (2.0 * n))


_DCT_LOW = _dct_matrix(IMAGE_SIZE, HASH_SIZE)  # (8, 32)
_DCT_LOW_T = np.ascontiguousarray(_DCT_LOW.T)  # (32, 8)


def phash_pixels(data: bytes) -> np.ndarray:
    """Decode image bytes to the 32x32 grey float64 pixels the hash is computed from.

    Raises PIL.UnidentifiedImageError / OSError / ValueError for bytes that are not an image.
    """
    with Image.open(io.BytesIO(data)) as img:
        img.draft("L", DRAFT_SIZE)  # JPEG only; a no-op for other formats
        img = ImageOps.exif_transpose(img)
        if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            wide = np.asarray(img, dtype=np.float64)
            scale = 255.0 / 65535.0 if img.mode != "F" and wide.max(initial=0) > 255 else 1.0
            img = Image.fromarray(np.clip(np.rint(wide * scale), 0, 255).astype(np.uint8), "L")
        elif img.mode != "L":
            img = img.convert("L")
        small = img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
        return np.asarray(small, dtype=np.float64)


def phash_from_pixels(pixels: np.ndarray) -> np.ndarray:
    """Hashes of a stack of 32x32 grey images, shape (..., 32, 32) -> uint64 array (...)."""
    pixels = np.asarray(pixels, dtype=np.float64)
    lead = pixels.shape[:-2]
    stack = pixels.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    coeffs = (_DCT_LOW @ stack @ _DCT_LOW_T).reshape(len(stack), HASH_SIZE * HASH_SIZE)
    medians = np.median(coeffs, axis=1, keepdims=True)
    bits = coeffs > medians
    packed = np.packbits(bits, axis=1, bitorder="big")  # (B, 8) bytes, first bit = MSB
    hashes = packed.view(">u8").reshape(-1).astype(np.uint64)
    return hashes.reshape(lead)


def phash64(data: bytes) -> int:
    """The 64-bit perceptual hash of one image's bytes."""
    return int(phash_from_pixels(phash_pixels(data)))


def phash_many(datas: Sequence[bytes]) -> np.ndarray:
    """Hashes of many images (uint64 array); the DCT runs as one batched matrix product.

    Raises on the first item that is not an image; `phash_many_lenient` records failures instead.
    """
    if len(datas) == 0:
        return np.zeros(0, dtype=np.uint64)
    stack = np.stack([phash_pixels(d) for d in datas])
    return phash_from_pixels(stack)


def phash_many_lenient(datas: Sequence[bytes]) -> tuple[np.ndarray, list[str | None]]:
    """Like phash_many, but an undecodable item gets hash 0 and an error message, not a raise.

    Returns (hashes, errors): errors[i] is None when item i was hashed.
    """
    pixels = np.zeros((len(datas), IMAGE_SIZE, IMAGE_SIZE), dtype=np.float64)
    errors: list[str | None] = [None] * len(datas)
    for i, data in enumerate(datas):
        try:
            pixels[i] = phash_pixels(data)
        except Exception as exc:  # noqa: BLE001 - any decoder failure means "not an image"
            errors[i] = f"{type(exc).__name__}: {exc}"
    if len(datas) == 0:
        return np.zeros(0, dtype=np.uint64), errors
    return phash_from_pixels(pixels), errors


def hamming(a: int | np.ndarray, b: int | np.ndarray) -> int | np.ndarray:
    """Hamming distance between 64-bit hashes (ints or uint64 arrays)."""
    if isinstance(a, int) and isinstance(b, int):
        return (a ^ b).bit_count()
    x = np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))
    return np.bitwise_count(x).astype(np.int32)
