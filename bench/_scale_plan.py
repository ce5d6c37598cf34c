"""The scale world's plan (species, per-image source and trouble) and its images: numpy arrays
from the seed, and JPEGs rendered from per-image generators (bench/scale_world.py writes them).
"""

from __future__ import annotations

import hashlib
import io
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from treeoflife.dedup.phash import phash64

EOL_PREFIX = "https://content.eol.org/data/media/"
INAT, BIOSCAN, EOL = 0, 1, 2
# trouble kinds (per image row)
OK, MISSING, TRUNCATED, NOT_FOUND, UNRESOLVED, EXACT, NEAR, DUP = range(8)
BATCH = 500  # images per render task
# (kingdom, phylum, class) of the ten taxon groups; a family's group is its id mod 10
GROUPS = (
    *[("Animalia", "Arthropoda", "Insecta")] * 4,
    ("Animalia", "Chordata", "Aves"),
    ("Animalia", "Chordata", "Mammalia"),
    *[("Plantae", "Tracheophyta", "Magnoliopsida")] * 3,
    ("Fungi", "Basidiomycota", "Agaricomycetes"),
)
RANK_KEYS = ("kingdom", "phylum", "class", "order", "family", "genus")
SYLLABLES = [c + v for c in "bcdfglmnprstv" for v in "aeiou"]  # 65


@dataclass(frozen=True)
class WorldSpec:
    images: int
    seed: int = 0
    backbone_rows: int = 1_000_000
    eval_images: int = 10_000
    images_per_zip: int = 50_000
    rows_per_manifest: int = 100_000
    # trouble shares (of the source's rows, or of all rows)
    missing: float = 0.003
    truncated: float = 0.004
    not_found: float = 0.015
    unresolved: float = 0.005
    exact: float = 0.001
    near: float = 0.001
    dup: float = 0.002


def word(n: int) -> str:
    """Bijective base-65 syllables: distinct n give distinct words."""
    out, n = [], n + 1
    while n:
        n, r = divmod(n - 1, len(SYLLABLES))
        out.append(SYLLABLES[r])
    return "".join(reversed(out))


def stable_uuid(*parts) -> str:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))


# ------------------------------------------------------------------------------ the plan


@dataclass
class Plan:
    """Per-species and per-image arrays; everything else is a function of them."""

    spec: WorldSpec
    species: int
    genus: np.ndarray  # per species
    held_out: np.ndarray  # per species, bool
    synonym: np.ndarray  # per species, bool: EOL names it by a backbone synonym
    in_backbone: np.ndarray  # per species, bool
    img_species: np.ndarray  # per image
    img_source: np.ndarray
    img_trouble: np.ndarray
    img_ref: np.ndarray  # EXACT/NEAR: eval image id; DUP: the image copied; else own id
    eval_species: np.ndarray  # per eval image
    eval_rare: np.ndarray  # per eval image, bool


def species_ranks(genus: int) -> tuple[str, ...]:
    family = genus // 4
    order = (family // 40) * 10 + family % 10
    kingdom, phylum, cls = GROUPS[family % 10]
    suffix = {"Animalia": "ptera", "Plantae": "ales", "Fungi": "ales"}[kingdom]
    fam = {"Animalia": "idae", "Plantae": "aceae", "Fungi": "aceae"}[kingdom]
    return (
        kingdom,
        phylum,
        cls,
        word(order).capitalize() + suffix,
        word(family).capitalize() + fam,
        word(genus).capitalize() + "us",
    )


def epithet(sp: int) -> str:
    return word(sp) + "a"


def make_plan(spec: WorldSpec) -> Plan:
    rng = np.random.default_rng([spec.seed, 1])
    n = spec.images
    s = max(12, n // 100)
    sp_ids = np.arange(s)
    genus = sp_ids // 3
    insect = (genus // 4) % 10 < 4
    held_out = sp_ids % 97 == 5
    synonym = (sp_ids % 53 == 7) & ~held_out
    in_backbone = ~((sp_ids % 71 == 3) & ~held_out & ~synonym)
    # long tail: a random rank per species, share ~ (rank + 1) ** -0.8, at least one image each
    rank = rng.permutation(s)
    p = (rank + 1.0) ** -0.8
    counts = 1 + rng.multinomial(n - s, p / p.sum())
    img_species = rng.permutation(np.repeat(sp_ids, counts))
    u = rng.random(n)
    ins = insect[img_species]
    img_source = np.where(
        ins,
        np.select([u < 0.35, u < 0.75], [INAT, BIOSCAN], EOL),
        np.where(u < 0.55, INAT, EOL),
    ).astype(np.int8)
    # trouble on rows of ordinary species only
    ordinary = ~held_out[img_species] & ~synonym[img_species]
    t = rng.random(n)
    trouble = np.zeros(n, np.int8)
    edges = np.cumsum([spec.missing, spec.truncated, spec.not_found, spec.unresolved])
    edges = np.concatenate([edges, edges[-1] + np.cumsum([spec.exact, spec.near, spec.dup])])
    kinds = [MISSING, TRUNCATED, NOT_FOUND, UNRESOLVED, EXACT, NEAR, DUP]
    for lo, hi, kind in zip(np.concatenate([[0], edges[:-1]]), edges, kinds, strict=True):
        trouble[(t >= lo) & (t < hi) & ordinary] = kind
    src = img_source
    # each kind only where the source has it
    trouble[(trouble == MISSING) & (src == EOL)] = NOT_FOUND
    trouble[(trouble == TRUNCATED) & (src == INAT)] = MISSING
    trouble[(trouble == NOT_FOUND) & (src != EOL)] = OK
    trouble[(trouble == UNRESOLVED) & (src != EOL)] = OK
    e = spec.eval_images
    rare_species = sp_ids[held_out]
    seen_species = sp_ids[~held_out & ~synonym]
    n_rare = e // 5 if len(rare_species) else 0
    eval_rare = np.arange(e) < n_rare
    eval_species = np.where(
        eval_rare,
        rare_species[np.arange(e) % max(1, len(rare_species))] if n_rare else 0,
        seen_species[rng.integers(0, len(seen_species), e)],
    )
    ref = np.arange(n)
    copies = (trouble == EXACT) | (trouble == NEAR)
    seen_evals = np.flatnonzero(~eval_rare)
    ref[copies] = seen_evals[rng.permutation(len(seen_evals))[: copies.sum()] % len(seen_evals)]
    # an in-train copy repeats a clean image of the same source (the first one is kept)
    for k in (INAT, BIOSCAN, EOL):
        clean = np.flatnonzero((trouble == OK) & (src == k) & ordinary)
        dups = np.flatnonzero((trouble == DUP) & (src == k))
        before = np.searchsorted(clean, dups)  # clean rows of the source before each copy
        pick = (rng.random(len(dups)) * before).astype(np.int64)
        trouble[dups[before == 0]] = OK
        ref[dups[before > 0]] = clean[pick[before > 0]]
    # two copies of one image would make one group of three: keep the first copy only
    dups = np.flatnonzero(trouble == DUP)
    _, first = np.unique(ref[dups], return_index=True)
    again = np.setdiff1d(np.arange(len(dups)), first)
    trouble[dups[again]] = OK
    ref[dups[again]] = dups[again]
    return Plan(
        spec, s, genus, held_out, synonym, in_backbone, img_species, img_source, trouble, ref,
        eval_species, eval_rare,
    )  # fmt: skip


def expected_counts(plan: Plan) -> dict:
    """The catalog's rows per (status, reason) that the world is built to produce."""
    t, held = plan.img_trouble, plan.held_out[plan.img_species]
    src = plan.img_source
    failed = {
        "missing_in_archive": int((t == MISSING).sum()),
        "truncated_image": int((t == TRUNCATED).sum()),
        "not_found": int((t == NOT_FOUND).sum()),
    }
    removed = {
        "held_out_species": int(held.sum()),
        "exact_eval_duplicate": int((t == EXACT).sum()),
        "near_eval_duplicate": int((t == NEAR).sum()),
        "in_train_duplicate": int((t == DUP).sum()),
    }
    excluded = {"taxon_unresolved": int((t == UNRESOLVED).sum())}
    rows = len(t)
    kept = rows - sum(failed.values()) - sum(removed.values()) - sum(excluded.values())
    return {
        "rows": rows,
        "by_source": {
            name: int((src == k).sum())
            for k, name in ((INAT, "inat21"), (BIOSCAN, "bioscan"), (EOL, "eol"))
        },  # fmt: skip
        "kept": kept,
        "failed": failed,
        "removed": removed,
        "excluded": excluded,
        "species": plan.species,
        "held_out_species": int(plan.held_out.sum()),
        "eval_images": {
            "rare_species": int(plan.eval_rare.sum()),
            "seen_species": int((~plan.eval_rare).sum()),
        },
    }


# ------------------------------------------------------------------------------ images


def _render(seed: int, kind: str, ident: int) -> bytes:
    rng = np.random.default_rng([seed, sum(map(ord, kind)), ident])
    w, h = (int(x) for x in rng.integers(96, 257, 2))
    grid = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    img = Image.fromarray(grid, "RGB").resize((w, h), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _near(data: bytes) -> bytes:
    """A resized, re-encoded copy within 6 bits of the original's pHash (the first of a fixed
    list of scales that is; a copy the threshold would miss is no planted near copy)."""
    original = phash64(data)
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        for scale, quality in ((0.6, 70), (0.7, 75), (0.8, 80), (0.9, 85)):
            small = im.resize(
                (round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS
            )
            buf = io.BytesIO()
            small.save(buf, "JPEG", quality=quality)
            if bin(phash64(buf.getvalue()) ^ original).count("1") <= 6:
                break
    return buf.getvalue()


def image_bytes(seed: int, trouble: int, ident: int, ref: int) -> bytes:
    if trouble == EXACT:
        return _render(seed, "eval", ref)
    if trouble == NEAR:
        return _near(_render(seed, "eval", ref))
    data = _render(seed, "train", ref if trouble == DUP else ident)
    return data[: len(data) * 3 // 5] if trouble == TRUNCATED else data


def _render_batch(args) -> list[bytes]:
    seed, items = args
    return [image_bytes(seed, t, i, r) for t, i, r in items]


def _render_evals(args) -> list[bytes]:
    seed, ids = args
    return [_render(seed, "eval", i) for i in ids]


class Renderer:
    """Renders images in batches on a process pool, in order (the pool size changes no byte)."""

    def __init__(self, plan: Plan, workers: int):
        self.plan, self.seed = plan, plan.spec.seed
        self.pool = ProcessPoolExecutor(workers) if workers > 1 else None

    def _map(self, fn, jobs):
        return self.pool.map(fn, jobs) if self.pool else map(fn, jobs)

    def images(self, ids: np.ndarray):
        p = self.plan
        jobs = (
            (self.seed, [(int(p.img_trouble[i]), int(i), int(p.img_ref[i])) for i in chunk])
            for chunk in np.array_split(ids, max(1, -(-len(ids) // BATCH)))
        )
        for batch in self._map(_render_batch, jobs):
            yield from batch

    def evals(self, ids: np.ndarray):
        chunks = np.array_split(ids, max(1, -(-len(ids) // BATCH)))
        jobs = ((self.seed, [int(i) for i in c]) for c in chunks)
        for batch in self._map(_render_evals, jobs):
            yield from batch

    def close(self):
        if self.pool:
            self.pool.shutdown()
