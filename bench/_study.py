"""Robustness study of perceptual hashes: which web copies of an image does a hash still catch?

Takes real photos (bench._photos), applies what happens between an evaluation set and
a web copy (re-encode, resize, crop, small rotation, colour jitter, watermark, format change)
and measures, per transform and per Hamming threshold, the recall (copy within threshold) and,
on pairs of different photos, the false-positive rate: unrelated photos, and look-alikes (the
two views of a stereo pair, the same scene panned by a quarter or half of the frame).

Hashes compared: ours (`dct64-v2`, 64-bit DCT pHash) and PDQ (Meta's 256-bit hash, `pdqhash`,
as the TreeOfLife-toolbox uses). Run by bench/phash_robustness.py, which writes the table to
docs/dedup-robustness.md.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from bench._photos import jpeg_bytes
from treeoflife.dedup.phash import phash64

Transform = Callable[[Image.Image], bytes]


def _jpeg(quality: int) -> Transform:
    return lambda img: jpeg_bytes(img, quality)


def _resize(factor: float) -> Transform:
    def run(img: Image.Image) -> bytes:
        size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
        return jpeg_bytes(img.resize(size, Image.Resampling.BICUBIC), 85)

    return run


def _crop(fraction: float, where: str) -> Transform:
    """Remove `fraction` of width and height: split on both sides ("center") or one corner."""

    def run(img: Image.Image) -> bytes:
        dw, dh = round(img.width * fraction), round(img.height * fraction)
        if where == "center":
            box = (dw // 2, dh // 2, img.width - (dw - dw // 2), img.height - (dh - dh // 2))
        else:
            box = (dw, dh, img.width, img.height)
        return jpeg_bytes(img.crop(box), 90)

    return run


def _rotate(degrees: float) -> Transform:
    def run(img: Image.Image) -> bytes:
        return jpeg_bytes(img.rotate(degrees, Image.Resampling.BICUBIC, fillcolor=(0, 0, 0)), 90)

    return run


def _jitter(img: Image.Image) -> bytes:
    out = ImageEnhance.Brightness(img).enhance(1.15)
    out = ImageEnhance.Contrast(out).enhance(0.85)
    out = ImageEnhance.Color(out).enhance(1.3)
    return jpeg_bytes(out, 90)


def _watermark(img: Image.Image) -> bytes:
    out = img.convert("RGBA")
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    size = max(10, img.height // 12)
    font = ImageFont.load_default(size=size)
    text = "(c) wildlife-photos.example"
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    pos = (img.width - (x1 - x0) - size // 2, img.height - (y1 - y0) - size)
    draw.text(
        pos, text, font=font, fill=(255, 255, 255, 170), stroke_width=1, stroke_fill=(0, 0, 0, 170)
    )
    return jpeg_bytes(Image.alpha_composite(out, layer).convert("RGB"), 90)


def _format(fmt: str) -> Transform:
    def run(img: Image.Image) -> bytes:
        buf = io.BytesIO()
        if fmt == "WEBP":
            img.save(buf, "WEBP", quality=80)
        elif fmt == "GREY":
            img.convert("L").save(buf, "JPEG", quality=90)
        else:
            img.save(buf, fmt)
        return buf.getvalue()

    return run


TRANSFORMS: dict[str, Transform] = {
    "jpeg q95": _jpeg(95),
    "jpeg q70": _jpeg(70),
    "jpeg q50": _jpeg(50),
    "resize 0.25x": _resize(0.25),
    "resize 0.5x": _resize(0.5),
    "resize 2x": _resize(2.0),
    "crop 5% centred": _crop(0.05, "center"),
    "crop 10% centred": _crop(0.10, "center"),
    "crop 10% one corner": _crop(0.10, "corner"),
    "rotate 2 deg": _rotate(2.0),
    "rotate 5 deg": _rotate(5.0),
    "colour jitter": _jitter,
    "watermark text": _watermark,
    "png": _format("PNG"),
    "webp q80": _format("WEBP"),
    "greyscale": _format("GREY"),
}
"""Copy transforms: each must still be found (the original is a JPEG at quality 90)."""


def _pan(img: Image.Image, shift: float) -> tuple[Image.Image, Image.Image]:
    """Two frames of one scene: windows of 70% width, the second moved by `shift` of the width."""
    w = round(img.width * 0.7)
    dx = round(img.width * shift)
    return img.crop((0, 0, w, img.height)), img.crop((dx, 0, dx + w, img.height))


@dataclass(frozen=True)
class HashKind:
    name: str
    bits: int
    thresholds: tuple[int, ...]
    of_bytes: Callable[[bytes], np.ndarray]  # -> bool bit vector


def _bits64(value: int) -> np.ndarray:
    return np.array([(value >> (63 - i)) & 1 for i in range(64)], dtype=bool)


def _pdq(data: bytes) -> np.ndarray:
    import pdqhash

    with Image.open(io.BytesIO(data)) as img:
        rgb = np.asarray(img.convert("RGB"))
    bits, _quality = pdqhash.compute(rgb)
    return bits.astype(bool)


HASHES = (
    HashKind(
        "pHash dct64-v2 (ours, 64 bit)",
        64,
        (4, 6, 8, 10, 12, 14, 16),
        lambda d: _bits64(phash64(d)),
    ),
    HashKind("PDQ (pdqhash, 256 bit)", 256, (16, 24, 31, 40, 48, 56, 64), _pdq),
)


def _distance(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.count_nonzero(a != b))


def run_study(photos: dict[str, Image.Image]) -> dict:
    """Distances per hash: {hash name: {"copies": {transform: [d...]}, "unrelated": [...],
    "look-alike": [...]}} plus the photo count."""
    names = sorted(photos)
    originals = {n: jpeg_bytes(photos[n], 90) for n in names}
    copies = {t: {n: fn(photos[n]) for n in names} for t, fn in TRANSFORMS.items()}
    lookalikes: list[tuple[bytes, bytes]] = []
    if "motorcycle_left" in photos and "motorcycle_right" in photos:
        lookalikes.append((originals["motorcycle_left"], originals["motorcycle_right"]))
    for n in names:
        if n.endswith(("_left", "_right")) or min(photos[n].size) < 200:
            continue
        for shift in (0.15, 0.3):
            a, b = _pan(photos[n], shift)
            lookalikes.append((jpeg_bytes(a, 90), jpeg_bytes(b, 90)))

    # Halves of one photo and the stereo views are look-alikes, not unrelated photos.
    def family(name: str) -> str:
        return name.removesuffix("_left").removesuffix("_right").replace("motorcycle", "moto")

    out: dict = {"photos": len(names), "hashes": {}}
    for kind in HASHES:
        orig = {n: kind.of_bytes(originals[n]) for n in names}
        result = {
            "bits": kind.bits,
            "thresholds": list(kind.thresholds),
            "copies": {
                t: [_distance(orig[n], kind.of_bytes(c[n])) for n in names]
                for t, c in copies.items()
            },
            "unrelated": [
                _distance(orig[a], orig[b])
                for i, a in enumerate(names)
                for b in names[i + 1 :]
                if family(a) != family(b)
            ],
            "look-alike": [_distance(kind.of_bytes(a), kind.of_bytes(b)) for a, b in lookalikes],
        }
        out["hashes"][kind.name] = result
    return out


def _rate(dists: list[int], t: int) -> float:
    return sum(d <= t for d in dists) / len(dists) if dists else math.nan


def random_pair_rate(bits: int, t: int) -> float:
    """P(distance <= t) for two independent uniform hashes (the floor of any false positive)."""
    return sum(math.comb(bits, k) for k in range(t + 1)) / 2.0**bits


def study_markdown(result: dict, n_train: int = 10_000_000, n_eval: int = 30_000) -> str:
    """The recall / false-positive table per hash, transform and threshold."""
    lines = [f"Photos: {result['photos']} (scikit-image's bundled photos and halves of them).", ""]
    for name, r in result["hashes"].items():
        ts = r["thresholds"]
        lines += [f"### {name}", ""]
        lines.append("| transform | median d | " + " | ".join(f"<= {t}" for t in ts) + " |")
        lines.append("|---|---:|" + "---:|" * len(ts))
        for transform, dists in r["copies"].items():
            cells = " | ".join(f"{_rate(dists, t):.2f}" for t in ts)
            lines.append(f"| {transform} | {int(np.median(dists))} | {cells} |")
        every = [d for dists in r["copies"].values() for d in dists]
        lines.append(
            "| **all copies (recall)** | "
            f"{int(np.median(every))} | "
            + " | ".join(f"**{_rate(every, t):.2f}**" for t in ts)
            + " |"
        )
        for label in ("look-alike", "unrelated"):
            dists = r[label]
            cells = " | ".join(f"{_rate(dists, t):.3f}" for t in ts)
            lines.append(
                f"| {label} pairs: FP rate ({len(dists)}) | {int(np.median(dists))} | {cells} |"
            )
        cells = " | ".join(f"{random_pair_rate(r['bits'], t) * n_train * n_eval:.2g}" for t in ts)
        lines.append(f"| uniform-hash collisions, {n_train:.0e} x {n_eval:.0e} | | {cells} |")
        lines.append("")
    return "\n".join(lines)
