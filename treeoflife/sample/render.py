"""Synthetic organism pictures a tiny CLIP can learn, and the perceptual hash used to check them.

A species' look is a pure function of its taxonomy (kingdom -> background, family -> hue,
genus -> shape, species -> pattern and secondary colour); each picture varies position, scale,
rotation, lighting, clutter and noise, so pictures of one species are not near-duplicates.
"""

from __future__ import annotations

import colorsys
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from treeoflife.io import stable_hash64

JPEG_QUALITY = 90

_KINGDOM_BACKGROUND = {
    # base RGB, texture kind
    "Animalia": ((96, 112, 72), "blotch"),
    "Plantae": ((120, 160, 200), "stripes"),
    "Fungi": ((78, 58, 40), "speckle"),
    "Archaea": ((70, 50, 100), "rings"),
}
_N_SHAPES = 9
_PATTERNS = ("stripes", "spots", "checker", "rings", "band")


@dataclass(frozen=True)
class Signature:
    """The look shared by every picture of one taxon."""

    kingdom: str
    hue: float
    shape: int
    pattern: str
    frequency: float
    primary: tuple[float, float, float]
    secondary: tuple[float, float, float]


def _unit(*parts: str) -> float:
    return (stable_hash64(*parts) % 1_000_003) / 1_000_003


def signature(kingdom: str, family: str, genus: str, epithet: str | None) -> Signature:
    """Deterministic look of a taxon; `epithet=None` gives a genus-level (plain) look."""
    hue = (_unit("family", family) + 0.07 * (_unit("genus-hue", genus) - 0.5)) % 1.0
    shape = stable_hash64("shape", kingdom, genus) % _N_SHAPES
    if epithet is None:
        pattern, freq, hue2 = "none", 3.0, hue
        sat, val = 0.75, 0.8
    else:
        pattern = _PATTERNS[stable_hash64("pattern", genus, epithet) % len(_PATTERNS)]
        freq = 2.0 + 4.0 * _unit("freq", genus, epithet)
        hue = (hue + 0.08 * (_unit("sp-hue", genus, epithet) - 0.5)) % 1.0
        hue2 = (hue + 0.25 + 0.5 * _unit("hue2", genus, epithet)) % 1.0
        sat = 0.6 + 0.35 * _unit("sat", genus, epithet)
        val = 0.6 + 0.35 * _unit("val", genus, epithet)
    primary = colorsys.hsv_to_rgb(hue, sat, val)
    secondary = colorsys.hsv_to_rgb(hue2, 0.85, 1.05 - val * 0.6)
    return Signature(
        kingdom,
        hue,
        int(shape),
        pattern,
        freq,
        tuple(255 * c for c in primary),
        tuple(255 * c for c in secondary),
    )


def _shape_mask(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if shape == 0:  # ellipse
        return u * u + (v / 0.6) ** 2 <= 1
    if shape == 1:  # rounded box
        return np.maximum(np.abs(u), np.abs(v) / 0.7) <= 0.9
    if shape == 2:  # diamond
        return np.abs(u) + np.abs(v) / 0.8 <= 1
    r = np.sqrt(u * u + v * v)
    if shape == 3:  # five-armed star
        return r <= 0.55 + 0.4 * np.cos(5 * np.arctan2(v, u))
    if shape == 4:  # cross
        return ((np.abs(u) < 0.32) & (np.abs(v) < 1)) | ((np.abs(v) < 0.32) & (np.abs(u) < 1))
    if shape == 5:  # ring
        return (r <= 1) & (r >= 0.5)
    if shape == 6:  # triangle
        return (v <= 0.6) & (np.abs(u) <= (v + 1.0) * 0.62)
    if shape == 7:  # three-lobed flower
        return r <= 0.65 + 0.35 * np.cos(3 * np.arctan2(v, u))
    # crescent
    return (r <= 1) & ((u - 0.45) ** 2 + v * v > 0.55)


def _pattern_mask(pattern: str, u: np.ndarray, v: np.ndarray, freq: float) -> np.ndarray:
    f = freq * np.pi
    if pattern == "stripes":
        return np.sin(f * u) > 0
    if pattern == "spots":
        return np.sin(f * u) * np.sin(f * v) > 0.35
    if pattern == "checker":
        return np.sin(f * u) * np.sin(f * v) > 0
    if pattern == "rings":
        return np.sin(f * np.sqrt(u * u + v * v)) > 0
    if pattern == "band":
        return np.abs(v) < 0.25
    return np.zeros(u.shape, dtype=bool)


def render(
    sig: Signature, rng: np.random.Generator, width: int, height: int, style: str = "photo"
) -> Image.Image:
    """One RGB picture of a taxon; `style` is "photo" (field scene) or "specimen" (lab tray).

    Drawn at half resolution and upscaled: four times cheaper, and edges come out soft.
    """
    out_size = (width, height)
    width, height = max(8, width // 2), max(8, height // 2)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    xs, ys = xx / np.float32(width) - 0.5, yy / np.float32(height) - 0.5
    if style == "specimen":
        base = (np.array((222, 222, 214)) + rng.uniform(-12, 12, 3)).astype(np.float32)
        img = np.broadcast_to(base, (height, width, 3)).copy()
    else:
        base_rgb, texture = _KINGDOM_BACKGROUND.get(sig.kingdom, ((110, 110, 110), "blotch"))
        base = (np.array(base_rgb) + rng.uniform(-15, 15, 3)).astype(np.float32)
        a, ph = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        if texture == "stripes":
            tex = np.sin(40 * (xs * np.cos(a / 4) + ys * np.sin(a / 4)) + ph)
        elif texture == "speckle":
            tex = np.sin(55 * xs + ph) * np.sin(47 * ys + ph) * 1.4
        elif texture == "rings":
            tex = np.sin(30 * np.sqrt(xs * xs + ys * ys) + ph)
        else:
            tex = np.sin(9 * xs + ph) * np.cos(7 * ys * np.cos(a) + ph)
        img = base + np.float32(22) * tex[..., None]
    # Clutter: a few background blobs of random brightness make low frequencies differ.
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.uniform(-0.5, 0.5, 2)
        rx, ry = rng.uniform(0.06, 0.22, 2)
        grey = np.float32(rng.uniform(20, 235) * 0.6)
        y0, y1 = (int(np.clip((c + 0.5) * height, 0, height)) for c in (cy - ry, cy + ry + 0.01))
        x0, x1 = (int(np.clip((c + 0.5) * width, 0, width)) for c in (cx - rx, cx + rx + 0.01))
        if y1 <= y0 or x1 <= x0:
            continue
        sub = img[y0:y1, x0:x1]
        blob = ((xs[y0:y1, x0:x1] - cx) / rx) ** 2 + ((ys[y0:y1, x0:x1] - cy) / ry) ** 2 <= 1
        sub[...] = np.where(blob[..., None], sub * np.float32(0.4) + grey, sub)
    # The organism.
    side = min(width, height)
    cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height
    radius = rng.uniform(0.28, 0.42) * side
    theta = rng.uniform(0, 2 * np.pi)
    stretch = rng.uniform(0.8, 1.25)
    dx, dy = xx - cx, yy - cy
    c, sn = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    u = (dx * c + dy * sn) / np.float32(radius * stretch)
    v = (dy * c - dx * sn) / np.float32(radius / stretch)
    body = _shape_mask(sig.shape, u, v)
    spots = _pattern_mask(sig.pattern, u, v, sig.frequency)
    colour = np.where(
        spots[..., None], np.array(sig.secondary, np.float32), np.array(sig.primary, np.float32)
    )
    shade = np.clip(np.float32(1.1) - np.float32(0.3) * (u * u + v * v), 0.6, 1.1)
    img = np.where(body[..., None], colour * shade[..., None], img)
    # Lighting: a strong random gradient, overall exposure, sensor noise.
    psi = rng.uniform(0, 2 * np.pi)
    light = 1 + np.float32(rng.uniform(0.35, 0.8)) * (
        xs * np.float32(np.cos(psi)) + ys * np.float32(np.sin(psi))
    )
    img = img * (light * np.float32(rng.uniform(0.85, 1.15)))[..., None]
    sigma = np.float32(rng.uniform(5, 14))  # uniform noise: much cheaper than Gaussian
    img = img + (rng.random(img.shape, dtype=np.float32) - np.float32(0.5)) * sigma
    small = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    return small.resize(out_size, Image.Resampling.BILINEAR)


def jpeg_bytes(img: Image.Image, quality: int = JPEG_QUALITY, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, **kwargs)
    return buf.getvalue()


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


_DCT32 = _dct_matrix(32)


def phash64(img: Image.Image) -> int:
    """imagehash-style pHash: 32x32 grey (Lanczos), 2-D DCT-II, 8x8 low block > its median."""
    grey = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), np.float64)
    low = (_DCT32 @ grey @ _DCT32.T)[:8, :8]
    bits = (low > np.median(low)).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def phash_of_bytes(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as im:
        return phash64(im)
