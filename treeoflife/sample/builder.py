"""The sample world under construction: its files in memory, the expected outcome of each
trouble-maker, and pictures rendered per stable id and kept apart by pHash distance."""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from treeoflife.io import stable_hash64
from treeoflife.progress import Progress
from treeoflife.sample import world
from treeoflife.sample.render import Signature, jpeg_bytes, phash64, render, signature
from treeoflife.sample.species import Species

log = logging.getLogger(__name__)

EVAL_SEPARATION = 18  # min pHash distance between an eval picture and any other picture
TRAIN_SEPARATION = 12  # min pHash distance between two training pictures
MAX_ATTEMPTS = 40

RARE_PER_SOURCE = 5
OWNERS = ("Anna Berg", "Luis Ortega", "Mei Chen", "Kofi Mensah", "Sara Novak", "Tom Reed")


def stable_uuid(*parts: str) -> str:
    """A file name that looks like a real uuid4 but depends only on `parts`."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))


def species_look(s: Species) -> Signature:
    """The look of a species' pictures: hue from its family, shape from its genus."""
    return signature(s.kingdom, s.family, s.genus, s.epithet)


def genus_look(genus: str, kingdom: str) -> Signature:
    """The look of a genus-only label (no epithet), placed by its rank path."""
    ranks = world.genus_rank_path(genus, kingdom)
    return signature(ranks[0], ranks[4], genus, None)


@dataclass
class Picture:
    """A rendered picture: its JPEG bytes, the image they encode and its pHash."""

    data: bytes
    image: Image.Image
    phash: int


@dataclass
class World:
    """Files under construction (relative path -> bytes) and the pHash registry."""

    seed: int
    progress: Progress
    files: dict[str, bytes] = field(default_factory=dict)
    expected: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    eval_hashes: list[int] = field(default_factory=list)
    train_hashes: list[int] = field(default_factory=list)
    retries: int = 0

    def _rng(self, ident: str, attempt: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, stable_hash64(ident) >> 1, attempt])

    def size(self, ident: str, lo: int = 96, hi: int = 320, aspect: float | None = None):
        rng = self._rng(ident, 1_000_000)
        if aspect is not None:
            w = int(rng.integers(max(lo, 160), hi + 1))
            return w, int(round(w / aspect))
        while True:
            w, h = (int(x) for x in rng.integers(lo, hi + 1, 2))
            if 0.6 <= w / h <= 1 / 0.6:
                return w, h

    def picture(
        self, ident: str, look: Signature, size: tuple[int, int], kind: str, style: str = "photo"
    ) -> Picture:
        """Render a picture whose pHash keeps its distance from the others (kind eval|train)."""
        eval_h = np.array(self.eval_hashes, dtype=np.uint64)
        train_h = np.array(self.train_hashes, dtype=np.uint64)
        for attempt in range(MAX_ATTEMPTS):
            img = render(look, self._rng(ident, attempt), size[0], size[1], style)
            data = jpeg_bytes(img)
            with Image.open(io.BytesIO(data)) as decoded:
                h = phash64(decoded)
            hh = np.uint64(h)
            d_eval = np.bitwise_count(eval_h ^ hh).min(initial=64)
            d_train = np.bitwise_count(train_h ^ hh).min(initial=64)
            if kind == "eval":
                ok = d_eval >= EVAL_SEPARATION and d_train >= EVAL_SEPARATION
            else:
                ok = d_eval >= EVAL_SEPARATION and d_train >= TRAIN_SEPARATION
            if ok:
                break
            self.retries += 1
        else:
            log.warning("sample picture %s: no render kept its pHash distance", ident)
        (self.eval_hashes if kind == "eval" else self.train_hashes).append(h)
        self.progress.advance(1)
        return Picture(data, img, h)

    def expect(self, key: str, trouble: str, outcome: dict) -> None:
        self.expected.append({"key": key, "trouble": trouble, "expect": outcome})
