"""Deterministic splits and sample order, pure functions of the stable key and a seed.

A key's split never changes when other images come or go, so adding a source does not shuffle
the validation set (the same reasoning as BioCLIP's hash-based splits).
"""

from __future__ import annotations

from collections.abc import Iterable

from treeoflife.io import stable_hash64

_TWO64 = float(2**64)


def _unit(*parts: str) -> float:
    return stable_hash64(*parts) / _TWO64


def assign_split(key: str, seed: int, val_fraction: float) -> str:
    """`val` for a stable `val_fraction` of keys, else `train`."""
    return "val" if _unit("split", str(seed), key) < val_fraction else "train"


def in_train_small(key: str, seed: int, fraction: float) -> bool:
    """Whether a training key also belongs to `train_small` (a nested, stable subset)."""
    return _unit("train_small", str(seed), key) < fraction


def order_key(key: str, seed: int) -> int:
    """A key's place in the seeded shard order (ties, if any, go by the key itself)."""
    return stable_hash64("order", str(seed), key)


def shuffled(keys: Iterable[str], seed: int) -> list[str]:
    """Keys in a seeded pseudo-random order that depends only on each key (not on the set)."""
    return sorted(keys, key=lambda k: (order_key(k, seed), k))
