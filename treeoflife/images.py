"""Image validation and normalisation: every stored image is a complete, upright RGB JPEG.

Sources serve HTML error pages as images, truncated bodies, CMYK and 16-bit files, EXIF-rotated
photos, animations and decompression bombs. `normalize_image` turns bytes into either a usable
JPEG or an `ImageRejected` with a reason code that the catalog records.

An optional `ResizePolicy` shrinks images on the way in (never enlarges them). JPEGs are decoded
through PIL's draft mode (the DCT scales by 1/2, 1/4 or 1/8 while decoding), which is most of
the speed of a shrinking download: only the last factor <2 is done by a real resampling.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from treeoflife.errors import ImageRejected
from treeoflife.io import md5_hex
from treeoflife.vocabulary import Reason

DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own default bomb limit
JPEG_QUALITY = 95

_EXIF_ORIENTATION = 0x0112

# Magic numbers of formats we accept; anything else is not an image for our purposes.
_MAGIC = (
    (0, b"\xff\xd8\xff"),  # JPEG
    (0, b"\x89PNG\r\n\x1a\n"),
    (0, b"GIF87a"),
    (0, b"GIF89a"),
    (0, b"BM"),
    (0, b"II*\x00"),  # TIFF little endian
    (0, b"MM\x00*"),  # TIFF big endian
    (8, b"WEBP"),  # RIFF....WEBP
)


RESIZE_NONE = "none"
RESIZE_MAX_SIDE = "max_side"  # the longer side becomes at most `size`
# the shorter side becomes at most `size` (img2dataset's keep_ratio)
RESIZE_SHORTER_SIDE = "shorter_side"
RESIZE_MODES = (RESIZE_NONE, RESIZE_MAX_SIDE, RESIZE_SHORTER_SIDE)


@dataclass(frozen=True)
class ResizePolicy:
    """How to shrink images as they are stored; aspect ratio is always kept, never upscaled."""

    mode: str = RESIZE_NONE
    size: int = 0
    quality: int = JPEG_QUALITY

    def __post_init__(self) -> None:
        if self.mode not in RESIZE_MODES:
            raise ValueError(f"resize mode {self.mode!r} is not one of {', '.join(RESIZE_MODES)}")
        if self.mode != RESIZE_NONE and self.size <= 0:
            raise ValueError(f"resize mode {self.mode!r} needs a positive size")

    def target(self, width: int, height: int) -> tuple[int, int] | None:
        """The output size for a `width` x `height` image, or None to keep it as it is."""
        if self.mode == RESIZE_NONE:
            return None
        side = max(width, height) if self.mode == RESIZE_MAX_SIDE else min(width, height)
        if side <= self.size:
            return None
        scale = self.size / side
        return max(1, round(width * scale)), max(1, round(height * scale))


KEEP_ORIGINALS = ResizePolicy()


@dataclass(frozen=True)
class NormalizedImage:
    data: bytes  # JPEG bytes to store
    width: int
    height: int
    converted: bool  # False: `data` are the source bytes unchanged
    md5: str = ""  # of `data`; computed where the image is made (a decode worker, not the loop)

    def __post_init__(self) -> None:
        if not self.md5:
            object.__setattr__(self, "md5", md5_hex(self.data))


def sniff_format(data: bytes) -> bool:
    """True when the bytes start like an image format we can decode."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    return any(data[off : off + len(magic)] == magic for off, magic in _MAGIC if off == 0)


def _looks_like_text(data: bytes) -> bool:
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:1] == b"<" or head[:1] == b"{":
        return True
    return bool(head) and all(b in b"\t\r\n" or 32 <= b < 127 for b in head[:256])


def normalize_image(
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    resize: ResizePolicy = KEEP_ORIGINALS,
) -> NormalizedImage:
    """Validate `data` fully and return upright RGB JPEG bytes, or raise ImageRejected(reason).

    The source bytes are kept unchanged when they already are a baseline RGB JPEG with no EXIF
    orientation to apply and no resize to do (so the md5 is of what the source served);
    otherwise the first frame is converted to RGB (alpha composited on white), shrunk by
    `resize` and re-encoded, deterministically.
    """
    if not data:
        raise ImageRejected(Reason.EMPTY_FILE)
    if not sniff_format(data):
        detail = "text/HTML" if _looks_like_text(data) else f"unknown signature {data[:8]!r}"
        raise ImageRejected(Reason.NOT_AN_IMAGE, detail)
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a full load must fail on truncated data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width <= 0 or height <= 0:
                raise ImageRejected(Reason.DECODE_ERROR, f"bad size {width}x{height}")
            if width * height > max_pixels:
                raise ImageRejected(
                    Reason.IMAGE_TOO_LARGE, f"{width}x{height} > {max_pixels} pixels"
                )
            img.seek(0)
            target = resize.target(width, height)
            if target is not None and img.format == "JPEG":
                img.draft("RGB", target)  # DCT-domain downscale; the result stays >= target
            img.load()
            return _normalize_loaded(img, data, target, resize.quality)
    except ImageRejected:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageRejected(Reason.IMAGE_TOO_LARGE, str(exc)) from None
    except UnidentifiedImageError as exc:  # a known signature PIL cannot parse
        raise ImageRejected(Reason.DECODE_ERROR, str(exc)) from None
    except EOFError as exc:
        raise ImageRejected(Reason.TRUNCATED_IMAGE, str(exc) or "unexpected end of data") from None
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc)
        low = msg.lower()
        if "truncated" in low or "end of file" in low or "premature" in low:
            raise ImageRejected(Reason.TRUNCATED_IMAGE, msg) from None
        raise ImageRejected(Reason.DECODE_ERROR, msg) from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a per-image outcome
        raise ImageRejected(Reason.DECODE_ERROR, f"{type(exc).__name__}: {exc}") from None


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - unreadable EXIF means nothing to apply
        return 1


def _normalize_loaded(
    img: Image.Image,
    data: bytes,
    target: tuple[int, int] | None = None,
    quality: int = JPEG_QUALITY,
) -> NormalizedImage:
    orientation = _orientation(img)
    is_baseline_rgb_jpeg = (
        img.format == "JPEG"
        and img.mode == "RGB"
        and not img.info.get("progressive")
        and not img.info.get("progression")
    )
    if is_baseline_rgb_jpeg and orientation == 1 and target is None:
        return NormalizedImage(data=data, width=img.width, height=img.height, converted=False)
    rgb = to_rgb(img)
    if target is not None:
        # the policy is symmetric in width/height, so resizing before the transpose is the same
        rgb = rgb.resize(target, Image.Resampling.BOX)  # area average, like cv2 INTER_AREA
    if orientation != 1:
        rgb = _transpose(rgb, orientation)
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=quality, optimize=False, progressive=False)
    return NormalizedImage(data=buf.getvalue(), width=rgb.width, height=rgb.height, converted=True)


_TRANSPOSE = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}


def _transpose(img: Image.Image, orientation: int) -> Image.Image:
    """EXIF orientation applied to pixels (ImageOps.exif_transpose's table, without the EXIF)."""
    for op in _TRANSPOSE.get(orientation, ()):
        img = img.transpose(op)
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; transparency is composited on white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img)
        if mode == "F":
            arr8 = np.clip(arr, 0, 255).astype(np.uint8)
        else:
            arr = arr.astype(np.int64)
            # 16-bit data (or 32-bit holding 16-bit values, as PIL opens 16-bit PNGs) -> top byte
            arr8 = np.clip(arr >> 8 if arr.max(initial=0) > 255 or mode != "I" else arr, 0, 255)
            arr8 = arr8.astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def decode_outcome(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, resize: ResizePolicy = KEEP_ORIGINALS
) -> NormalizedImage | str:
    """`normalize_image` for worker pools: returns the reason code instead of raising.

    (ImageRejected does not survive pickling with its reason intact, and a returned value keeps
    the pool's error channel for real bugs.)
    """
    try:
        return normalize_image(data, max_pixels, resize)
    except ImageRejected as exc:
        return exc.reason
